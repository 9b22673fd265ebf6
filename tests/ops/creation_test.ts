/** Tensor constructors and the Tensor accessors (shape, dtype, item, tolist). */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertTensor } from "../helpers.ts";
import { vals } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

Deno.test("tensor: nested arrays infer shape and default to f32", async () => {
  const t = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, "f32");
  assert.equal(t.ndim, 2);
  assert.equal(t.size, 6);
  const d = await t.data();
  assert.ok(d instanceof Float32Array);
  assert.deepEqual(Array.from(d), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(await t.tolist(), [[1, 2, 3], [4, 5, 6]]);
});

Deno.test("tensor: deeper nesting and size-1 dims", async () => {
  const t = mj.tensor([[[1], [2]], [[3], [4]]]);
  assert.deepEqual(t.shape, [2, 2, 1]);
  assert.deepEqual(await t.tolist(), [[[1], [2]], [[3], [4]]]);
  const u = mj.tensor([[[7]]]);
  assert.deepEqual(u.shape, [1, 1, 1]);
  assert.equal(await u.item(), 7);
});

Deno.test("tensor: scalars from numbers and booleans", async () => {
  const s = mj.tensor(2.5);
  assert.deepEqual(s.shape, []);
  assert.equal(s.ndim, 0);
  assert.equal(s.size, 1);
  assert.equal(s.dtype, "f32");
  assert.equal(await s.item(), 2.5);
  assert.equal(await s.tolist(), 2.5);
  const b = mj.tensor(true);
  assert.equal(b.dtype, "bool");
  assert.deepEqual(b.shape, []);
  assert.equal(await b.tolist(), true);
  assert.equal(await b.item(), 1);
});

Deno.test("tensor: boolean arrays are bool with 0/1 storage", async () => {
  const b = mj.tensor([true, false, true]);
  assert.equal(b.dtype, "bool");
  const d = await b.data();
  assert.ok(d instanceof Uint8Array);
  assert.deepEqual(Array.from(d), [1, 0, 1]);
  assert.deepEqual(await b.tolist(), [true, false, true]);
});

Deno.test("tensor: typed arrays pick the dtype", async () => {
  const i = mj.tensor(new Int32Array([1, -2, 3]));
  assert.equal(i.dtype, "i32");
  assert.deepEqual(i.shape, [3]);
  assert.ok((await i.data()) instanceof Int32Array);
  assert.deepEqual(await vals(i), [1, -2, 3]);

  const u = mj.tensor(new Uint32Array([0, 4294967295]));
  assert.equal(u.dtype, "u32");
  assert.deepEqual(await vals(u), [0, 4294967295]);

  const f = mj.tensor(new Float32Array([0.5, -1.5, 2, 3, 4, 5]), [3, 2]);
  assert.equal(f.dtype, "f32");
  assert.deepEqual(f.shape, [3, 2]);
  assert.deepEqual(await f.tolist(), [[0.5, -1.5], [2, 3], [4, 5]]);

  // Float64 data is stored as f32, so values round to the nearest f32.
  const g = mj.tensor(new Float64Array([0.1, 1 / 3]));
  assert.equal(g.dtype, "f32");
  assert.deepEqual(await vals(g), [Math.fround(0.1), Math.fround(1 / 3)]);

  const b = mj.tensor(new Uint8Array([0, 1, 7]), undefined, { dtype: "bool" });
  assert.equal(b.dtype, "bool");
  assert.deepEqual(await vals(b), [0, 1, 1]);
});

Deno.test("tensor: the shape argument reshapes flat and nested data", async () => {
  const t = mj.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.deepEqual(await t.tolist(), [[1, 2, 3], [4, 5, 6]]);
  const n = mj.tensor([[1, 2], [3, 4]], [4]);
  assert.deepEqual(await n.tolist(), [1, 2, 3, 4]);
  const s = mj.tensor([9], []);
  assert.deepEqual(s.shape, []);
  assert.equal(await s.item(), 9);
  const one = mj.tensor(3, [1, 1]);
  assert.deepEqual(one.shape, [1, 1]);
  assert.deepEqual(await one.tolist(), [[3]]);
});

