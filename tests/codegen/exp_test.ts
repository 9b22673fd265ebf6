/**
 * Index-arithmetic simplification in the expression builder (codegen/exp.ts): division and
 * remainder of non-negative sums by constants fold exactly (random sums checked against direct
 * evaluation over random values in the variables' ranges), and the forms a split loop
 * (outer·L + inner) produces fold to the loop variables themselves.
 */
import assert from "node:assert/strict";
import { bin, cst, type Exp, resetExpTable, variable } from "../../codegen/exp.ts";

const i32 = (v: number) => cst(v, "i32");

/** Evaluates an integer expression of const/var/add/mul/div/mod at `env` (truncating division). */
function evaluate(e: Exp, env: Record<string, number>): number {
  const [a, b] = e.args.map((x) => evaluate(x, env));
  switch (e.op) {
    case "const":
      return e.value;
    case "var":
      return env[e.attr as string];
    case "add":
      return a + b;
    case "mul":
      return a * b;
    case "div":
      return Math.trunc(a / b);
    case "mod":
      return a % b;
    default:
      throw new Error(`unexpected op ${e.op}`);
  }
}

/** A deterministic pseudo-random generator (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("exp: x / d and x % d of non-negative sums fold exactly (random sums)", () => {
  const rand = rng(7);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  let folded = 0;
  for (let trial = 0; trial < 3000; trial++) {
    resetExpTable();
    const n = 1 + Math.floor(rand() * 3);
    const vars = Array.from({ length: n }, (_, i) => {
      const hi = pick([1, 3, 7, 15, 63, 255, 511, 1000]);
      return { name: `v${i}`, hi, e: variable(`v${i}`, "i32", 0, hi) };
    });
    let x = i32(pick([0, 0, 1, 5, 64, 300]));
    for (const v of vars) {
      x = bin("add", x, bin("mul", v.e, i32(pick([1, 2, 4, 8, 16, 64, 256, 512, 768]))));
    }
    for (const d of [1, 2, 3, 4, 8, 16, 64, 256, 512, 1024, 48]) {
      const q = bin("div", x, i32(d)), r = bin("mod", x, i32(d));
      if (q.op !== "div") folded++;
      for (let s = 0; s < 6; s++) {
        const env: Record<string, number> = {};
        for (const v of vars) env[v.name] = Math.floor(rand() * (v.hi + 1));
        const want = evaluate(x, env);
        assert.equal(evaluate(q, env), Math.trunc(want / d), `(${want}) / ${d}`);
        assert.equal(evaluate(r, env), want % d, `(${want}) % ${d}`);
      }
    }
  }
  assert.ok(folded > 1000, `only ${folded} divisions folded`);
});

Deno.test("exp: a split loop's index (outer·L + inner) unravels to the loop variables", () => {
  resetExpTable();
  const o = variable("o", "i32", 0, 8191), i = variable("i", "i32", 0, 255);
  const lin = bin("add", bin("mul", o, i32(256)), i);
  assert.equal(bin("div", lin, i32(256)), o);
  assert.equal(bin("mod", lin, i32(256)), i);
  assert.equal(bin("div", lin, i32(512)), bin("div", o, i32(2)));
  assert.equal(bin("mod", bin("div", lin, i32(256)), i32(8)), bin("mod", o, i32(8)));
  // A divisor that splits the inner range does not fold the inner variable away.
  assert.equal(bin("div", lin, i32(16)).op, "add");
  assert.equal(bin("mod", lin, i32(16)), bin("mod", i, i32(16)));
  // A possibly negative term blocks the rewrite (truncating division is not floor division).
  const s = variable("s", "i32", -4, 4);
  assert.equal(bin("div", bin("add", bin("mul", o, i32(256)), s), i32(256)).op, "div");
});
