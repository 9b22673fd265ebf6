/** Movement ops: reshape, permutations, broadcasting, squeeze, slicing, padding, concat/stack. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertTensor } from "../helpers.ts";
import { build, permuteRef, ravel, vals } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

const iota = (n: number) => Array.from({ length: n }, (_, i) => i);
/** f32 tensor 0..n-1 of `shape`. */
const seq = (shape: number[]) => mj.tensor(iota(shape.reduce((a, b) => a * b, 1)), shape);
const i32 = (d: unknown, shape?: number[]) => mj.tensor(d as number[], shape, { dtype: "i32" });

// ---- reshape / flatten ------------------------------------------------------------------------

Deno.test("reshape: explicit shapes, -1, size-1 dims and scalars", async () => {
  const x = seq([2, 3]);
  await assertTensor(x.reshape([3, 2]), iota(6), { shape: [3, 2] });
  await assertTensor(mj.reshape(x, [6]), iota(6), { shape: [6] });
  await assertTensor(x.reshape([-1]), iota(6), { shape: [6] });
  await assertTensor(x.reshape([2, -1]), iota(6), { shape: [2, 3] });
  await assertTensor(x.reshape([-1, 1, 2]), iota(6), { shape: [3, 1, 2] });
  await assertTensor(x.reshape([1, 6, 1]), iota(6), { shape: [1, 6, 1] });
  await assertTensor(mj.tensor([5]).reshape([]), 5, { shape: [] });
  await assertTensor(mj.tensor(5).reshape([1, 1]), [5], { shape: [1, 1] });
  await assertTensor(mj.tensor(5).reshape([-1]), [5], { shape: [1] });
  assert.deepEqual(await x.reshape([3, 2]).tolist(), [[0, 1], [2, 3], [4, 5]]);
  // Reshape of a reshape, and back to the original shape.
  await assertTensor(x.reshape([6]).reshape([3, 2]).reshape([2, 3]), iota(6), { shape: [2, 3] });
});

Deno.test("reshape: size-0 tensors", async () => {
  const e = mj.zeros([0, 3]);
  await assertTensor(e.reshape([3, 0]), [], { shape: [3, 0] });
  await assertTensor(e.reshape([-1, 3]), [], { shape: [0, 3] });
  await assertTensor(e.reshape([0]), [], { shape: [0] });
  // With a 0 among the known dims, -1 could be anything; NumPy refuses too.
  assert.throws(() => e.reshape([2, 0, -1]), /reshape: cannot infer -1 in \[2,0,-1\]/);
});

Deno.test("reshape of a permuted tensor uses the logical (row-major) order", async () => {
  const x = seq([2, 3]); // [[0,1,2],[3,4,5]]
  await assertTensor(x.transpose().reshape([6]), [0, 3, 1, 4, 2, 5], { shape: [6] });
  await assertTensor(x.transpose().reshape([2, 3]), [0, 3, 1, 4, 2, 5], { shape: [2, 3] });
  const y = seq([2, 3, 4]).permute([1, 2, 0]); // [3,4,2]
  await assertTensor(y.reshape([12, 2]), permuteRef(iota(24), [2, 3, 4], [1, 2, 0]), {
    shape: [12, 2],
  });
});

Deno.test("flatten", async () => {
  await assertTensor(seq([2, 3, 4]).flatten(), iota(24), { shape: [24] });
  await assertTensor(mj.tensor(3).flatten(), [3], { shape: [1] });
  await assertTensor(mj.zeros([2, 0]).flatten(), [], { shape: [0] });
  await assertTensor(seq([2, 3]).transpose().flatten(), [0, 3, 1, 4, 2, 5]);
});