Deno.test("tensor: explicit dtypes convert the data", async () => {
  const i = mj.tensor([[1, -2], [3, 4]], undefined, { dtype: "i32" });
  assert.equal(i.dtype, "i32");
  assert.deepEqual(await i.tolist(), [[1, -2], [3, 4]]);
  const u = mj.tensor([0, 7, 4294967295], undefined, { dtype: "u32" });
  assert.deepEqual(await vals(u), [0, 7, 4294967295]);
  const b = mj.tensor([0, 2, -3, 0.5], undefined, { dtype: "bool" });
  assert.deepEqual(await b.tolist(), [false, true, true, true]);
  const f = mj.tensor([true, false], undefined, { dtype: "f32" });
  assert.deepEqual(await vals(f), [1, 0]);
  const fromI = mj.tensor(new Int32Array([5, -6]), undefined, { dtype: "f32" });
  assert.equal(fromI.dtype, "f32");
  assert.deepEqual(await vals(fromI), [5, -6]);
});

Deno.test("tensor: size-0 tensors", async () => {
  const e = mj.tensor([]);
  assert.deepEqual(e.shape, [0]);
  assert.equal(e.size, 0);
  assert.equal(e.dtype, "f32");
  assert.equal((await e.data()).length, 0);
  assert.deepEqual(await e.tolist(), []);
  const e2 = mj.tensor([[], []]);
  assert.deepEqual(e2.shape, [2, 0]);
  assert.deepEqual(await e2.tolist(), [[], []]);
  const e3 = mj.tensor(new Float32Array(0), [0, 4]);
  assert.deepEqual(e3.shape, [0, 4]);
  assert.deepEqual(await e3.tolist(), []);
});

Deno.test("tensor: the source data is copied", async () => {
  const src = new Float32Array([1, 2, 3]);
  const t = mj.tensor(src);
  src[0] = 100;
  assert.deepEqual(await vals(t), [1, 2, 3]);
  const arr = [4, 5];
  const u = mj.tensor(arr);
  arr[0] = -1;
  assert.deepEqual(await vals(u), [4, 5]);
  // data() hands out a fresh copy each time.
  const d = await t.data();
  d[1] = 50;
  assert.deepEqual(await vals(t), [1, 2, 3]);
});

Deno.test("tensor: bad input throws errors that name tensor", () => {
  assert.throws(() => mj.tensor([[1, 2], [3]]), /tensor: ragged nested array at data\[1\]/);
  assert.throws(() => mj.tensor([[1, 2], 3] as Any), /tensor: ragged nested array at data\[1\]/);
  assert.throws(
    () => mj.tensor([1, 2, 3], [2, 2]),
    /tensor: data has 3 elements but shape \[2,2\] needs 4/,
  );
  assert.throws(
    () => mj.tensor([1, 2], [2, -1]),
    /tensor: expected a shape of non-negative integers, got \[2,-1\]/,
  );
  assert.throws(
    () => mj.tensor([1], undefined, { dtyp: "f32" } as Any),
    /tensor: unknown option "dtyp"; expected dtype/,
  );
  assert.throws(() => mj.tensor([1], undefined, { dtype: "f64" as Any }), /tensor: unknown dtype/);
  assert.throws(
    () => mj.tensor([1], undefined, { dtype: "f16" as mj.DType }),
    /tensor: dtype f16 is reserved/,
  );
  assert.throws(
    () => mj.tensor([1.5, 2], undefined, { dtype: "i32" }),
    /tensor: element 0 is 1.5, which is not an integer, but dtype is i32/,
  );
  assert.throws(() => mj.tensor([1, null] as Any), /tensor: element 1 is null/);
  assert.throws(() => mj.tensor(["a"] as Any), /tensor: element 0 is string/);
  assert.throws(
    () => mj.tensor("abc" as Any),
    /tensor: expected a number, nested arrays or a typed array, got string/,
  );
  assert.throws(
    () => mj.tensor(new Uint8Array([1])),
    /tensor: a Uint8Array needs an explicit dtype/,
  );
  // Integers outside the dtype's range would wrap silently.
  assert.throws(
    () => mj.tensor([3e9], undefined, { dtype: "i32" }),
    /tensor: element 0 is 3000000000, which is outside the i32 range/,
  );
  assert.throws(
    () => mj.tensor([1, -1], undefined, { dtype: "u32" }),
    /tensor: element 1 is -1, which is outside the u32 range/,
  );
});

Deno.test("tensor errors are MoejitErrors carrying the op name", () => {
  try {
    mj.tensor([[1], [2, 3]]);
    assert.fail("expected a throw");
  } catch (e) {
    assert.ok(e instanceof mj.MoejitError);
    assert.equal(e.op, "tensor");
  }
});

