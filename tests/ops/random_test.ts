/** rand/randn: seeded determinism, ranges, moments, and the global seed sequence. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { threefry2x32 } from "../../src/rng.ts";
import { assertClose } from "../helpers.ts";
import { vals } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

Deno.test("threefry2x32 matches the Random123 known-answer vectors", () => {
  // First output word of Threefry-2x32-20 (the vectors JAX's tests use).
  assert.equal(threefry2x32(0, 0, 0, 0), 0x6b200159);
  assert.equal(threefry2x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), 0x1cb996fc);
  assert.equal(threefry2x32(0x13198a2e, 0x03707344, 0x243f6a88, 0x85a308d3), 0xc4923a9c);
});

Deno.test("rand: element i is the top 24 bits of threefry(seed; i, 0) over 2^24", async () => {
  const u = await vals(mj.rand([5], { seed: 0 }));
  assert.equal(u[0], (0x6b200159 >>> 8) / 2 ** 24);
  const expected = [0, 1, 2, 3, 4].map((i) => (threefry2x32(0, 0, i, 0) >>> 8) / 2 ** 24);
  assert.deepEqual(u, expected);
  // Seeds above 2^32 go into the second key word.
  const big = 2 ** 32 * 3 + 7;
  const v = await vals(mj.rand([2], { seed: big }));
  assert.deepEqual(v, [0, 1].map((i) => (threefry2x32(7, 3, i, 0) >>> 8) / 2 ** 24));
});

Deno.test("randn: Box–Muller over streams 0 and 1", async () => {
  const z = await vals(mj.randn([4], { seed: 11 }));
  const expected = [0, 1, 2, 3].map((i) => {
    const u1 = 1 - (threefry2x32(11, 0, i, 0) >>> 8) / 2 ** 24;
    const u2 = (threefry2x32(11, 0, i, 1) >>> 8) / 2 ** 24;
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  });
  assertClose(z, expected, { rtol: 1e-5, atol: 5e-6 });
});

Deno.test("rand: same seed gives the same numbers, different seeds differ", async () => {
  const a = await vals(mj.rand([64], { seed: 1 }));
  const b = await vals(mj.rand([64], { seed: 1 }));
  const c = await vals(mj.rand([64], { seed: 2 }));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // The draw is a function of the element index only, so a prefix of a larger draw agrees.
  const longer = await vals(mj.rand([8, 8], { seed: 1 }));
  assert.deepEqual(longer, a);
  const n1 = await vals(mj.randn([64], { seed: 1 }));
  const n2 = await vals(mj.randn([64], { seed: 1 }));
  const n3 = await vals(mj.randn([64], { seed: 3 }));
  assert.deepEqual(n1, n2);
  assert.notDeepEqual(n1, n3);
});

Deno.test("rand: values lie in [0, 1) on the 2^-24 grid, with mean ≈ 1/2 and var ≈ 1/12", async () => {
  const t = mj.rand([200, 100], { seed: 5 });
  assert.deepEqual(t.shape, [200, 100]);
  assert.equal(t.dtype, "f32");
  const u = await vals(t);
  let s = 0, s2 = 0;
  for (const v of u) {
    assert.ok(v >= 0 && v < 1, `out of range: ${v}`);
    assert.ok(Number.isInteger(v * 2 ** 24), `off the grid: ${v}`);
    s += v;
    s2 += v * v;
  }
  const m = s / u.length, variance = s2 / u.length - m * m;
  // Standard errors are ~0.002 (mean) and ~0.0006 (variance); the bounds are ~10σ.
  assert.ok(Math.abs(m - 0.5) < 0.02, `mean ${m}`);
  assert.ok(Math.abs(variance - 1 / 12) < 0.006, `variance ${variance}`);
  assert.ok(new Set(u).size > u.length * 0.99, "too many repeated values");
});

Deno.test("randn: finite, mean ≈ 0, variance ≈ 1 on 20k samples", async () => {
  const z = await vals(mj.randn([20000], { seed: 42 }));
  let s = 0, s2 = 0, s4 = 0, inside1 = 0;
  for (const v of z) {
    assert.ok(Number.isFinite(v), `non-finite sample ${v}`);
    s += v;
    s2 += v * v;
    s4 += v ** 4;
    if (Math.abs(v) < 1) inside1++;
  }
  const n = z.length, m = s / n, variance = s2 / n - m * m;
  assert.ok(Math.abs(m) < 0.05, `mean ${m}`);
  assert.ok(Math.abs(variance - 1) < 0.06, `variance ${variance}`);
  // Normal, not just unit variance: kurtosis 3, and 68.3% within one σ.
  assert.ok(Math.abs(s4 / n - 3) < 0.3, `fourth moment ${s4 / n}`);
  assert.ok(Math.abs(inside1 / n - 0.6827) < 0.02, `P(|z|<1) ${inside1 / n}`);
});

Deno.test("rand/randn: shapes, including scalars and size 0", async () => {
  const s = mj.rand([]);
  assert.deepEqual(s.shape, []);
  const v = await s.item();
  assert.ok(v >= 0 && v < 1);
  assert.deepEqual(mj.randn([1, 3, 1]).shape, [1, 3, 1]);
  assert.equal((await mj.rand([0, 5]).data()).length, 0);
  assert.equal((await mj.randn([3, 0]).data()).length, 0);
  assert.equal(mj.randn([2], { seed: 1, dtype: "f32" }).dtype, "f32");
});

Deno.test("seed: resets the global sequence; successive draws differ", async () => {
  mj.seed(5);
  const a1 = await vals(mj.rand([8]));
  const b1 = await vals(mj.rand([8]));
  const n1 = await vals(mj.randn([8]));
  assert.notDeepEqual(a1, b1);
  mj.seed(5);
  const a2 = await vals(mj.rand([8]));
  const b2 = await vals(mj.rand([8]));
  const n2 = await vals(mj.randn([8]));
  assert.deepEqual(a1, a2);
  assert.deepEqual(b1, b2);
  assert.deepEqual(n1, n2);
  mj.seed(6);
  assert.notDeepEqual(await vals(mj.rand([8])), a1);
  // The global sequence does not coincide with the explicit seed of the same number.
  mj.seed(5);
  assert.notDeepEqual(await vals(mj.rand([8])), await vals(mj.rand([8], { seed: 5 })));
});

Deno.test("seed: explicit seeds ignore the global state and do not advance it", async () => {
  mj.seed(1);
  const r1 = await vals(mj.rand([4], { seed: 9 }));
  const g1 = await vals(mj.rand([4]));
  mj.seed(2);
  const r2 = await vals(mj.rand([4], { seed: 9 }));
  assert.deepEqual(r1, r2);
  mj.seed(1);
  void mj.rand([4], { seed: 123 });
  assert.deepEqual(await vals(mj.rand([4])), g1);
});

Deno.test("rand/randn/seed: bad input names the op", () => {
  assert.throws(() => mj.rand([2], { seed: -1 }), /rand: seed must be a non-negative integer/);
  assert.throws(() => mj.randn([2], { seed: 1.5 }), /randn: seed must be a non-negative integer/);
  assert.throws(() => mj.rand([2], { dtype: "i32" }), /rand: only dtype f32 is supported, got i32/);
  assert.throws(() => mj.randn([2], { dtype: "u32" }), /randn: only dtype f32 is supported/);
  assert.throws(
    () => mj.rand([2], { sed: 1 } as Any),
    /rand: unknown option "sed"; expected seed, key, dtype/,
  );
  assert.throws(() => mj.randn([2, -2]), /randn: expected a shape of non-negative integers/);
  assert.throws(() => mj.seed(-1), /seed: expected a non-negative integer, got -1/);
  assert.throws(() => mj.seed(0.5), /seed: expected a non-negative integer, got 0.5/);
});