Deno.test("reshape errors name the shapes", () => {
  const x = mj.zeros([2, 3]);
  assert.throws(
    () => x.reshape([4]),
    /reshape: cannot reshape f32\[2,3\] \(6 elements\) to \[4\] \(4 elements\); expected the same number of elements/,
  );
  assert.throws(() => x.reshape([-1, -1]), /reshape: only one dimension may be -1, got \[-1,-1\]/);
  assert.throws(
    () => x.reshape([4, -1]),
    /reshape: cannot infer -1 in \[4,-1\] for f32\[2,3\] \(6 elements\)/,
  );
  assert.throws(() => x.reshape([0, -1]), /reshape: cannot infer -1 in \[0,-1\]/);
  assert.throws(() => x.reshape([-2, -3]), /reshape: invalid dimension -2 in \[-2,-3\]/);
  assert.throws(() => x.reshape([2.5, 2]), /reshape: invalid dimension 2.5/);
  assert.throws(() => x.reshape(6 as Any), /reshape: expected an array of dimensions, got number/);
});

// ---- permute / transpose / swapAxes -----------------------------------------------------------

Deno.test("permute matches a float64 reference for every permutation of 3 axes", async () => {
  const shape = [2, 3, 4];
  const x = seq(shape);
  const perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  for (const p of perms) {
    const r = x.permute(p);
    assert.deepEqual(r.shape, p.map((a) => shape[a]));
    assert.deepEqual(await vals(r), permuteRef(iota(24), shape, p), `perm ${p}`);
  }
  // Negative axes count from the end.
  assert.deepEqual(await vals(mj.permute(x, [-1, 0, -2])), permuteRef(iota(24), shape, [2, 0, 1]));
  // Permuting twice composes; the inverse permutation restores the original.
  assert.deepEqual(await vals(x.permute([1, 2, 0]).permute([2, 0, 1])), iota(24));
  assert.deepEqual(
    await vals(x.permute([2, 0, 1]).permute([2, 0, 1])),
    permuteRef(permuteRef(iota(24), shape, [2, 0, 1]), [4, 2, 3], [2, 0, 1]),
  );
});

Deno.test("permute/transpose with size-1 dims, 1-D and scalars", async () => {
  const x = seq([1, 3, 1]);
  await assertTensor(x.permute([2, 1, 0]), [0, 1, 2], { shape: [1, 3, 1] });
  await assertTensor(x.permute([1, 0, 2]), [0, 1, 2], { shape: [3, 1, 1] });
  await assertTensor(seq([3]).transpose(), [0, 1, 2], { shape: [3] });
  await assertTensor(mj.tensor(4).transpose(), 4, { shape: [] });
  await assertTensor(mj.tensor(4).permute([]), 4, { shape: [] });
  await assertTensor(mj.zeros([0, 2]).transpose(), [], { shape: [2, 0] });
});

Deno.test("transpose: default reverses all axes; with perm it is permute", async () => {
  const x = seq([2, 3, 4]);
  await assertTensor(x.transpose(), permuteRef(iota(24), [2, 3, 4], [2, 1, 0]), {
    shape: [4, 3, 2],
  });
  await assertTensor(mj.transpose(x), permuteRef(iota(24), [2, 3, 4], [2, 1, 0]));
  await assertTensor(mj.transpose(x, [1, 0, 2]), permuteRef(iota(24), [2, 3, 4], [1, 0, 2]), {
    shape: [3, 2, 4],
  });
  assert.deepEqual(await seq([2, 3]).transpose().tolist(), [[0, 3], [1, 4], [2, 5]]);
});

Deno.test("swapAxes: default last two, explicit and negative axes", async () => {
  const x = seq([2, 3, 4]);
  await assertTensor(x.swapAxes(), permuteRef(iota(24), [2, 3, 4], [0, 2, 1]), {
    shape: [2, 4, 3],
  });
  await assertTensor(mj.swapAxes(x, 0, 2), permuteRef(iota(24), [2, 3, 4], [2, 1, 0]), {
    shape: [4, 3, 2],
  });
  await assertTensor(x.swapAxes(-3, 1), permuteRef(iota(24), [2, 3, 4], [1, 0, 2]), {
    shape: [3, 2, 4],
  });
  await assertTensor(x.swapAxes(1, 1), iota(24), { shape: [2, 3, 4] });
});

