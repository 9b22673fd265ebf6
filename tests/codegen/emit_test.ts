/**
 * The WGSL emitter, read as text (no device needed): common subexpressions are computed once,
 * bool is stored as u32, NaN is tested by its bits (a compiler may fold `x != x` to false), and
 * grids past 65,535 workgroups fold into two dimensions.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { compileStep } from "../../src/passes/compile.ts";
import type { Node } from "../../src/ir/node.ts";

const isInput = (n: Node) => n.op === "buffer";
const wgsl = (t: mj.Tensor) => {
  const p = compileStep([t.node], isInput, { fuse: true, maxBindings: 8 });
  return p.launches.map((l) => l.program);
};
const count = (text: string, s: string) => text.split(s).length - 1;

Deno.test("emit: a subexpression used three times is computed once (CSE)", () => {
  const x = mj.tensor([1, 2, 3]);
  const s = x.mul(3).add(1);
  const [k, ...rest] = wgsl(s.mul(s).add(s.exp()));
  assert.equal(rest.length, 0, "one kernel");
  assert.equal(count(k.code, "* 3.0"), 1, k.code);
  assert.equal(count(k.code, "+ 1.0"), 1, k.code);
  assert.match(k.code, /let (t\d+) = \(\(buf0\[gidx\] \* 3\.0\) \+ 1\.0\);/);
});

Deno.test("emit: bool results are stored as u32 (0 or 1)", () => {
  const [k] = wgsl(mj.tensor([1, 2, 3]).gt(1));
  assert.match(k.code, /var<storage, read_write> buf1: array<u32>/);
  assert.match(k.code, /select\(0u, 1u, /);
});

Deno.test("emit: NaN is tested by its bits", () => {
  const [k] = wgsl(mj.tensor([1, 2, 3]).isnan());
  assert.match(k.code, /bitcast<u32>\(x\) & 0x7fffffffu\) > 0x7f800000u/);
  assert.ok(!/\bx != x\b/.test(k.code), "no self-comparison");
});

Deno.test("emit: more than 65,535 workgroups fold into a 2-D grid", () => {
  const n = 5_000_000; // 78,125 workgroups of 64
  const programs = wgsl(mj.zeros([n]).add(mj.tensor([1, 2]).sum()));
  const k = programs[programs.length - 1];
  assert.ok(k.grid[0] <= 65535 && k.grid[1] > 1, JSON.stringify(k.grid));
  assert.ok(k.grid[0] * k.grid[1] * 64 >= n);
  assert.match(k.code, /gid\.x \+ gid\.y \* \d+u/);
  assert.match(k.code, new RegExp(`if \\(gidx >= ${n}i\\) \\{ return; \\}`));
});

Deno.test("emit: non-finite constants are helper calls, never const-expressions (Tint rejects those)", () => {
  const x = mj.tensor([1, 2, 3]);
  const kernels = [
    ...wgsl(x.max()), // -inf accumulator
    ...wgsl(mj.where(x.gt(2), x, -Infinity)), // -inf literal
    ...wgsl(x.pow(x)), // mj_pow's inf and NaN
    ...wgsl(x.logsumexp(-1)),
  ];
  for (const k of kernels) {
    assert.ok(!/bitcast<f32>\(0x(7f800000|ff800000|7fc00000)u\)/.test(k.code), k.code);
    if (k.code.includes("mj_f32_bits(")) assert.match(k.code, /fn mj_f32_bits\(b: u32\) -> f32/);
  }
  assert.ok(kernels.some((k) => k.code.includes("mj_f32_bits(0xff800000u)")));
});
