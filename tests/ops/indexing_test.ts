/** Index-driven ops: gather/scatterAdd, takeRows/scatterAddRows, topk, oneHot, cumsum. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertTensor, prng, randomArray } from "../helpers.ts";
import { build, f32, prodOf, ravel, vals } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

const i32 = (d: unknown, shape?: number[]) => mj.tensor(d as number[], shape, { dtype: "i32" });
const iota = (n: number) => Array.from({ length: n }, (_, i) => i);

// ---- gather -----------------------------------------------------------------------------------

Deno.test("gather (take_along_axis) along axis 1 and 0: hand cases", async () => {
  const x = mj.tensor([[10, 11, 12], [20, 21, 22]]);
  await assertTensor(x.gather(1, i32([[2], [0]])), [12, 20], { shape: [2, 1], dtype: "f32" });
  await assertTensor(mj.gather(x, 1, i32([[0, 0, 2, 1, 1], [2, 2, 2, 0, 1]])), [
    10,
    10,
    12,
    11,
    11,
    22,
    22,
    22,
    20,
    21,
  ], { shape: [2, 5] });
  await assertTensor(x.gather(0, i32([[1, 0, 1]])), [20, 11, 22], { shape: [1, 3] });
  await assertTensor(x.gather(-2, i32([[1, 1, 0], [0, 0, 1], [1, 0, 0]])), [
    20,
    21,
    12,
    10,
    11,
    22,
    20,
    11,
    12,
  ], { shape: [3, 3] });
  // An empty index along the axis gives an empty result.
  await assertTensor(x.gather(1, i32([], [2, 0])), [], { shape: [2, 0] });
  // 1-D and size-1 cases.
  await assertTensor(mj.tensor([5, 6, 7]).gather(0, i32([2, 2, 0, 1])), [7, 7, 5, 6]);
  await assertTensor(mj.tensor([[9]]).gather(1, i32([[0, 0]])), [9, 9], { shape: [1, 2] });
  // Integer and bool sources keep their dtype.
  await assertTensor(i32([[1, -2]]).gather(1, i32([[1, 0]])), [-2, 1], { dtype: "i32" });
  await assertTensor(mj.tensor([true, false]).gather(0, i32([1, 1, 0])), [0, 0, 1], {
    dtype: "bool",
  });
});

Deno.test("gather on 3-D tensors along every axis matches a loop reference", async () => {
  const shape = [2, 3, 4];
  const data = f32(randomArray(24, 21));
  const x = mj.tensor(data, shape);
  const rnd = prng(5);
  for (let axis = 0; axis < 3; axis++) {
    const ishape = [...shape];
    ishape[axis] = 5;
    const idx = Array.from({ length: prodOf(ishape) }, () => Math.floor(rnd() * shape[axis]));
    const expected = build(ishape, (p) => {
      const q = [...p];
      q[axis] = idx[ravel(p, ishape)];
      return data[ravel(q, shape)];
    });
    await assertTensor(x.gather(axis, i32(idx, ishape)), expected, { shape: ishape, rtol: 0 });
  }
  // A permuted source is gathered in its logical layout.
  const t = x.permute([2, 0, 1]); // [4,2,3]
  const idx = i32([3, 0, 1, 2, 2, 0], [1, 2, 3]);
  const expected = build([1, 2, 3], ([, j, k]) => {
    const i = [3, 0, 1, 2, 2, 0][j * 3 + k];
    return data[ravel([j, k, i], shape)];
  });
  await assertTensor(t.gather(0, idx), expected, { shape: [1, 2, 3], rtol: 0 });
});

Deno.test("gather errors", async () => {
  const x = mj.zeros([2, 3]);
  assert.throws(
    () => x.gather(1, mj.tensor([[0], [1]])),
    /gather: expected an i32 index tensor, got f32\[2,1\]; convert with \.cast\("i32"\)/,
  );
  assert.throws(
    () => x.gather(1, i32([0, 1])),
    /gather: index shape \[2\] does not fit f32\[2,3\] along axis 1; expected rank 2/,
  );
  assert.throws(
    () => x.gather(1, i32([[0], [1], [2]])),
    /gather: index shape \[3,1\] does not fit/,
  );
  assert.throws(() => x.gather(2, i32([[0], [1]])), /gather: axis 2 is out of range/);
  assert.throws(() => x.gather(1, [[0]] as Any), /gather: expected the index to be a Tensor/);
  await assert.rejects(
    () => x.gather(1, i32([[3], [0]])).data(),
    /gather: index 3 is out of range for axis 1 \(size 3\); expected an integer in 0\.\.2\n {4}at your call: .*indexing_test\.ts/,
  );
  await assert.rejects(
    () => x.gather(1, i32([[0], [-1]])).data(),
    /gather: index -1 is out of range for axis 1 \(size 3\)/,
  );
});

// ---- scatterAdd -------------------------------------------------------------------------------

Deno.test("scatterAdd: repeated indices accumulate, along axis 1 and 0", async () => {
  const upd = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  await assertTensor(mj.scatterAdd(upd, 1, i32([[0, 0, 3], [2, 2, 2]]), [2, 4]), [
    3,
    0,
    0,
    3,
    0,
    0,
    15,
    0,
  ], { shape: [2, 4], dtype: "f32" });
  await assertTensor(mj.scatterAdd(upd, 0, i32([[1, 0, 1], [1, 1, 1]]), [3, 3]), [
    0,
    2,
    0,
    5,
    5,
    9,
    0,
    0,
    0,
  ], { shape: [3, 3] });
  await assertTensor(mj.scatterAdd(mj.tensor([1, 1, 1, 1]), -1, i32([0, 2, 0, 0]), [3]), [
    3,
    0,
    1,
  ]);
  // Integer updates accumulate as integers.
  await assertTensor(mj.scatterAdd(i32([5, -2, 7]), 0, i32([1, 1, 0]), [2]), [7, 3], {
    dtype: "i32",
  });
  // An empty update leaves zeros.
  await assertTensor(mj.scatterAdd(mj.zeros([2, 0]), 1, i32([], [2, 0]), [2, 3]), [
    0,
    0,
    0,
    0,
    0,
    0,
  ], { shape: [2, 3] });
});

Deno.test("scatterAdd is the adjoint of gather: <gather(x, i), u> = <x, scatterAdd(u, i)>", async () => {
  const shape = [3, 4, 2], ishape = [3, 6, 2];
  const x = f32(randomArray(24, 31)), u = f32(randomArray(36, 32));
  const rnd = prng(9);
  const idx = Array.from({ length: 36 }, () => Math.floor(rnd() * 4));
  const g = await vals(mj.tensor(x, shape).gather(1, i32(idx, ishape)));
  const s = await vals(mj.scatterAdd(mj.tensor(u, ishape), 1, i32(idx, ishape), shape));
  const lhs = g.reduce((acc, v, i) => acc + v * u[i], 0);
  const rhs = s.reduce((acc, v, i) => acc + v * x[i], 0);
  assert.ok(Math.abs(lhs - rhs) < 1e-5, `${lhs} vs ${rhs}`);
  // And against a direct loop.
  const expected = new Array(24).fill(0);
  for (let p = 0; p < 36; p++) {
    const [a, , c] = [Math.floor(p / 12), 0, p % 2];
    expected[ravel([a, idx[p], c], shape)] += u[p];
  }
  await assertTensor(mj.scatterAdd(mj.tensor(u, ishape), 1, i32(idx, ishape), shape), expected, {
    rtol: 1e-6,
  });
});

Deno.test("scatterAdd errors", async () => {
  const u = mj.zeros([2, 3]);
  assert.throws(
    () => mj.scatterAdd(u, 1, i32([[0, 1], [0, 1]]), [2, 4]),
    /scatterAdd: index shape \[2,2\] must equal updates shape \[2,3\]/,
  );
  assert.throws(
    () => mj.scatterAdd(u, 1, i32([0, 0, 0, 0, 0, 0], [2, 3]), [3, 4]),
    /scatterAdd: target shape \[3,4\] must match updates \[2,3\] on every axis but 1/,
  );
  assert.throws(
    () => mj.scatterAdd(u, 1, mj.zeros([2, 3]), [2, 3]),
    /scatterAdd: expected an i32 index tensor, got f32\[2,3\]/,
  );
  assert.throws(
    () => mj.scatterAdd(u, 2, i32([0, 0, 0, 0, 0, 0], [2, 3]), [2, 3]),
    /scatterAdd: axis 2 is out of range/,
  );
  for (const bad of [[-1], [2.5], "3"]) {
    assert.throws(
      () => mj.scatterAdd(mj.ones([2]), 0, i32([0, 0]), bad as Any),
      /scatterAdd: expected a shape of non-negative integers/,
    );
  }
  await assert.rejects(
    () => mj.scatterAdd(mj.ones([2]), 0, i32([0, 5]), [3]).data(),
    /scatterAdd: index 5 is out of range for axis 0 of the target \(size 3\)/,
  );
});

// ---- takeRows / scatterAddRows ----------------------------------------------------------------

Deno.test("takeRows picks rows, with repeats, of 1-D, 2-D and 3-D tables", async () => {
  const table = mj.tensor([[0, 1], [10, 11], [20, 21], [30, 31]]);
  await assertTensor(mj.takeRows(table, i32([3, 0, 3])), [30, 31, 0, 1, 30, 31], {
    shape: [3, 2],
  });
  await assertTensor(mj.takeRows(mj.tensor([5, 6, 7]), i32([2, 0])), [7, 5], { shape: [2] });
  const t3 = mj.tensor(iota(12), [3, 2, 2]);
  await assertTensor(mj.takeRows(t3, i32([1])), [4, 5, 6, 7], { shape: [1, 2, 2] });
  await assertTensor(mj.takeRows(table, i32([], [0])), [], { shape: [0, 2] });
  await assertTensor(mj.takeRows(table.transpose(), i32([1, 0])), [1, 11, 21, 31, 0, 10, 20, 30], {
    shape: [2, 4],
  });
  await assertTensor(mj.takeRows(i32([[1, 2], [3, 4]]), i32([1])), [3, 4], { dtype: "i32" });
});

Deno.test("scatterAddRows accumulates repeated rows", async () => {
  const upd = mj.tensor([[1, 2], [3, 4], [5, 6]]);
  await assertTensor(mj.scatterAddRows(upd, i32([2, 0, 2]), 4), [3, 4, 0, 0, 6, 8, 0, 0], {
    shape: [4, 2],
  });
  await assertTensor(mj.scatterAddRows(mj.tensor([1, 2, 3]), i32([0, 0, 1]), 2), [3, 3], {
    shape: [2],
  });
  await assertTensor(mj.scatterAddRows(mj.zeros([0, 3]), i32([], [0]), 2), [0, 0, 0, 0, 0, 0], {
    shape: [2, 3],
  });
  await assertTensor(mj.scatterAddRows(mj.zeros([0]), i32([], [0]), 0), [], { shape: [0] });
  const u3 = mj.tensor(iota(8), [2, 2, 2]);
  await assertTensor(mj.scatterAddRows(u3, i32([1, 1]), 2), [0, 0, 0, 0, 4, 6, 8, 10], {
    shape: [2, 2, 2],
  });
});

Deno.test("takeRows/scatterAddRows errors", async () => {
  const t = mj.zeros([4, 2]);
  assert.throws(
    () => mj.takeRows(t, i32([[0]])),
    /takeRows: expected x with rank ≥ 1 and a 1-D index, got f32\[4,2\] and i32\[1,1\]/,
  );
  assert.throws(() => mj.takeRows(mj.tensor(1), i32([0])), /takeRows: expected x with rank ≥ 1/);
  assert.throws(() => mj.takeRows(t, mj.tensor([0])), /takeRows: expected an i32 index tensor/);
  await assert.rejects(
    () => mj.takeRows(t, i32([4])).data(),
    /takeRows: index 4 is out of range for the rows of x \(size 4\)/,
  );
  assert.throws(
    () => mj.scatterAddRows(t, i32([0, 1]), 4),
    /scatterAddRows: expected updates \[M, \.\.\.\] and rows \[M\], got f32\[4,2\] and i32\[2\]/,
  );
  assert.throws(
    () => mj.scatterAddRows(t, i32([0, 1, 2, 3]), -1),
    /scatterAddRows: numRows must be a non-negative integer, got -1/,
  );
  assert.throws(
    () => mj.scatterAddRows(t, i32([0, 1, 2, 3]), 2.5),
    /scatterAddRows: numRows must be a non-negative integer, got 2.5/,
  );
});

// ---- topk -------------------------------------------------------------------------------------

Deno.test("topk: sorted descending, ties to the lower index, k=1 and k=n", async () => {
  const x = mj.tensor([[3, 1, 4, 1, 5], [2, 7, 7, 1, 7]]);
  const t2 = x.topk(2);
  await assertTensor(t2.values, [5, 4, 7, 7], { shape: [2, 2], dtype: "f32" });
  await assertTensor(t2.indices, [4, 2, 1, 2], { shape: [2, 2], dtype: "i32" });
  const t1 = mj.topk(x, 1);
  await assertTensor(t1.values, [5, 7], { shape: [2, 1] });
  await assertTensor(t1.indices, [4, 1], { shape: [2, 1] });
  const t5 = x.topk(5);
  await assertTensor(t5.values, [5, 4, 3, 1, 1, 7, 7, 7, 2, 1], { shape: [2, 5] });
  await assertTensor(t5.indices, [4, 2, 0, 1, 3, 1, 2, 4, 0, 3], { shape: [2, 5] });
});

Deno.test("topk: 1-D, size-1 axes, 3-D, ints, infinities and NaN", async () => {
  const v = mj.tensor([0.5, -1, 2]).topk(3);
  await assertTensor(v.values, [2, 0.5, -1], { shape: [3] });
  await assertTensor(v.indices, [2, 0, 1], { shape: [3] });
  const one = mj.tensor([[4], [-4]]).topk(1);
  await assertTensor(one.values, [4, -4], { shape: [2, 1] });
  await assertTensor(one.indices, [0, 0], { shape: [2, 1] });
  const t3 = mj.tensor([[[1, 3, 2]], [[9, 8, 9]]]).topk(2);
  await assertTensor(t3.values, [3, 2, 9, 9], { shape: [2, 1, 2] });
  await assertTensor(t3.indices, [1, 2, 0, 2], { shape: [2, 1, 2] });
  const ti = i32([-5, 2147483647, -2147483648, 0]).topk(4);
  await assertTensor(ti.values, [2147483647, 0, -5, -2147483648], { dtype: "i32" });
  await assertTensor(ti.indices, [1, 3, 0, 2]);
  const tu = mj.tensor([1, 4294967295, 0], undefined, { dtype: "u32" }).topk(2);
  await assertTensor(tu.values, [4294967295, 1], { dtype: "u32" });
  const inf = mj.tensor([-Infinity, 0, Infinity]).topk(3);
  await assertTensor(inf.indices, [2, 1, 0]);
  // NaN ranks above every number, +inf included: the rule of max and argmax.
  const nan = mj.tensor([-Infinity, NaN, Infinity, 1, NaN]).topk(5);
  await assertTensor(nan.indices, [1, 4, 2, 3, 0]);
  await assertTensor(nan.values, [NaN, NaN, Infinity, 1, -Infinity]);
  const row = mj.tensor([1, NaN, 3]);
  await assertTensor(row.topk(1).indices, [1]);
  await assertTensor(row.argmax(), [1], { dtype: "i32" });
  await assertTensor(row.max(), [NaN]);
  await assertTensor(mj.kthLargest(row, 1), [NaN]);
  await assertTensor(mj.kthLargest(row, 2), [3]);
  // topk of a transposed tensor works on its logical last axis.
  const tt = mj.tensor([[1, 9], [8, 2], [5, 5]]).transpose().topk(2); // [[1,8,5],[9,2,5]]
  await assertTensor(tt.values, [8, 5, 9, 5], { shape: [2, 2] });
  await assertTensor(tt.indices, [1, 2, 0, 2]);
  await assertTensor(mj.zeros([0, 3]).topk(2).indices, [], { shape: [0, 2] });
});

Deno.test("topk matches a sort-based reference on random rows", async () => {
  const data = f32(randomArray(6 * 9, 13));
  const x = mj.tensor(data, [6, 9]);
  const k = 4;
  const { values, indices } = x.topk(k);
  const ev: number[] = [], ei: number[] = [];
  for (let r = 0; r < 6; r++) {
    const row = data.slice(r * 9, r * 9 + 9);
    const order = iota(9).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
    ei.push(...order);
    ev.push(...order.map((i) => row[i]));
  }
  await assertTensor(indices, ei);
  await assertTensor(values, ev, { rtol: 0 });
});

Deno.test("topk errors", () => {
  const x = mj.zeros([2, 4]);
  assert.throws(
    () => x.topk(5),
    /topk: k must be an integer in 1\.\.4 \(the last axis of f32\[2,4\]\), got 5/,
  );
  assert.throws(() => x.topk(0), /topk: k must be an integer in 1\.\.4/);
  assert.throws(() => x.topk(1.5), /topk: k must be an integer in 1\.\.4.*got 1.5/);
  assert.throws(
    () => mj.tensor(3).topk(1),
    /topk: expected a tensor with at least one axis, got f32\[\]/,
  );
  assert.throws(() => mj.tensor([true]).topk(1), /topk: expected a numeric tensor, got bool\[1\]/);
});

// ---- oneHot -----------------------------------------------------------------------------------

Deno.test("oneHot: shapes, dtypes and out-of-range indices", async () => {
  await assertTensor(mj.oneHot(i32([2, 0, 3]), 4), [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1], {
    shape: [3, 4],
    dtype: "f32",
  });
  await assertTensor(mj.oneHot(i32([[1], [0]]), 2, "i32"), [0, 1, 1, 0], {
    shape: [2, 1, 2],
    dtype: "i32",
  });
  await assertTensor(mj.oneHot(i32(1), 3, "bool"), [0, 1, 0], { shape: [3], dtype: "bool" });
  await assertTensor(mj.oneHot(i32([0]), 1), [1], { shape: [1, 1] });
  // Indices outside [0, n) give an all-zero row.
  await assertTensor(mj.oneHot(i32([-1, 3, 1]), 3), [0, 0, 0, 0, 0, 0, 0, 1, 0], {
    shape: [3, 3],
  });
  await assertTensor(mj.oneHot(i32([], [0]), 3), [], { shape: [0, 3] });
  await assertTensor(mj.oneHot(i32([[0, 2]]).transpose(), 3), [1, 0, 0, 0, 0, 1], {
    shape: [2, 1, 3],
  });
});

Deno.test("oneHot errors", () => {
  assert.throws(
    () => mj.oneHot(mj.tensor([1]), 3),
    /oneHot: expected an i32 index tensor, got f32\[1\]/,
  );
  assert.throws(() => mj.oneHot(i32([1]), 0), /oneHot: n must be a positive integer, got 0/);
  assert.throws(() => mj.oneHot(i32([1]), 2.5), /oneHot: n must be a positive integer, got 2.5/);
  assert.throws(() => mj.oneHot(i32([1]), 2, "f64" as Any), /oneHot: unknown dtype "f64"/);
});

// ---- cumsum -----------------------------------------------------------------------------------

Deno.test("cumsum: inclusive, reverse, exclusive and both on 1-D", async () => {
  const x = mj.tensor([1, 2, 3, 4]);
  await assertTensor(x.cumsum(), [1, 3, 6, 10], { shape: [4] });
  await assertTensor(mj.cumsum(x, 0, { reverse: true }), [10, 9, 7, 4]);
  await assertTensor(x.cumsum(-1, { exclusive: true }), [0, 1, 3, 6]);
  await assertTensor(x.cumsum(0, { reverse: true, exclusive: true }), [9, 7, 4, 0]);
  await assertTensor(x.cumsum(0, { reverse: false, exclusive: false }), [1, 3, 6, 10]);
});

Deno.test("cumsum along each axis of 2-D and 3-D tensors", async () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  await assertTensor(x.cumsum(0), [1, 2, 3, 5, 7, 9], { shape: [2, 3] });
  await assertTensor(x.cumsum(1), [1, 3, 6, 4, 9, 15]);
  await assertTensor(x.cumsum(-2, { reverse: true }), [5, 7, 9, 4, 5, 6]);
  await assertTensor(x.cumsum(1, { exclusive: true }), [0, 1, 3, 0, 4, 9]);
  await assertTensor(x.cumsum(0, { exclusive: true, reverse: true }), [4, 5, 6, 0, 0, 0]);
  // A loop reference on a 3-D tensor for all four variants and axes.
  const shape = [2, 3, 4];
  const data = f32(randomArray(24, 17));
  const t = mj.tensor(data, shape);
  for (let axis = 0; axis < 3; axis++) {
    for (const reverse of [false, true]) {
      for (const exclusive of [false, true]) {
        const expected = build(shape, (p) => {
          let s = 0;
          for (let j = 0; j < shape[axis]; j++) {
            const take = reverse
              ? (exclusive ? j > p[axis] : j >= p[axis])
              : (exclusive ? j < p[axis] : j <= p[axis]);
            if (!take) continue;
            const q = [...p];
            q[axis] = j;
            s += data[ravel(q, shape)];
          }
          return s;
        });
        await assertTensor(t.cumsum(axis, { reverse, exclusive }), expected, {
          shape,
          rtol: 1e-6,
          atol: 1e-6,
        });
      }
    }
  }
});

Deno.test("cumsum: size-1 and size-0 axes, permuted input, integers", async () => {
  await assertTensor(mj.tensor([[5], [6]]).cumsum(1), [5, 6], { shape: [2, 1] });
  await assertTensor(mj.tensor([[5], [6]]).cumsum(1, { exclusive: true }), [0, 0]);
  await assertTensor(mj.zeros([0, 3]).cumsum(0), [], { shape: [0, 3] });
  await assertTensor(mj.zeros([2, 0]).cumsum(-1), [], { shape: [2, 0] });
  const t = mj.tensor([[1, 2, 3], [4, 5, 6]]).transpose(); // [[1,4],[2,5],[3,6]]
  await assertTensor(t.cumsum(0), [1, 4, 3, 9, 6, 15], { shape: [3, 2] });
  await assertTensor(i32([1, -2, 3]).cumsum(), [1, -1, 2], { dtype: "i32" });
  await assertTensor(i32([2147483647, 1, 1]).cumsum(), [2147483647, -2147483648, -2147483647], {
    dtype: "i32",
  });
  await assertTensor(
    mj.tensor([4294967295, 1, 2], undefined, { dtype: "u32" }).cumsum(0, { reverse: true }),
    [2, 3, 2],
    { dtype: "u32" },
  );
});

Deno.test("cumsum errors", () => {
  const x = mj.zeros([2, 3]);
  assert.throws(
    () => x.cumsum(0, { reversed: true } as Any),
    /cumsum: unknown option "reversed"; expected reverse or exclusive/,
  );
  assert.throws(() => x.cumsum(2), /cumsum: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(
    () => mj.tensor([true]).cumsum(),
    /cumsum: expected a numeric tensor, got bool\[1\]/,
  );
  assert.throws(
    () => mj.tensor(1).cumsum(),
    /cumsum: axis -1 is out of range for a tensor of rank 0/,
  );
});