Deno.test("permute errors", () => {
  const x = mj.zeros([2, 3]);
  assert.throws(
    () => x.permute([0]),
    /permute: expected a permutation of 2 axes for f32\[2,3\], got \[0\]/,
  );
  assert.throws(
    () => x.permute([0, 0]),
    /permute: \[0,0\] is not a permutation \(an axis repeats\)/,
  );
  assert.throws(() => x.permute([0, -2]), /permute: \[0,-2\] is not a permutation/);
  assert.throws(() => x.permute([0, 2]), /permute: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => x.swapAxes(0, 2), /swapAxes: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => mj.zeros([3]).swapAxes(), /swapAxes: axis -2 is out of range/);
});

// ---- broadcastTo / expand ---------------------------------------------------------------------

Deno.test("broadcastTo/expand: size-1 dims stretch, new dims on the left", async () => {
  const col = mj.tensor([[1], [2], [3]]); // [3,1]
  await assertTensor(col.broadcastTo([3, 4]), build([3, 4], ([i]) => i + 1), { shape: [3, 4] });
  await assertTensor(col.expand([2, 3, 2]), build([2, 3, 2], ([, i]) => i + 1), {
    shape: [2, 3, 2],
  });
  await assertTensor(mj.broadcastTo(mj.tensor([1, 2]), [3, 2]), [1, 2, 1, 2, 1, 2]);
  await assertTensor(mj.tensor(7).expand([2, 2]), [7, 7, 7, 7], { shape: [2, 2] });
  await assertTensor(col.expand([3, 1]), [1, 2, 3], { shape: [3, 1] });
  await assertTensor(mj.tensor([4]).expand([0]), [], { shape: [0] });
  await assertTensor(mj.zeros([0, 1]).expand([2, 0, 3]), [], { shape: [2, 0, 3] });
  // Broadcasting a permuted tensor.
  const t = seq([2, 1, 3]).permute([2, 1, 0]); // [3,1,2]
  await assertTensor(
    t.expand([3, 2, 2]),
    build([3, 2, 2], ([i, , k]) => k * 3 + i),
    { shape: [3, 2, 2] },
  );
  const b = mj.tensor([true, false]).expand([2, 2]);
  await assertTensor(b, [1, 0, 1, 0], { dtype: "bool" });
});

Deno.test("broadcastTo errors", () => {
  assert.throws(
    () => mj.zeros([3]).broadcastTo([4]),
    /broadcastTo: cannot broadcast f32\[3\] to \[4\]; expected each dim of the input to equal the target's or be 1/,
  );
  assert.throws(
    () => mj.zeros([2, 3]).expand([3]),
    /broadcastTo: cannot broadcast f32\[2,3\] to \[3\]/,
  );
  assert.throws(() => mj.zeros([2, 1]).expand([3, 4]), /broadcastTo: cannot broadcast f32\[2,1\]/);
  assert.throws(() => mj.zeros([2]).expand([-1, 2]), /broadcastTo: invalid dimension -1/);
  // Broadcasting never drops dims, not even size-1 ones (as in NumPy).
  assert.throws(() => mj.tensor([5]).expand([]), /broadcastTo: cannot broadcast f32\[1\] to \[\]/);
});

// ---- squeeze / unsqueeze ----------------------------------------------------------------------

Deno.test("squeeze: all size-1 dims, chosen axes, negative axes, empty list", async () => {
  const x = seq([1, 3, 1, 2]);
  await assertTensor(x.squeeze(), iota(6), { shape: [3, 2] });
  await assertTensor(mj.squeeze(x, 0), iota(6), { shape: [3, 1, 2] });
  await assertTensor(x.squeeze(-2), iota(6), { shape: [1, 3, 2] });
  await assertTensor(x.squeeze([2, 0]), iota(6), { shape: [3, 2] });
  await assertTensor(x.squeeze([]), iota(6), { shape: [1, 3, 1, 2] });
  await assertTensor(mj.tensor([[5]]).squeeze(), 5, { shape: [] });
  await assertTensor(seq([2, 3]).squeeze(), iota(6), { shape: [2, 3] });
  await assertTensor(mj.zeros([1, 0]).squeeze(), [], { shape: [0] });
  assert.throws(() => x.squeeze(1), /squeeze: axis 1 of f32\[1,3,1,2\] has size 3, not 1/);
  assert.throws(() => x.squeeze(4), /squeeze: axis 4 is out of range for a tensor of rank 4/);
  assert.throws(() => x.squeeze([0, 0]), /squeeze: axis list \[0,0\] repeats an axis/);
});

