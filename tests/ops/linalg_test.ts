/** matmul: 2-D, batched, broadcast batch dims, 1-D operands, edge sizes and errors. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertTensor, randomArray } from "../helpers.ts";
import { build, f32, permuteRef, prodOf, ravel } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

/**
 * NumPy matmul in float64 for operands with at least 2 dims: batch dims broadcast, then
 * [..., M, K] @ [..., K, N].
 */
function matmulBroadcastRef(
  a: number[],
  as: number[],
  b: number[],
  bs: number[],
): { data: number[]; shape: number[] } {
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const n = Math.max(ab.length, bb.length);
  const pa = [...Array(n - ab.length).fill(1), ...ab],
    pb = [...Array(n - bb.length).fill(1), ...bb];
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const [M, K] = as.slice(-2), N = bs[bs.length - 1];
  const shape = [...batch, M, N];
  const data = build(shape, (idx) => {
    const bi = idx.slice(0, n), i = idx[n], j = idx[n + 1];
    const ai = bi.map((v, d) => (pa[d] === 1 ? 0 : v)),
      bj = bi.map((v, d) => (pb[d] === 1 ? 0 : v));
    const ao = ravel(ai, pa) * M * K, bo = ravel(bj, pb) * K * N;
    let s = 0;
    for (let k = 0; k < K; k++) s += a[ao + i * K + k] * b[bo + k * N + j];
    return s;
  });
  return { data, shape };
}

Deno.test("matmul 2-D: hand-computed", async () => {
  const a = mj.tensor([[1, 2], [3, 4]]), b = mj.tensor([[5, 6], [7, 8]]);
  await assertTensor(a.matmul(b), [19, 22, 43, 50], { shape: [2, 2], dtype: "f32" });
  await assertTensor(mj.matmul(b, a), [23, 34, 31, 46], { shape: [2, 2] });
  const r = mj.tensor([[1, 0, -1]]), c = mj.tensor([[2], [3], [4]]);
  await assertTensor(r.matmul(c), [-2], { shape: [1, 1] });
  await assertTensor(c.matmul(r), [2, 0, -2, 3, 0, -3, 4, 0, -4], { shape: [3, 3] });
});

Deno.test("matmul 2-D and batched against a float64 reference", async () => {
  let seed = 40;
  const cases: [number[], number[]][] = [
    [[2, 3], [3, 4]],
    [[5, 1], [1, 6]],
    [[1, 7], [7, 1]],
    [[3, 2, 3], [3, 3, 2]],
    [[2, 2, 3, 4], [2, 2, 4, 5]],
  ];
  for (const [as, bs] of cases) {
    const a = f32(randomArray(prodOf(as), seed++)), b = f32(randomArray(prodOf(bs), seed++));
    const r = mj.tensor(a, as).matmul(mj.tensor(b, bs));
    const ref = matmulBroadcastRef(a, as, b, bs);
    await assertTensor(r, ref.data, { shape: ref.shape, rtol: 1e-6, atol: 1e-6 });
  }
});

Deno.test("matmul broadcasts batch dims both ways", async () => {
  let seed = 60;
  const cases: [number[], number[], number[]][] = [
    [[2, 1, 2, 3], [3, 3, 2], [2, 3, 2, 2]],
    [[3, 3, 2], [2, 1, 2, 3], [2, 3, 3, 3]],
    [[3, 2], [4, 2, 5], [4, 3, 5]],
    [[4, 2, 3], [3, 5], [4, 2, 5]],
    [[1, 2, 3], [4, 3, 2], [4, 2, 2]],
    [[4, 2, 3], [1, 3, 2], [4, 2, 2]],
    [[2, 1, 1, 3], [1, 3, 3, 1], [2, 3, 1, 1]],
  ];
  for (const [as, bs, out] of cases) {
    const a = f32(randomArray(prodOf(as), seed++)), b = f32(randomArray(prodOf(bs), seed++));
    const r = mj.matmul(mj.tensor(a, as), mj.tensor(b, bs));
    const ref = matmulBroadcastRef(a, as, b, bs);
    assert.deepEqual(ref.shape, out);
    await assertTensor(r, ref.data, { shape: out, rtol: 1e-6, atol: 1e-6 });
  }
});