Deno.test("zeros/ones/full: shapes, dtypes and values", async () => {
  await assertTensor(mj.zeros([2, 3]), [0, 0, 0, 0, 0, 0], { shape: [2, 3], dtype: "f32" });
  await assertTensor(mj.ones([2], { dtype: "i32" }), [1, 1], { shape: [2], dtype: "i32" });
  await assertTensor(mj.ones([1, 1, 1]), [1], { shape: [1, 1, 1] });
  await assertTensor(mj.full([2, 2], 7, { dtype: "u32" }), [7, 7, 7, 7], { dtype: "u32" });
  await assertTensor(mj.full([], 3.5), 3.5, { shape: [] });
  await assertTensor(mj.full([3], -2), [-2, -2, -2]);
  await assertTensor(mj.full([2], 0.1), [Math.fround(0.1), Math.fround(0.1)], { rtol: 0 });
  await assertTensor(mj.full([2], Infinity), [Infinity, Infinity]);
  const nan = await vals(mj.full([1], NaN));
  assert.ok(Number.isNaN(nan[0]));
  const b = mj.full([3], true as Any);
  assert.equal(b.dtype, "bool");
  assert.deepEqual(await b.tolist(), [true, true, true]);
  await assertTensor(mj.full([2], 5, { dtype: "bool" }), [1, 1], { dtype: "bool" });
  await assertTensor(mj.full([2], -3, { dtype: "i32" }), [-3, -3], { dtype: "i32" });
  const empty = mj.zeros([0, 3]);
  assert.deepEqual(empty.shape, [0, 3]);
  assert.equal(empty.size, 0);
  assert.equal((await empty.data()).length, 0);
  assert.deepEqual(mj.ones([]).shape, []);
  assert.equal(await mj.ones([]).item(), 1);
});

Deno.test("zeros/ones/full: bad input names the op", () => {
  assert.throws(
    () => mj.full([2], 1.5, { dtype: "i32" }),
    /full: value 1.5 is not an integer, but dtype is i32/,
  );
  assert.throws(() => mj.full([-1], 0), /full: expected a shape of non-negative integers/);
  assert.throws(() => mj.full([1.5], 0), /full: expected a shape of non-negative integers/);
  assert.throws(() => mj.full([2], "x" as Any), /full: expected a number value, got string/);
  assert.throws(() => mj.full([2], 0, { foo: 1 } as Any), /full: unknown option "foo"/);
  assert.throws(() => mj.zeros([2], { dtype: "f16" as mj.DType }), /zeros: dtype f16 is reserved/);
  assert.throws(() => mj.ones(3 as Any), /ones: expected a shape of non-negative integers, got 3/);
  assert.throws(() => mj.ones([2], { dtyp: "i32" } as Any), /ones: unknown option "dtyp"/);
  assert.throws(
    () => mj.full([1], 2 ** 32, { dtype: "u32" }),
    /full: value 4294967296 is outside the u32 range/,
  );
});

Deno.test("zerosLike/onesLike/fullLike keep shape and dtype", async () => {
  const i = mj.tensor([[1, 2], [3, 4]], undefined, { dtype: "i32" });
  await assertTensor(mj.zerosLike(i), [0, 0, 0, 0], { shape: [2, 2], dtype: "i32" });
  await assertTensor(mj.onesLike(i), [1, 1, 1, 1], { shape: [2, 2], dtype: "i32" });
  await assertTensor(mj.fullLike(i, -7), [-7, -7, -7, -7], { shape: [2, 2], dtype: "i32" });
  const f = mj.tensor([[0.5], [1], [2]]);
  await assertTensor(mj.fullLike(f, 2.25), [2.25, 2.25, 2.25], { shape: [3, 1], dtype: "f32" });
  const s = mj.tensor(4);
  await assertTensor(mj.onesLike(s), 1, { shape: [] });
  const b = mj.tensor([true, false]);
  await assertTensor(mj.onesLike(b), [1, 1], { dtype: "bool" });
  await assertTensor(mj.zerosLike(b), [0, 0], { dtype: "bool" });
  await assertTensor(mj.zerosLike(mj.zeros([0, 2])), [], { shape: [0, 2] });
});

Deno.test("fullLike: values that do not fit the dtype are errors", () => {
  const i = mj.tensor([1, 2], undefined, { dtype: "i32" });
  assert.throws(
    () => mj.fullLike(i, 2.5),
    /fullLike: value 2.5 is not an integer, but dtype is i32/,
  );
  assert.throws(() => mj.zerosLike([1, 2] as Any), /zerosLike: expected input to be a Tensor/);
  assert.throws(() => mj.onesLike(null as Any), /onesLike: expected input to be a Tensor/);
});