Deno.test("unsqueeze: front, middle, end and negative positions", async () => {
  const x = seq([2, 3]);
  await assertTensor(x.unsqueeze(0), iota(6), { shape: [1, 2, 3] });
  await assertTensor(mj.unsqueeze(x, 1), iota(6), { shape: [2, 1, 3] });
  await assertTensor(x.unsqueeze(2), iota(6), { shape: [2, 3, 1] });
  await assertTensor(x.unsqueeze(-1), iota(6), { shape: [2, 3, 1] });
  await assertTensor(x.unsqueeze(-3), iota(6), { shape: [1, 2, 3] });
  await assertTensor(mj.tensor(4).unsqueeze(0), [4], { shape: [1] });
  await assertTensor(mj.tensor(4).unsqueeze(-1), [4], { shape: [1] });
  await assertTensor(x.transpose().unsqueeze(1), [0, 3, 1, 4, 2, 5], { shape: [3, 1, 2] });
  assert.throws(() => x.unsqueeze(3), /unsqueeze: axis 3 is out of range for a tensor of rank 3/);
  assert.throws(() => x.unsqueeze(-4), /unsqueeze: axis -4 is out of range/);
});

// ---- slice / narrow ---------------------------------------------------------------------------

Deno.test("slice: ranges, null, negative bounds, clamping and missing trailing axes", async () => {
  const x = seq([3, 4]); // [[0,1,2,3],[4,5,6,7],[8,9,10,11]]
  await assertTensor(x.slice([[1, 3], [0, 2]]), [4, 5, 8, 9], { shape: [2, 2] });
  await assertTensor(mj.slice(x, [null, [1, 3]]), [1, 2, 5, 6, 9, 10], { shape: [3, 2] });
  await assertTensor(x.slice([[1, 2]]), [4, 5, 6, 7], { shape: [1, 4] });
  await assertTensor(x.slice([[-2, -1], [-3, 4]]), [5, 6, 7], { shape: [1, 3] });
  await assertTensor(x.slice([[0, 100], [2, 100]]), [2, 3, 6, 7, 10, 11], { shape: [3, 2] });
  await assertTensor(x.slice([[-100, 1]]), [0, 1, 2, 3], { shape: [1, 4] });
  await assertTensor(x.slice([]), iota(12), { shape: [3, 4] });
  await assertTensor(x.slice([null, null]), iota(12), { shape: [3, 4] });
  // Empty results: start at the end, or end before start.
  await assertTensor(x.slice([[3, 3]]), [], { shape: [0, 4] });
  await assertTensor(x.slice([null, [3, 1]]), [], { shape: [3, 0] });
});

Deno.test("slice: a single index drops its axis", async () => {
  const x = seq([3, 4]);
  await assertTensor(x.slice([1]), [4, 5, 6, 7], { shape: [4] });
  await assertTensor(x.slice([-1]), [8, 9, 10, 11], { shape: [4] });
  await assertTensor(x.slice([null, 2]), [2, 6, 10], { shape: [3] });
  await assertTensor(x.slice([[0, 2], -1]), [3, 7], { shape: [2] });
  await assertTensor(x.slice([2, 3]), 11, { shape: [] });
  const y = seq([2, 3, 4]);
  await assertTensor(y.slice([null, 1, [1, 3]]), [5, 6, 17, 18], { shape: [2, 2] });
  await assertTensor(mj.tensor([[7]]).slice([0, 0]), 7, { shape: [] });
});