Deno.test("matmul with 1-D operands drops the vector dim", async () => {
  const v = mj.tensor([1, 2, 3]);
  const m = mj.tensor([[1, 2], [3, 4], [5, 6]]); // [3,2]
  await assertTensor(v.matmul(m), [22, 28], { shape: [2] });
  await assertTensor(m.transpose().matmul(v), [22, 28], { shape: [2] });
  await assertTensor(v.matmul(mj.tensor([4, 5, 6])), 32, { shape: [] });
  await assertTensor(mj.tensor([2]).matmul(mj.tensor([3])), 6, { shape: [] });
  // A 1-D left operand against batched right, and batched left against a 1-D right.
  const b = mj.tensor([[[1, 0], [0, 1], [1, 1]], [[2, 0], [0, 2], [0, 0]]]); // [2,3,2]
  await assertTensor(v.matmul(b), [4, 5, 2, 4], { shape: [2, 2] });
  await assertTensor(b.swapAxes().matmul(v), [4, 5, 2, 4], { shape: [2, 2] });
  await assertTensor(mj.tensor([[[1, 2]]]).matmul(mj.tensor([3, 4])), [11], { shape: [1, 1] });
});

Deno.test("matmul with size-1 and size-0 dims", async () => {
  await assertTensor(mj.tensor([[3]]).matmul(mj.tensor([[4]])), [12], { shape: [1, 1] });
  // K = 0: an empty sum is 0.
  await assertTensor(mj.zeros([2, 0]).matmul(mj.zeros([0, 3])), [0, 0, 0, 0, 0, 0], {
    shape: [2, 3],
  });
  await assertTensor(mj.zeros([0, 3]).matmul(mj.ones([3, 2])), [], { shape: [0, 2] });
  await assertTensor(mj.ones([2, 3]).matmul(mj.ones([3, 0])), [], { shape: [2, 0] });
  await assertTensor(mj.ones([0, 2, 3]).matmul(mj.ones([3, 4])), [], { shape: [0, 2, 4] });
  await assertTensor(mj.zeros([0]).matmul(mj.zeros([0])), 0, { shape: [] });
});

Deno.test("matmul of non-contiguous operands", async () => {
  const a = f32(randomArray(12, 80)), b = f32(randomArray(24, 81));
  // [3,4] as the transpose of a [4,3] tensor, against [2,4,3] reached through two permutes.
  const at = mj.tensor(a, [4, 3]).transpose();
  const b2 = mj.tensor(b, [2, 4, 3]).permute([1, 0, 2]).permute([1, 0, 2]);
  const ref = matmulBroadcastRef(permuteRef(a, [4, 3], [1, 0]), [3, 4], b, [2, 4, 3]);
  await assertTensor(at.matmul(b2), ref.data, { shape: [2, 3, 3], rtol: 1e-6, atol: 1e-6 });
  // Batched [2,3,4] from swapping the last two axes of [2,4,3], against a contiguous [4,3].
  const bT = mj.tensor(b, [2, 4, 3]).swapAxes();
  const ref2 = matmulBroadcastRef(permuteRef(b, [2, 4, 3], [0, 2, 1]), [2, 3, 4], a, [4, 3]);
  await assertTensor(bT.matmul(mj.tensor(a, [4, 3])), ref2.data, {
    shape: [2, 3, 3],
    rtol: 1e-6,
    atol: 1e-6,
  });
});

Deno.test("matmul errors name the shapes", () => {
  assert.throws(
    () => mj.zeros([2, 3]).matmul(mj.zeros([4, 2])),
    /matmul: inner dimensions differ: f32\[2,3\] @ f32\[4,2\]; expected the left operand's last dim \(3\) to equal the right operand's second-to-last dim \(4\)/,
  );
  assert.throws(
    () => mj.zeros([2, 3]).matmul(mj.zeros([4])),
    /matmul: inner dimensions differ: f32\[2,3\] @ f32\[4\]; .* only dim \(4\)/,
  );
  assert.throws(
    () => mj.zeros([3]).matmul(mj.zeros([2, 3])),
    /matmul: inner dimensions differ: f32\[3\] @ f32\[2,3\]/,
  );
  assert.throws(
    () => mj.zeros([2, 2, 3]).matmul(mj.zeros([3, 3, 2])),
    /matmul: batch dims \[2\] and \[3\] cannot broadcast/,
  );
  assert.throws(
    () => mj.tensor(2).matmul(mj.zeros([2])),
    /matmul: expected operands with at least one axis, got f32\[\] and f32\[2\]/,
  );
  assert.throws(
    () => mj.zeros([2, 2], { dtype: "i32" }).matmul(mj.zeros([2, 2], { dtype: "i32" })),
    /matmul: expected f32 operands, got i32\[2,2\] and i32\[2,2\]/,
  );
  assert.throws(
    () => mj.zeros([2, 2]).matmul(mj.zeros([2, 2], { dtype: "i32" })),
    /matmul: expected f32 operands, got f32\[2,2\] and i32\[2,2\]/,
  );
  assert.throws(
    () => mj.matmul(mj.zeros([2, 2]), [[1]] as Any),
    /matmul: expected the right operand to be a Tensor/,
  );
});
