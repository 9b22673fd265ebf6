/** Reductions, softmax family and arg-reductions, over every form of `axis`. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertClose, assertTensor, randomArray } from "../helpers.ts";
import {
  binaryRef,
  f32,
  lseOf,
  maxOf,
  meanOf,
  minOf,
  permuteRef,
  reduceRef,
  sumOf,
  vals,
  varOf,
} from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

const i32 = (d: unknown, shape?: number[]) => mj.tensor(d as number[], shape, { dtype: "i32" });

type Red = (x: mj.Tensor, axis?: mj.Axis, keepdims?: boolean) => mj.Tensor;
const REDUCTIONS: [
  string,
  Red,
  (x: mj.Tensor, a?: mj.Axis, k?: boolean) => mj.Tensor,
  (v: number[]) => number,
][] = [
  ["sum", mj.sum, (x, a, k) => x.sum(a, k), sumOf],
  ["mean", mj.mean, (x, a, k) => x.mean(a, k), meanOf],
  ["max", mj.max, (x, a, k) => x.max(a, k), maxOf],
  ["min", mj.min, (x, a, k) => x.min(a, k), minOf],
  ["var", mj.variance, (x, a, k) => x.var(a, k), varOf],
  ["logsumexp", mj.logsumexp, (x, a, k) => x.logsumexp(a, k), lseOf],
];

const SHAPE = [2, 3, 4];
const AXES: [mj.Axis | undefined, number[]][] = [
  [undefined, [0, 1, 2]],
  [0, [0]],
  [1, [1]],
  [2, [2]],
  [-1, [2]],
  [-3, [0]],
  [[0, 2], [0, 2]],
  [[2, 0], [0, 2]],
  [[-1, 0], [0, 2]],
  [[1], [1]],
  [[0, 1, 2], [0, 1, 2]],
  [[-2, -1], [1, 2]],
];

Deno.test("reductions over every axis form, keepdims true and false", async () => {
  const data = f32(randomArray(24, 3, -2, 2));
  const x = mj.tensor(data, SHAPE);
  for (const [name, fn, method, ref] of REDUCTIONS) {
    for (const [axis, axes] of AXES) {
      const expected = reduceRef(data, SHAPE, axes, ref);
      const dropped = SHAPE.filter((_, i) => !axes.includes(i));
      const kept = SHAPE.map((d, i) => (axes.includes(i) ? 1 : d));
      const msg = `${name} axis ${JSON.stringify(axis)}`;
      const r = fn(x, axis);
      assert.deepEqual(r.shape, dropped, msg);
      assert.equal(r.dtype, "f32", msg);
      assertClose(await r.data(), expected, { rtol: 2e-6, atol: 1e-6, msg });
      const rk = method(x, axis, true);
      assert.deepEqual(rk.shape, kept, `${msg} keepdims`);
      assertClose(await rk.data(), expected, { rtol: 2e-6, atol: 1e-6, msg: `${msg} keepdims` });
      assert.deepEqual(fn(x, axis, false).shape, dropped, msg);
    }
  }
});

Deno.test("an empty axis list reduces nothing", async () => {
  const data = [1, -2, 3, 4, 5, -6];
  const x = mj.tensor(data, [2, 3]);
  for (const [name, fn, method] of REDUCTIONS) {
    const expected = name === "var" ? [0, 0, 0, 0, 0, 0] : data;
    await assertTensor(fn(x, []), expected, { shape: [2, 3] });
    await assertTensor(method(x, [], true), expected, { shape: [2, 3] });
    await assertTensor(method(x, [], false), expected, { shape: [2, 3] });
  }
});

Deno.test("reductions: hand-computed cases", async () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  await assertTensor(x.sum(), 21, { shape: [] });
  await assertTensor(x.sum(0), [5, 7, 9], { shape: [3] });
  await assertTensor(x.sum(1, true), [6, 15], { shape: [2, 1] });
  await assertTensor(x.mean(-1), [2, 5]);
  await assertTensor(x.max(0), [4, 5, 6]);
  await assertTensor(x.min(1), [1, 4]);
  await assertTensor(mj.tensor([1, 2, 3, 4]).var(), 1.25, { shape: [] });
  await assertTensor(x.var(0), [2.25, 2.25, 2.25]);
  await assertTensor(mj.tensor([[0, 0], [0, 0]]).logsumexp(1), [Math.LN2, Math.LN2]);
});

Deno.test("reductions: size-1 dims and scalars", async () => {
  const x = mj.tensor([[[7], [8]]]); // [1,2,1]
  await assertTensor(x.sum(0), [7, 8], { shape: [2, 1] });
  await assertTensor(x.sum(2), [7, 8], { shape: [1, 2] });
  await assertTensor(x.max([0, 2], true), [7, 8], { shape: [1, 2, 1] });
  await assertTensor(x.var(2), [0, 0], { shape: [1, 2] });
  await assertTensor(x.logsumexp(0), [7, 8], { shape: [2, 1], rtol: 1e-6 });
  const s = mj.tensor(5);
  await assertTensor(s.sum(), 5, { shape: [] });
  await assertTensor(s.sum(undefined, true), 5, { shape: [] });
  await assertTensor(s.mean(), 5, { shape: [] });
  await assertTensor(s.max([]), 5, { shape: [] });
  await assertTensor(s.var(), 0, { shape: [] });
  await assertTensor(s.logsumexp(), 5, { shape: [] });
});

Deno.test("reductions over size-0 axes", async () => {
  const e = mj.zeros([0, 3]);
  await assertTensor(e.sum(0), [0, 0, 0], { shape: [3] });
  await assertTensor(e.sum(), 0, { shape: [] });
  await assertTensor(e.sum(1), [], { shape: [0] });
  await assertTensor(e.max(1), [], { shape: [0] });
  await assertTensor(e.mean(1, true), [], { shape: [0, 1] });
  await assertTensor(e.mean(0), [NaN, NaN, NaN]);
  await assertTensor(e.logsumexp(0), [-Infinity, -Infinity, -Infinity]);
  await assertTensor(i32([], [2, 0]).sum(1), [0, 0], { dtype: "i32" });
  assert.throws(() => e.max(0), /max: cannot take max over an empty axis of f32\[0,3\]/);
  assert.throws(() => e.min(), /min: cannot take min over an empty axis of f32\[0,3\]/);
  assert.throws(() => e.argmax(0), /argmax: cannot take argmax over an empty axis of f32\[0,3\]/);
});

Deno.test("integer reductions (wraparound for i32 sum)", async () => {
  const x = i32([[3, -1, 7], [2, 2, -9]]);
  await assertTensor(x.sum(1), [9, -5], { dtype: "i32" });
  await assertTensor(x.max(0), [3, 2, 7], { dtype: "i32" });
  await assertTensor(x.min(), -9, { dtype: "i32", shape: [] });
  await assertTensor(i32([2147483647, 1]).sum(), -2147483648, { dtype: "i32" });
  await assertTensor(i32([-2147483648, -2147483648]).max(), -2147483648);
  const u = mj.tensor([4294967295, 1, 3], undefined, { dtype: "u32" });
  await assertTensor(u.max(), 4294967295, { dtype: "u32" });
  await assertTensor(u.min(), 1, { dtype: "u32" });
  await assertTensor(u.sum(), 3, { dtype: "u32" });
});

Deno.test("max/min propagate NaN; logsumexp handles ±inf", async () => {
  const x = mj.tensor([[1, NaN, 3], [1, 2, 3]]);
  await assertTensor(x.max(1), [NaN, 3]);
  await assertTensor(x.min(1), [NaN, 1]);
  const inf = Infinity;
  await assertTensor(mj.tensor([[-inf, -inf], [-inf, 0]]).logsumexp(1), [-inf, 0]);
  await assertTensor(mj.tensor([inf, 1]).logsumexp(), inf);
  await assertTensor(mj.tensor([1000, 1000]).logsumexp(), 1000 + Math.LN2, { rtol: 1e-6 });
  await assertTensor(mj.tensor([-1000, -1000]).logsumexp(), -1000 + Math.LN2, { rtol: 1e-6 });
});

Deno.test("permute → elementwise → reduce reads the non-contiguous layout", async () => {
  const data = f32(randomArray(24, 7));
  const ydata = f32(randomArray(6, 8));
  const perm = [2, 0, 1];
  const p = mj.tensor(data, [2, 3, 4]).permute(perm); // [4,2,3]
  const y = mj.tensor(ydata, [2, 3]);
  const z = p.mul(y).add(1); // broadcast [2,3] against [4,2,3]
  const pd = permuteRef(data, [2, 3, 4], perm);
  const zd = binaryRef(pd, [4, 2, 3], ydata, [2, 3], [4, 2, 3], (a, b) => a * b + 1);
  await assertTensor(z, zd, { shape: [4, 2, 3], rtol: 1e-6 });
  await assertTensor(z.sum([0, 2]), reduceRef(zd, [4, 2, 3], [0, 2], sumOf), {
    shape: [2],
    rtol: 1e-5,
  });
  await assertTensor(z.max(-1, true), reduceRef(zd, [4, 2, 3], [2], maxOf), {
    shape: [4, 2, 1],
  });
  await assertTensor(
    z.transpose().mean(1),
    reduceRef(permuteRef(zd, [4, 2, 3], [2, 1, 0]), [3, 2, 4], [1], meanOf),
    { shape: [3, 4], rtol: 1e-5 },
  );
  await assertTensor(p.argmax(0), reduceRef(pd, [4, 2, 3], [0], (v) => v.indexOf(maxOf(v))), {
    shape: [2, 3],
    dtype: "i32",
  });
});

Deno.test("softmax / logSoftmax: hand cases, axes, stability, masking", async () => {
  const e = [1, 2, 3].map(Math.exp), z = sumOf(e);
  const x = mj.tensor([[1, 2, 3], [1, 1, 1]]);
  const expected = [...e.map((v) => v / z), 1 / 3, 1 / 3, 1 / 3];
  await assertTensor(x.softmax(), expected, { shape: [2, 3], rtol: 1e-6 });
  await assertTensor(mj.softmax(x, 1), expected, { rtol: 1e-6 });
  await assertTensor(mj.softmax(x, -1), expected, { rtol: 1e-6 });
  await assertTensor(x.logSoftmax(), expected.map(Math.log), { shape: [2, 3], rtol: 1e-6 });
  // Along axis 0: columns [1,1], [2,1], [3,1].
  const col = (a: number, b: number) => [Math.exp(a) / (Math.exp(a) + Math.exp(b))];
  const s0 = [col(1, 1), col(2, 1), col(3, 1), col(1, 1), col(1, 2), col(1, 3)].flat();
  await assertTensor(x.softmax(0), s0, { shape: [2, 3], rtol: 1e-6 });
  await assertTensor(mj.logSoftmax(x, -2), s0.map(Math.log), { rtol: 1e-6 });
  // Large logits do not overflow; -inf entries get probability 0.
  await assertTensor(mj.tensor([1000, 1001]).softmax(), [1 / (1 + Math.E), Math.E / (1 + Math.E)], {
    rtol: 1e-6,
  });
  await assertTensor(mj.tensor([-1000, -1001]).logSoftmax(), [
    -Math.log1p(Math.exp(-1)),
    -1 - Math.log1p(Math.exp(-1)),
  ], { rtol: 1e-6 });
  await assertTensor(mj.tensor([0, -Infinity, 0]).softmax(), [0.5, 0, 0.5]);
  await assertTensor(mj.tensor([0, -Infinity]).logSoftmax(), [0, -Infinity]);
  // A size-1 axis gives probability 1.
  await assertTensor(mj.tensor([[3], [-7]]).softmax(), [1, 1], { shape: [2, 1] });
  await assertTensor(mj.tensor([[3], [-7]]).logSoftmax(), [0, 0]);
  await assertTensor(mj.zeros([0, 3]).softmax(), [], { shape: [0, 3] });
});

Deno.test("softmax rows sum to 1 on a random 3-D tensor along each axis", async () => {
  const data = f32(randomArray(24, 11, -3, 3));
  const x = mj.tensor(data, [2, 3, 4]);
  for (let a = 0; a < 3; a++) {
    const s = x.softmax(a);
    assert.deepEqual(s.shape, [2, 3, 4]);
    await assertTensor(s.sum(a), new Array(24 / [2, 3, 4][a]).fill(1), { rtol: 1e-6 });
    const expected = reduceRef(data, [2, 3, 4], [a], lseOf);
    // logSoftmax = x - lse, so x - logSoftmax is the lse broadcast along the axis.
    await assertTensor(x.sub(x.logSoftmax(a)).max(a), expected, { rtol: 1e-6, atol: 1e-6 });
  }
});

Deno.test("argmax/argmin: axes, keepdims, ties to the lowest index", async () => {
  const x = mj.tensor([[1, 5, 5, 0], [7, 7, -1, -1], [2, 2, 2, 2]]);
  await assertTensor(x.argmax(), [1, 0, 0], { shape: [3], dtype: "i32" });
  await assertTensor(mj.argmax(x, 1), [1, 0, 0], { dtype: "i32" });
  await assertTensor(x.argmin(), [3, 2, 0], { dtype: "i32" });
  await assertTensor(x.argmax(0), [1, 1, 0, 2], { shape: [4] });
  await assertTensor(mj.argmin(x, -2), [0, 2, 1, 1]);
  await assertTensor(x.argmax(1, true), [1, 0, 0], { shape: [3, 1] });
  await assertTensor(x.argmin(0, true), [0, 2, 1, 1], { shape: [1, 4] });
  await assertTensor(mj.tensor([3]).argmax(), 0, { shape: [] });
  await assertTensor(mj.tensor([[4, 9]]).argmax(0), [0, 0], { shape: [2] });
  await assertTensor(i32([-3, 8, 8, -9]).argmax(), 1, { dtype: "i32" });
  await assertTensor(i32([-3, 8, 8, -9]).argmin(), 3);
  await assertTensor(mj.tensor([-Infinity, -Infinity]).argmax(), 0);
  await assertTensor(mj.tensor([Infinity, 1, Infinity]).argmax(), 0);
  await assertTensor(mj.zeros([0, 2]).argmax(1), [], { shape: [0] });
});

Deno.test("argmax/argmin pick the first NaN, like max/min propagate it", async () => {
  const x = mj.tensor([[1, NaN, 3, NaN], [1, 2, 3, 0]]);
  await assertTensor(x.argmax(), [1, 2]);
  await assertTensor(x.argmin(), [1, 3]);
  await assertTensor(mj.tensor([NaN, NaN]).argmax(), 0);
});

Deno.test("reduction errors name the op, the axis and the shape", () => {
  const x = mj.zeros([2, 3, 4]);
  assert.throws(
    () => x.sum(3),
    /sum: axis 3 is out of range for a tensor of rank 3 \(shape \[2,3,4\]\); expected an integer in -3\.\.2/,
  );
  assert.throws(() => x.mean(-4), /mean: axis -4 is out of range for a tensor of rank 3/);
  assert.throws(() => x.max([0, 5]), /max: axis 5 is out of range/);
  assert.throws(() => x.min(1.5), /min: axis 1.5 is out of range/);
  assert.throws(() => x.sum([0, -3]), /sum: axis list \[0,-3\] repeats an axis/);
  assert.throws(() => x.var([1, 1]), /var: axis list \[1,1\] repeats an axis/);
  assert.throws(() => x.logsumexp(3), /logsumexp: axis 3 is out of range/);
  assert.throws(() => x.softmax(3), /softmax: axis 3 is out of range/);
  assert.throws(() => x.logSoftmax(-4), /logSoftmax: axis -4 is out of range/);
  assert.throws(() => x.argmax(3), /argmax: axis 3 is out of range/);
  assert.throws(() => x.argmin(-4), /argmin: axis -4 is out of range/);
  assert.throws(() => mj.tensor(1).sum(0), /sum: axis 0 is out of range for a tensor of rank 0/);
  const b = mj.tensor([true, false]);
  assert.throws(() => b.sum(), /sum: expected a numeric tensor, got bool\[2\]; cast it first/);
  assert.throws(() => b.max(), /max: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => b.argmax(), /argmax: expected a numeric tensor, got bool\[2\]/);
  const i = i32([1, 2]);
  assert.throws(() => i.mean(), /mean: expected a float tensor, got i32\[2\]/);
  assert.throws(() => i.var(), /var: expected a float tensor, got i32\[2\]/);
  assert.throws(() => i.logsumexp(), /logsumexp: expected a float tensor, got i32\[2\]/);
  assert.throws(() => i.softmax(), /softmax: expected a float tensor, got i32\[2\]/);
  assert.throws(() => i.logSoftmax(), /logSoftmax: expected a float tensor, got i32\[2\]/);
  assert.throws(() => mj.sum([1, 2] as unknown as mj.Tensor), /sum: expected input to be a Tensor/);
});

Deno.test("argmax on a permuted view matches a float64 reference", async () => {
  const data = f32(randomArray(30, 5));
  const x = mj.tensor(data, [5, 6]).transpose(); // [6,5]
  const t = permuteRef(data, [5, 6], [1, 0]);
  await assertTensor(x.argmax(1), reduceRef(t, [6, 5], [1], (v) => v.indexOf(maxOf(v))));
  await assertTensor(x.argmin(0), reduceRef(t, [6, 5], [0], (v) => v.indexOf(minOf(v))));
  assert.deepEqual(await vals(x.max(1)), f32(reduceRef(t, [6, 5], [1], maxOf)));
});