Deno.test("slice of a permuted tensor", async () => {
  const t = seq([3, 4]).transpose(); // [4,3]: t[i][j] = 4j + i
  await assertTensor(t.slice([[1, 3], [0, 2]]), [1, 5, 2, 6], { shape: [2, 2] });
  await assertTensor(t.slice([null, 2]), [8, 9, 10, 11], { shape: [4] });
});

Deno.test("narrow", async () => {
  const x = seq([3, 4]);
  await assertTensor(x.narrow(1, 1, 2), [1, 2, 5, 6, 9, 10], { shape: [3, 2] });
  await assertTensor(mj.narrow(x, 0, 2, 1), [8, 9, 10, 11], { shape: [1, 4] });
  await assertTensor(x.narrow(-1, 3, 1), [3, 7, 11], { shape: [3, 1] });
  await assertTensor(x.narrow(0, 0, 3), iota(12), { shape: [3, 4] });
  await assertTensor(x.narrow(0, 3, 0), [], { shape: [0, 4] });
});

Deno.test("slice/narrow errors", () => {
  const x = mj.zeros([3, 4]);
  assert.throws(() => x.slice([3]), /slice: index 3 is out of range for axis 0 of f32\[3,4\]/);
  assert.throws(() => x.slice([null, -5]), /slice: index -5 is out of range for axis 1/);
  assert.throws(
    () => x.slice([null, null, null]),
    /slice: expected at most 2 ranges for f32\[3,4\]/,
  );
  assert.throws(() => x.slice([[0.5, 2]]), /slice: range \[0.5,2\] for axis 0 must be integers/);
  assert.throws(() => x.narrow(1, 2, 3), /narrow: range \[2, 5\) is outside axis 1 of f32\[3,4\]/);
  assert.throws(() => x.narrow(0, -1, 1), /narrow: range \[-1, 0\) is outside axis 0/);
  assert.throws(() => x.narrow(2, 0, 1), /narrow: axis 2 is out of range for a tensor of rank 2/);
});

// ---- pad --------------------------------------------------------------------------------------

Deno.test("pad: zeros by default, a value when given, per-axis before/after", async () => {
  const x = mj.tensor([[1, 2], [3, 4]]);
  await assertTensor(x.pad([[1, 0], [0, 1]]), [0, 0, 0, 1, 2, 0, 3, 4, 0], { shape: [3, 3] });
  await assertTensor(mj.pad(x, [[0, 0], [2, 1]], -1), [-1, -1, 1, 2, -1, -1, -1, 3, 4, -1], {
    shape: [2, 5],
  });
  await assertTensor(x.pad([[0, 0], [0, 0]]), [1, 2, 3, 4], { shape: [2, 2] });
  await assertTensor(mj.tensor([5]).pad([[2, 2]], NaN), [NaN, NaN, 5, NaN, NaN]);
  await assertTensor(mj.tensor(3).pad([]), 3, { shape: [] });
  await assertTensor(mj.zeros([0, 2]).pad([[1, 1], [0, 0]], 7), [7, 7, 7, 7], { shape: [2, 2] });
  await assertTensor(mj.zeros([2, 0]).pad([[0, 0], [1, 0]], 9), [9, 9], { shape: [2, 1] });
  await assertTensor(i32([1, 2]).pad([[1, 1]], -3), [-3, 1, 2, -3], { dtype: "i32" });
  await assertTensor(mj.tensor([true]).pad([[1, 1]], 1), [1, 1, 1], { dtype: "bool" });
  // A permuted input is padded in its logical layout.
  await assertTensor(seq([2, 3]).transpose().pad([[0, 1], [1, 0]]), [
    0,
    0,
    3,
    0,
    1,
    4,
    0,
    2,
    5,
    0,
    0,
    0,
  ], { shape: [4, 3] });
});