Deno.test("arange: integer forms are i32", async () => {
  await assertTensor(mj.arange(5), [0, 1, 2, 3, 4], { shape: [5], dtype: "i32" });
  await assertTensor(mj.arange(2, 7), [2, 3, 4, 5, 6], { dtype: "i32" });
  await assertTensor(mj.arange(0, 10, 3), [0, 3, 6, 9], { dtype: "i32" });
  await assertTensor(mj.arange(5, 0, -2), [5, 3, 1], { dtype: "i32" });
  await assertTensor(mj.arange(-3, 0), [-3, -2, -1], { dtype: "i32" });
  await assertTensor(mj.arange(1), [0], { shape: [1] });
  // Empty ranges: stop == start, or a step pointing away from stop.
  await assertTensor(mj.arange(0), [], { shape: [0], dtype: "i32" });
  await assertTensor(mj.arange(3, 3), [], { shape: [0] });
  await assertTensor(mj.arange(3, 1), [], { shape: [0] });
  await assertTensor(mj.arange(1, 3, -1), [], { shape: [0] });
});

Deno.test("arange: float forms are f32", async () => {
  await assertTensor(mj.arange(0, 1, 0.25), [0, 0.25, 0.5, 0.75], { dtype: "f32", rtol: 1e-6 });
  await assertTensor(mj.arange(2.5), [0, 1, 2], { shape: [3], dtype: "f32" });
  await assertTensor(mj.arange(0.5, 2), [0.5, 1.5], { dtype: "f32" });
  await assertTensor(mj.arange(1, -1, -0.5), [1, 0.5, 0, -0.5], { dtype: "f32" });
  // 0.3 / 0.1 is just below 3 in float64, so there are three elements, like NumPy.
  await assertTensor(mj.arange(0, 0.3, 0.1), [0, 0.1, 0.2], { shape: [3], rtol: 1e-6 });
  await assertTensor(mj.arange(4, undefined, 1, { dtype: "f32" }), [0, 1, 2, 3], {
    dtype: "f32",
  });
  await assertTensor(mj.arange(1, 7, 2, { dtype: "f32" }), [1, 3, 5], { dtype: "f32" });
  await assertTensor(mj.arange(2, 5, 1, { dtype: "u32" }), [2, 3, 4], { dtype: "u32" });
});

Deno.test("arange: bad input names arange", () => {
  assert.throws(() => mj.arange(0, 5, 0), /arange: step must not be 0/);
  assert.throws(() => mj.arange(0, NaN), /arange: stop must be a finite number, got NaN/);
  assert.throws(() => mj.arange(Infinity), /arange: stop must be a finite number, got Infinity/);
  assert.throws(() => mj.arange("3" as Any), /arange: stop must be a finite number/);
  assert.throws(
    () => mj.arange(3, undefined, 1, { dtyp: "i32" } as Any),
    /arange: unknown option "dtyp"; expected dtype/,
  );
  assert.throws(
    () => mj.arange(3, undefined, 1, { dtype: "bool" }),
    /arange: dtype bool is not supported; expected f32, i32 or u32/,
  );
  assert.throws(
    () => mj.arange(0, 2, 0.5, { dtype: "i32" }),
    /arange: start 0, stop 2 and step 0.5 are not all integers, but dtype is i32/,
  );
});

Deno.test("item and tolist", async () => {
  assert.equal(await mj.tensor([[4]]).item(), 4);
  assert.equal(await mj.tensor([3], undefined, { dtype: "i32" }).item(), 3);
  await assert.rejects(
    async () => await mj.tensor([1, 2]).item(),
    /item: expected a tensor with one element, got f32\[2\]/,
  );
  await assert.rejects(
    async () => await mj.zeros([0]).item(),
    /item: expected a tensor with one element, got f32\[0\]/,
  );
  assert.deepEqual(await mj.tensor([[1, 2]], undefined, { dtype: "u32" }).tolist(), [[1, 2]]);
  assert.deepEqual(await mj.tensor([[[true]], [[false]]]).tolist(), [[[true]], [[false]]]);
});

Deno.test("shape is a copy, and toString names dtype and shape", () => {
  const t = mj.zeros([2, 3]);
  const s = t.shape;
  s[0] = 99;
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(String(t), "Tensor(f32[2,3])");
  assert.equal(String(mj.tensor(1)), "Tensor(f32[])");
});