Deno.test("pad: values are stored as the tensor's dtype, and must fit integer dtypes", async () => {
  await assertTensor(mj.tensor([false]).pad([[1, 1]], true as Any), [1, 0, 1], { dtype: "bool" });
  // Any non-zero value is true, as in tensor/full/cast; the stored byte is 1, not 2.
  const b = await mj.tensor([false]).pad([[1, 0]], 2).data();
  assert.deepEqual(Array.from(b), [1, 0]);
  // f32 pads round to f32 like every stored f32.
  await assertTensor(mj.tensor([1]).pad([[1, 0]], 0.1), [Math.fround(0.1), 1], { rtol: 0 });
  assert.throws(
    () => i32([1]).pad([[1, 0]], 0.5),
    /pad: value 0.5 is not an integer, but dtype is i32/,
  );
  assert.throws(
    () => mj.tensor([1], undefined, { dtype: "u32" }).pad([[1, 0]], -1),
    /pad: value -1 is outside the u32 range/,
  );
});

Deno.test("pad errors", () => {
  const x = mj.zeros([2, 2]);
  assert.throws(
    () => x.pad([[1, 1]]),
    /pad: expected 2 \[before, after\] pairs for f32\[2,2\], got \[\[1,1\]\]/,
  );
  assert.throws(
    () => x.pad([[1, 1], [-1, 0]]),
    /pad: each pad must be \[before, after\] with integers >= 0, got \[-1,0\]/,
  );
  assert.throws(() => x.pad([[1, 1], [1] as Any]), /pad: each pad must be \[before, after\]/);
  assert.throws(
    () => x.pad([[0, 0], [0, 0]], "x" as Any),
    /pad: expected a number value, got string/,
  );
});

// ---- concat / stack ---------------------------------------------------------------------------

Deno.test("concat along each axis, with size-0 pieces and several dtypes", async () => {
  const a = mj.tensor([[1, 2], [3, 4]]), b = mj.tensor([[5, 6]]), c = mj.tensor([[7], [8]]);
  await assertTensor(mj.concat([a, b]), [1, 2, 3, 4, 5, 6], { shape: [3, 2] });
  await assertTensor(mj.concat([a, c], 1), [1, 2, 7, 3, 4, 8], { shape: [2, 3] });
  await assertTensor(mj.concat([c, a, c], -1), [7, 1, 2, 7, 8, 3, 4, 8], { shape: [2, 4] });
  await assertTensor(mj.concat([a]), [1, 2, 3, 4], { shape: [2, 2] });
  await assertTensor(mj.concat([mj.zeros([0, 2]), b, mj.zeros([0, 2])]), [5, 6], {
    shape: [1, 2],
  });
  await assertTensor(mj.concat([mj.zeros([0, 2]), mj.zeros([0, 2])]), [], { shape: [0, 2] });
  await assertTensor(mj.concat([mj.tensor([1]), mj.tensor([2, 3]), mj.tensor([4])]), [1, 2, 3, 4]);
  await assertTensor(
    mj.concat([i32([1, -2]), i32([2147483647])]),
    [1, -2, 2147483647],
    { dtype: "i32" },
  );
  await assertTensor(
    mj.concat([
      mj.tensor([4294967295], undefined, { dtype: "u32" }),
      mj.tensor([1], undefined, { dtype: "u32" }),
    ]),
    [4294967295, 1],
    { dtype: "u32" },
  );
  await assertTensor(mj.concat([mj.tensor([true, false]), mj.tensor([true])]), [1, 0, 1], {
    dtype: "bool",
  });
  // Special values pass through unchanged.
  await assertTensor(mj.concat([mj.tensor([NaN, Infinity]), mj.tensor([-Infinity])]), [
    NaN,
    Infinity,
    -Infinity,
  ]);
  // Non-contiguous inputs.
  await assertTensor(mj.concat([seq([2, 3]).transpose(), mj.tensor([[9, 9]])]), [
    0,
    3,
    1,
    4,
    2,
    5,
    9,
    9,
  ], { shape: [4, 2] });
});

Deno.test("concat keeps negative zero", async () => {
  const r = await mj.concat([mj.tensor([-0, 1]), mj.tensor([-0])]).data();
  assert.ok(Object.is(r[0], -0) && Object.is(r[2], -0), `got ${Array.from(r)}`);
});

Deno.test("stack along a new axis", async () => {
  const a = mj.tensor([1, 2, 3]), b = mj.tensor([4, 5, 6]);
  await assertTensor(mj.stack([a, b]), [1, 2, 3, 4, 5, 6], { shape: [2, 3] });
  await assertTensor(mj.stack([a, b], 1), [1, 4, 2, 5, 3, 6], { shape: [3, 2] });
  await assertTensor(mj.stack([a, b], -1), [1, 4, 2, 5, 3, 6], { shape: [3, 2] });
  await assertTensor(mj.stack([a, b], -2), [1, 2, 3, 4, 5, 6], { shape: [2, 3] });
  await assertTensor(mj.stack([mj.tensor(1), mj.tensor(2), mj.tensor(3)]), [1, 2, 3], {
    shape: [3],
  });
  await assertTensor(mj.stack([a]), [1, 2, 3], { shape: [1, 3] });
  await assertTensor(mj.stack([mj.zeros([0]), mj.zeros([0])], 1), [], { shape: [0, 2] });
  const m = seq([2, 2]);
  await assertTensor(mj.stack([m, m.transpose()], 1), [0, 1, 0, 2, 2, 3, 1, 3], {
    shape: [2, 2, 2],
  });
});

Deno.test("concat/stack errors name the op and the shapes", () => {
  const a = mj.zeros([2, 3]);
  assert.throws(
    () => mj.concat([a, mj.zeros([2, 4])]),
    /concat: element 1 has shape \[2,4\], element 0 has \[2,3\]; expected equal shapes except along axis 0/,
  );
  assert.throws(() => mj.concat([a, mj.zeros([3])]), /concat: element 1 has shape \[3\]/);
  assert.throws(
    () => mj.concat([a, i32([1, 2, 3], [1, 3])]),
    /concat: element 1 is i32\[1,3\], element 0 is f32\[2,3\]; expected one dtype/,
  );
  assert.throws(() => mj.concat([]), /concat: expected a non-empty array of tensors/);
  assert.throws(() => mj.concat([a], 2), /concat: axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => mj.concat([a, 1 as Any]), /concat: expected element 1 to be a Tensor/);
  assert.throws(
    () => mj.concat([mj.tensor(1), mj.tensor(2)]),
    /concat: axis 0 is out of range for a tensor of rank 0/,
  );
  assert.throws(
    () => mj.stack([a, mj.zeros([3, 2])]),
    /stack: element 1 has shape \[3,2\], element 0 has \[2,3\]; expected equal shapes/,
  );
  assert.throws(
    () => mj.stack([a, i32([1, 2, 3, 4, 5, 6], [2, 3])]),
    /stack: element 1 is i32\[2,3\], element 0 is f32\[2,3\]; expected one dtype/,
  );
  assert.throws(() => mj.stack([]), /stack: expected a non-empty array of tensors/);
  assert.throws(() => mj.stack([a], 3), /stack: axis 3 is out of range for a tensor of rank 3/);
});

// ---- identity-like ops ------------------------------------------------------------------------

Deno.test("stopGradient and mark are the identity in the forward pass", async () => {
  const x = mj.tensor([[1, -2], [3, 4]]);
  await assertTensor(mj.stopGradient(x), [1, -2, 3, 4], { shape: [2, 2] });
  await assertTensor(x.stopGradient().mul(2), [2, -4, 6, 8]);
  await assertTensor(mj.mark(x, "router"), [1, -2, 3, 4], { shape: [2, 2] });
  assert.throws(() => mj.mark(x, ""), /mark: expected a non-empty string label/);
  assert.throws(() => mj.stopGradient(3 as Any), /stopGradient: expected input to be a Tensor/);
});

Deno.test("ravel/build helpers agree (sanity of the reference)", () => {
  assert.equal(ravel([1, 2], [3, 4]), 6);
  assert.deepEqual(build([2, 2], ([i, j]) => 10 * i + j), [0, 1, 10, 11]);
});
