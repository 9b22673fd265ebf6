/** Elementwise ops: arithmetic, integer semantics, unary math, comparisons, logic, where, cast. */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { assertClose, assertTensor, evalWide, randomArray, wideTensor } from "../helpers.ts";
import { binaryRef, f32, prodOf, vals } from "./ref.ts";

// Interpreter tests: the reference semantics, whichever backend would be picked by default.
mj.setBackend("cpu");

// deno-lint-ignore no-explicit-any
type Any = any;

const i32 = (d: unknown, shape?: number[]) => mj.tensor(d as number[], shape, { dtype: "i32" });
const u32 = (d: unknown, shape?: number[]) => mj.tensor(d as number[], shape, { dtype: "u32" });

/** erf by composite Simpson on 2/√π ∫₀ˣ e^(-t²) dt: independent of the library's series. */
function erfRef(x: number): number {
  if (x === 0) return 0;
  const n = 4000, h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
  return (2 / Math.sqrt(Math.PI)) * (h / 3) * s;
}

// ---- binary arithmetic with broadcasting -------------------------------------------------------

const SHAPE_PAIRS: [number[], number[], number[]][] = [
  [[2, 3], [2, 3], [2, 3]],
  [[2, 3], [3], [2, 3]],
  [[3], [2, 3], [2, 3]],
  [[3, 1], [1, 4], [3, 4]],
  [[1, 4], [3, 1], [3, 4]],
  [[4], [2, 1, 4], [2, 1, 4]],
  [[2, 1, 4], [4], [2, 1, 4]],
  [[2, 1, 3], [1, 5, 1], [2, 5, 3]],
  [[], [2, 2], [2, 2]],
  [[2, 2], [], [2, 2]],
  [[], [], []],
  [[1], [1, 1], [1, 1]],
  [[0, 3], [3], [0, 3]],
  [[1, 1], [0, 3], [0, 3]],
];

type Binary = (a: mj.TensorLike, b: mj.TensorLike) => mj.Tensor;

const BINARY: [string, Binary, (x: number, y: number) => number, number, number][] = [
  ["add", mj.add, (x, y) => x + y, -2, 2],
  ["sub", mj.sub, (x, y) => x - y, -2, 2],
  ["mul", mj.mul, (x, y) => x * y, -2, 2],
  ["div", mj.div, (x, y) => x / y, 0.5, 2],
  ["maximum", mj.maximum, Math.max, -2, 2],
  ["minimum", mj.minimum, Math.min, -2, 2],
  ["pow", mj.pow, Math.pow, 0.25, 2],
];

Deno.test("binary arithmetic broadcasts both ways against a float64 reference", async () => {
  let seed = 1;
  for (const [name, op, f, lo, hi] of BINARY) {
    for (const [as, bs, out] of SHAPE_PAIRS) {
      const a = f32(randomArray(prodOf(as), seed++, lo, hi));
      const b = f32(randomArray(prodOf(bs), seed++, lo, hi));
      const r = op(mj.tensor(a, as), mj.tensor(b, bs));
      const msg = `${name} [${as}] with [${bs}]`;
      assert.deepEqual(r.shape, out, msg);
      assert.equal(r.dtype, "f32", msg);
      // One correctly rounded op: the f32 result is the float64 result rounded.
      assertClose(await r.data(), f32(binaryRef(a, as, b, bs, out, f)), { rtol: 0, atol: 0, msg });
    }
  }
});

Deno.test("binary arithmetic: hand-computed cases, methods and number operands", async () => {
  const a = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  const col = mj.tensor([[10], [20]]);
  await assertTensor(a.add(col), [11, 12, 13, 24, 25, 26], { shape: [2, 3] });
  await assertTensor(col.sub(a), [9, 8, 7, 16, 15, 14], { shape: [2, 3] });
  await assertTensor(a.mul(mj.tensor([1, 0, -1])), [1, 0, -3, 4, 0, -6]);
  await assertTensor(a.div(2), [0.5, 1, 1.5, 2, 2.5, 3]);
  await assertTensor(mj.div(1, mj.tensor([2, 4, -8])), [0.5, 0.25, -0.125]);
  await assertTensor(mj.sub(1, mj.tensor([2, 4])), [-1, -3]);
  await assertTensor(mj.add(0.5, mj.tensor([[1]])), [1.5], { shape: [1, 1] });
  await assertTensor(a.maximum(3), [3, 3, 3, 4, 5, 6]);
  await assertTensor(a.minimum(mj.tensor([[2], [5]])), [1, 2, 2, 4, 5, 5]);
  await assertTensor(mj.tensor([1, 2, 3]).pow(2), [1, 4, 9]);
  await assertTensor(mj.pow(2, mj.tensor([0, 1, -1, 10])), [1, 2, 0.5, 1024]);
  await assertTensor(mj.tensor(3).add(mj.tensor(4)), 7, { shape: [] });
});

Deno.test("float division and pow special values", async () => {
  await assertTensor(
    mj.tensor([1, -1, 0, 0]).div(mj.tensor([0, 0, 0, -0])),
    [Infinity, -Infinity, NaN, NaN],
  );
  // Negative bases keep their sign for integer exponents; fractional exponents give NaN.
  await assertTensor(
    mj.tensor([-2, -2, -8, 0, 4, 0, 5]).pow(mj.tensor([3, 2, 0.5, 0, 0.5, -1, 0])),
    [-8, 4, NaN, 1, 2, Infinity, 1],
  );
});

Deno.test("maximum/minimum propagate NaN", async () => {
  const x = mj.tensor([1, NaN, -Infinity]), y = mj.tensor([NaN, 2, 0]);
  await assertTensor(x.maximum(y), [NaN, NaN, 0]);
  await assertTensor(x.minimum(y), [NaN, NaN, -Infinity]);
});

// ---- integer semantics ------------------------------------------------------------------------

Deno.test("i32 add/sub/mul wrap around", async () => {
  const MAX = 2147483647, MIN = -2147483648;
  await assertTensor(i32([MAX, MIN, 5]).add(i32([1, -1, -7])), [MIN, MAX, -2], { dtype: "i32" });
  await assertTensor(i32([MIN]).sub(1), [MAX]);
  await assertTensor(i32([65536, 46341, -3, MAX]).mul(i32([65536, 46341, 7, 2])), [
    0,
    -2147479015, // 46341² = 2147488281 = 2^31 + 4633
    -21,
    -2,
  ], { dtype: "i32" });
  await assertTensor(i32([5, -5]).square(), [25, 25], { dtype: "i32" });
});

Deno.test("u32 add/sub/mul wrap around", async () => {
  await assertTensor(u32([0, 4294967295]).sub(u32([1, 4294967295])), [4294967295, 0], {
    dtype: "u32",
  });
  await assertTensor(u32([4294967295, 2147483648]).add(1), [0, 2147483649], { dtype: "u32" });
  await assertTensor(u32([4294967295, 65536]).mul(u32([2, 65536])), [4294967294, 0], {
    dtype: "u32",
  });
});

Deno.test("integer division truncates toward zero; x / 0 = x", async () => {
  await assertTensor(
    i32([7, -7, 7, -7, 6, 1, 0, 5, -5, 0]).div(i32([2, 2, -2, -2, 3, 2, 3, 0, 0, 0])),
    [3, -3, -3, 3, 2, 0, 0, 5, -5, 0],
    { dtype: "i32" },
  );
  // INT_MIN / -1 overflows and wraps back to INT_MIN.
  await assertTensor(i32([-2147483648]).div(-1), [-2147483648]);
  await assertTensor(u32([4294967295, 9, 9]).div(u32([2, 0, 4])), [2147483647, 9, 2], {
    dtype: "u32",
  });
  await assertTensor(mj.div(7, i32([2, 0, -3])), [3, 7, -2], { dtype: "i32" });
});

Deno.test("mod: sign of the dividend; x % 0 = 0", async () => {
  await assertTensor(
    i32([7, -7, 7, -7, 6, 5, -5, 0]).mod(i32([3, 3, -3, -3, 3, 0, 0, 4])),
    [1, -1, 1, -1, 0, 0, 0, 0],
    { dtype: "i32" },
  );
  await assertTensor(i32([[5], [-6]]).mod(i32([4, 5])), [1, 0, -2, -1], { shape: [2, 2] });
  await assertTensor(u32([4294967295, 7, 7]).mod(u32([10, 0, 4])), [5, 0, 3], { dtype: "u32" });
  await assertTensor(mj.mod(i32([3, 4]), 3), [0, 1]);
  await assertTensor(mj.mod(10, i32([3, 4])), [1, 2]);
});

Deno.test("integer neg/abs/sign/maximum/minimum", async () => {
  await assertTensor(i32([3, -4, 0, -2147483648]).neg(), [-3, 4, 0, -2147483648], {
    dtype: "i32",
  });
  await assertTensor(u32([1, 0]).neg(), [4294967295, 0], { dtype: "u32" });
  await assertTensor(i32([3, -4, 0]).abs(), [3, 4, 0]);
  await assertTensor(i32([3, -4, 0]).sign(), [1, -1, 0], { dtype: "i32" });
  await assertTensor(u32([0, 5, 4294967295]).sign(), [0, 1, 1], { dtype: "u32" });
  await assertTensor(i32([3, -4]).maximum(i32([-1, 2])), [3, 2]);
  await assertTensor(u32([3, 4294967295]).minimum(7), [3, 7]);
});

// ---- unary math -------------------------------------------------------------------------------

const XS = f32([-4, -2.5, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2.5, 4]);
const POS = f32([1e-3, 0.1, 0.5, 1, 2, 10, 1000]);
const sigm = (x: number) => 1 / (1 + Math.exp(-x));
const geluRef = (x: number) => 0.5 * x * (1 + erfRef(x / Math.SQRT2));
const geluTanhRef = (x: number) =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

const UNARY: [
  string,
  (t: mj.Tensor) => mj.Tensor,
  (t: mj.Tensor) => mj.Tensor,
  (x: number) => number,
  number[],
][] = [
  ["neg", mj.neg, (t) => t.neg(), (x) => -x, XS],
  ["abs", mj.abs, (t) => t.abs(), Math.abs, XS],
  ["sign", mj.sign, (t) => t.sign(), Math.sign, XS],
  ["exp", mj.exp, (t) => t.exp(), Math.exp, XS],
  ["log", mj.log, (t) => t.log(), Math.log, POS],
  ["sqrt", mj.sqrt, (t) => t.sqrt(), Math.sqrt, POS],
  ["rsqrt", mj.rsqrt, (t) => t.rsqrt(), (x) => 1 / Math.sqrt(x), POS],
  ["reciprocal", mj.reciprocal, (t) => t.reciprocal(), (x) => 1 / x, [...XS.slice(0, 5), ...POS]],
  ["square", (t) => t.square(), (t) => t.mul(t), (x) => x * x, XS],
  ["sin", mj.sin, (t) => t.sin(), Math.sin, XS],
  ["cos", mj.cos, (t) => t.cos(), Math.cos, XS],
  ["tanh", mj.tanh, (t) => t.tanh(), Math.tanh, XS],
  ["erf", mj.erf, (t) => t.erf(), erfRef, XS],
  ["floor", mj.floor, (t) => t.floor(), Math.floor, XS],
  ["sigmoid", mj.sigmoid, (t) => t.sigmoid(), sigm, XS],
  ["relu", mj.relu, (t) => t.relu(), (x) => Math.max(x, 0), XS],
  ["gelu", (t) => mj.gelu(t), (t) => t.gelu(), geluRef, XS],
  ["gelu none", (t) => mj.gelu(t, "none"), (t) => t.gelu("none"), geluRef, XS],
  ["gelu tanh", (t) => mj.gelu(t, "tanh"), (t) => t.gelu("tanh"), geluTanhRef, XS],
  ["silu", mj.silu, (t) => t.silu(), (x) => x * sigm(x), XS],
  ["softplus", mj.softplus, (t) => t.softplus(), (x) => Math.log1p(Math.exp(x)), XS],
];

Deno.test("unary float ops match float64 formulas (f32, rtol 1e-6)", async () => {
  for (const [name, fn, method, ref, xs] of UNARY) {
    const x = mj.tensor(xs, [xs.length]);
    const expected = xs.map(ref);
    await assertTensor(fn(x), expected, {
      shape: [xs.length],
      dtype: "f32",
      rtol: 1e-6,
      atol: 2e-7,
    });
    await assertTensor(method(x), expected, { rtol: 1e-6, atol: 2e-7 });
    // The same op on a 2-D, a scalar and an empty tensor keeps the shape.
    const x2 = mj.tensor(xs.slice(0, 4), [2, 1, 2]);
    await assertTensor(fn(x2), xs.slice(0, 4).map(ref), {
      shape: [2, 1, 2],
      rtol: 1e-6,
      atol: 2e-7,
    });
    await assertTensor(fn(mj.tensor(xs[1])), ref(xs[1]), { shape: [], rtol: 1e-6, atol: 2e-7 });
    assert.deepEqual(fn(mj.zeros([0, 2])).shape, [0, 2], name);
  }
});

Deno.test("composite formulas are exact in float64 (wide interpreter)", () => {
  const xs = [-5, -3.3, -1, -0.25, 0, 0.3, 1, 2.7, 6];
  const x = wideTensor(xs, [xs.length]);
  const [g, gt, s, si, sp] = evalWide(
    x.gelu(),
    x.gelu("tanh"),
    x.sigmoid(),
    x.silu(),
    x.softplus(),
  );
  // Number operands become f32 constants even on the wide interpreter, so the formulas use
  // the f32-rounded 1/√2, 0.044715 and √(2/π).
  const c = Math.fround(Math.SQRT1_2), k = Math.fround(0.044715);
  const r = Math.fround(Math.sqrt(2 / Math.PI));
  const gw = (v: number) => 0.5 * v * (1 + erfRef(v * c));
  const gtw = (v: number) => 0.5 * v * (1 + Math.tanh((v + k * v ** 3) * r));
  // 1 + erf(x/√2) cancels for x ≪ 0, so the reference erf's ~1e-13 absolute error bounds this.
  assertClose(g, xs.map(gw), { rtol: 1e-10, atol: 1e-12 });
  assertClose(gt, xs.map(gtw), { rtol: 1e-12, atol: 1e-15 });
  assertClose(s, xs.map(sigm), { rtol: 1e-12, atol: 1e-15 });
  assertClose(si, xs.map((v) => v * sigm(v)), { rtol: 1e-12, atol: 1e-15 });
  assertClose(sp, xs.map((v) => Math.log1p(Math.exp(v))), { rtol: 1e-12, atol: 1e-15 });
});

Deno.test("erf: known values to double precision (wide interpreter)", () => {
  const xs = [0, 0.1, -0.3, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, -5, 7];
  const known = [
    0,
    0.1124629160182849,
    -0.3286267594591112,
    0.5204998778130465,
    0.8427007929497149,
    0.9661051464753108,
    0.9953222650189527,
    0.999593047982555,
    0.9999779095030014,
    0.9999999845827421,
    0.9999999999984626,
    -0.9999999999984626,
    1,
  ];
  const [e] = evalWide(wideTensor(xs, [xs.length]).erf());
  assertClose(e, known, { rtol: 1e-13, atol: 1e-15 });
  assertClose(xs.map(erfRef), known, { rtol: 1e-12, atol: 1e-15, msg: "reference erf" });
});

Deno.test("unary special values", async () => {
  const inf = Infinity;
  await assertTensor(mj.tensor([-inf, inf, 100]).exp(), [0, inf, inf]);
  await assertTensor(mj.tensor([0, -1, inf]).log(), [-inf, NaN, inf]);
  await assertTensor(mj.tensor([-1, 0, inf]).sqrt(), [NaN, 0, inf]);
  await assertTensor(mj.tensor([0, -0, inf]).reciprocal(), [inf, -inf, 0]);
  await assertTensor(mj.tensor([0, 4]).rsqrt(), [inf, 0.5]);
  await assertTensor(mj.tensor([-inf, inf, 50]).tanh(), [-1, 1, 1]);
  await assertTensor(mj.tensor([-inf, inf, NaN]).erf(), [-1, 1, NaN]);
  await assertTensor(mj.tensor([-0.5, -1, 1.999, -0, 2]).floor(), [-1, -1, 1, -0, 2]);
  // sigmoid never overflows: exp is only taken of -|x|.
  await assertTensor(mj.tensor([-inf, inf, 100, -100, 0]).sigmoid(), [0, 1, 1, 0, 0.5], {
    atol: 1e-30,
  });
  await assertTensor(mj.tensor([100, -100]).softplus(), [100, 0], { atol: 1e-30 });
  await assertTensor(mj.tensor([-inf, inf, -0]).abs(), [inf, inf, 0]);
  await assertTensor(mj.tensor([-inf, inf]).sign(), [-1, 1]);
});

Deno.test("NaN propagates through sign and relu", async () => {
  await assertTensor(mj.tensor([NaN]).sign(), [NaN]);
  await assertTensor(mj.tensor([NaN, -1, 2]).relu(), [NaN, 0, 2]);
  await assertTensor(mj.tensor([NaN]).gelu(), [NaN]);
  await assertTensor(mj.tensor([NaN]).sigmoid(), [NaN]);
  await assertTensor(mj.tensor([NaN]).softplus(), [NaN]);
});

Deno.test("clip clamps to [lo, hi] for floats and ints", async () => {
  await assertTensor(mj.clip(mj.tensor([-3, -1, 0, 2, 5, NaN]), -1, 2), [-1, -1, 0, 2, 2, NaN]);
  await assertTensor(mj.tensor([[-3], [5]]).clip(0, 0), [0, 0], { shape: [2, 1] });
  await assertTensor(i32([-5, 3, 9]).clip(0, 4), [0, 3, 4], { dtype: "i32" });
  await assertTensor(u32([1, 9]).clip(2, 4), [2, 4], { dtype: "u32" });
  await assertTensor(mj.tensor(7).clip(-Infinity, 2), 2, { shape: [] });
});

// ---- comparisons and logic --------------------------------------------------------------------

Deno.test("comparisons broadcast and return bool", async () => {
  const a = mj.tensor([[1], [2], [3]]), b = mj.tensor([[1, 2, 3]]);
  const cases: [string, mj.Tensor, number[]][] = [
    ["lt", a.lt(b), [0, 1, 1, 0, 0, 1, 0, 0, 0]],
    ["le", a.le(b), [1, 1, 1, 0, 1, 1, 0, 0, 1]],
    ["gt", a.gt(b), [0, 0, 0, 1, 0, 0, 1, 1, 0]],
    ["ge", a.ge(b), [1, 0, 0, 1, 1, 0, 1, 1, 1]],
    ["eq", a.eq(b), [1, 0, 0, 0, 1, 0, 0, 0, 1]],
    ["ne", a.ne(b), [0, 1, 1, 1, 0, 1, 1, 1, 0]],
    ["mj.lt", mj.lt(a, b), [0, 1, 1, 0, 0, 1, 0, 0, 0]],
    ["mj.ge", mj.ge(a, b), [1, 0, 0, 1, 1, 0, 1, 1, 1]],
  ];
  for (const [name, t, e] of cases) {
    assert.equal(t.dtype, "bool", name);
    assert.deepEqual(t.shape, [3, 3], name);
    assert.deepEqual(await vals(t), e, name);
  }
  // [4] against [2,1,4]
  const v = mj.tensor([0, 1, 2, 3]), w = mj.tensor([[[1, 1, 1, 1]], [[3, 2, 1, 0]]]);
  await assertTensor(v.gt(w), [0, 0, 1, 1, 0, 0, 1, 1], { shape: [2, 1, 4], dtype: "bool" });
  await assertTensor(w.gt(v), [1, 0, 0, 0, 1, 1, 0, 0], { shape: [2, 1, 4] });
});

Deno.test("comparisons with numbers, NaN, -0, ints and bools", async () => {
  const x = mj.tensor([-1, 0, 2]);
  await assertTensor(x.gt(0), [0, 0, 1], { dtype: "bool" });
  await assertTensor(mj.lt(0, x), [0, 0, 1]);
  await assertTensor(mj.ge(0, x), [1, 1, 0]);
  const n = mj.tensor([NaN]);
  for (const op of [mj.lt, mj.le, mj.gt, mj.ge, mj.eq]) assert.deepEqual(await vals(op(n, n)), [0]);
  assert.deepEqual(await vals(mj.ne(n, n)), [1]);
  await assertTensor(mj.tensor([-0]).eq(0), [1]);
  await assertTensor(i32([-1, 0, 1]).lt(0), [1, 0, 0]);
  await assertTensor(u32([0, 4294967295]).gt(1), [0, 1]);
  await assertTensor(u32([4294967295]).ge(u32([4294967294])), [1]);
  const b = mj.tensor([true, false]);
  await assertTensor(b.eq(mj.tensor([true, true])), [1, 0], { dtype: "bool" });
  await assertTensor(b.ne(true), [0, 1]);
  await assertTensor(mj.tensor(1).le(mj.tensor([[0, 1, 2]])), [0, 1, 1], { shape: [1, 3] });
});

Deno.test("logicalAnd/Or/Xor/Not on bools (truth tables, broadcasting)", async () => {
  const a = mj.tensor([[false], [true]]), b = mj.tensor([[false, true]]);
  await assertTensor(a.logicalAnd(b), [0, 0, 0, 1], { shape: [2, 2], dtype: "bool" });
  await assertTensor(mj.logicalOr(a, b), [0, 1, 1, 1], { shape: [2, 2], dtype: "bool" });
  await assertTensor(a.logicalXor(b), [0, 1, 1, 0], { shape: [2, 2], dtype: "bool" });
  await assertTensor(mj.logicalNot(b), [1, 0], { shape: [1, 2], dtype: "bool" });
  await assertTensor(b.logicalNot().logicalNot(), [0, 1]);
  await assertTensor(b.logicalAnd(true), [0, 1]);
  await assertTensor(mj.logicalOr(false, b), [0, 1]);
  await assertTensor(mj.tensor(true).logicalXor(mj.tensor([true, false])), [0, 1]);
});

Deno.test("logical ops are bitwise on integers", async () => {
  await assertTensor(i32([12, -1]).logicalAnd(i32([10, 5])), [8, 5], { dtype: "i32" });
  await assertTensor(i32([12, 0]).logicalOr(i32([10, -8])), [14, -8]);
  await assertTensor(i32([12, -1]).logicalXor(i32([10, 1])), [6, -2]);
  await assertTensor(i32([5, -1, 0]).logicalNot(), [-6, 0, -1], { dtype: "i32" });
  await assertTensor(u32([0, 4294967295]).logicalNot(), [4294967295, 0], { dtype: "u32" });
  await assertTensor(u32([4294967295]).logicalAnd(0x0f0f0f0f), [0x0f0f0f0f]);
  await assertTensor(u32([4294967295]).logicalXor(1), [4294967294]);
});

Deno.test("isnan", async () => {
  await assertTensor(mj.isnan(mj.tensor([NaN, 1, Infinity, -Infinity])), [1, 0, 0, 0], {
    dtype: "bool",
  });
  await assertTensor(mj.tensor([[NaN], [0]]).isnan(), [1, 0], { shape: [2, 1] });
  await assertTensor(i32([[1, 2]]).isnan(), [0, 0], { shape: [1, 2], dtype: "bool" });
  await assertTensor(mj.tensor(NaN).isnan(), 1, { shape: [] });
});

// ---- where ------------------------------------------------------------------------------------

Deno.test("where broadcasts condition and both branches", async () => {
  const c = mj.tensor([[true], [false], [true]]);
  const a = mj.tensor([[1, 2, 3, 4]]);
  await assertTensor(mj.where(c, a, 0), [1, 2, 3, 4, 0, 0, 0, 0, 1, 2, 3, 4], { shape: [3, 4] });
  await assertTensor(c.where(-1, a), [-1, -1, -1, -1, 1, 2, 3, 4, -1, -1, -1, -1], {
    shape: [3, 4],
  });
  // cond [4] against branches [2,1,4] and [2,1,1]
  const c4 = mj.tensor([true, false, false, true]);
  const x = mj.tensor([[[1, 2, 3, 4]], [[5, 6, 7, 8]]]), y = mj.tensor([[[-1]], [[-2]]]);
  await assertTensor(mj.where(c4, x, y), [1, -1, -1, 4, 5, -2, -2, 8], { shape: [2, 1, 4] });
  await assertTensor(mj.where(mj.tensor(false), x, y), [-1, -1, -1, -1, -2, -2, -2, -2], {
    shape: [2, 1, 4],
  });
  await assertTensor(mj.where(mj.tensor([true, false]), NaN, mj.tensor([1, 2])), [NaN, 2]);
  await assertTensor(mj.where(mj.tensor([true, false]), i32([1, 2]), 7), [1, 7], { dtype: "i32" });
  await assertTensor(
    mj.where(mj.tensor([true, false]), mj.tensor([false, false]), true),
    [0, 1],
    { dtype: "bool" },
  );
});

// ---- cast -------------------------------------------------------------------------------------

Deno.test("cast f32 → i32/u32 truncates toward zero and saturates; NaN → 0", async () => {
  const x = mj.tensor([1.9, -1.9, 2.5, -0.5, 3e9, -3e9, NaN, Infinity, -Infinity, 0]);
  await assertTensor(
    x.cast("i32"),
    [1, -1, 2, 0, 2147483647, -2147483648, 0, 2147483647, -2147483648, 0],
    { dtype: "i32" },
  );
  await assertTensor(mj.cast(x, "u32"), [1, 0, 2, 0, 3e9, 0, 0, 4294967295, 0, 0], {
    dtype: "u32",
  });
  await assertTensor(mj.tensor([5e9, 2147483647.0]).cast("u32"), [4294967295, 2147483648]);
});

Deno.test("cast between i32 and u32 reinterprets the bits", async () => {
  await assertTensor(i32([-1, -2147483648, 5]).cast("u32"), [4294967295, 2147483648, 5], {
    dtype: "u32",
  });
  await assertTensor(u32([4294967295, 2147483648, 7]).cast("i32"), [-1, -2147483648, 7], {
    dtype: "i32",
  });
});

Deno.test("cast to and from bool, and int → f32 rounding", async () => {
  await assertTensor(mj.tensor([0, -0, 0.5, NaN, -2, Infinity]).cast("bool"), [0, 0, 1, 1, 1, 1], {
    dtype: "bool",
  });
  await assertTensor(i32([0, -3, 1]).cast("bool"), [0, 1, 1], { dtype: "bool" });
  await assertTensor(u32([0, 4294967295]).cast("bool"), [0, 1]);
  const b = mj.tensor([true, false, true]);
  await assertTensor(b.cast("f32"), [1, 0, 1], { dtype: "f32" });
  await assertTensor(b.cast("i32"), [1, 0, 1], { dtype: "i32" });
  await assertTensor(b.cast("u32"), [1, 0, 1], { dtype: "u32" });
  await assertTensor(i32([16777217, -7]).cast("f32"), [16777216, -7], { dtype: "f32", rtol: 0 });
  await assertTensor(u32([4294967295]).cast("f32"), [4294967296], { rtol: 0 });
  const same = mj.tensor([1, 2]);
  assert.equal(same.cast("f32"), same);
  await assertTensor(mj.tensor([[1.5]]).cast("i32"), [1], { shape: [1, 1] });
  await assertTensor(mj.zeros([0]).cast("i32"), [], { shape: [0], dtype: "i32" });
});

// ---- errors -----------------------------------------------------------------------------------

Deno.test("elementwise errors name the op and the shapes/dtypes", () => {
  const a23 = mj.zeros([2, 3]), f2 = mj.zeros([2]), i2 = i32([1, 2]), b2 = mj.tensor([true, false]);
  assert.throws(
    () => mj.add(a23, mj.zeros([4])),
    /add: shapes \[2,3\] and \[4\] cannot be broadcast together/,
  );
  assert.throws(() => a23.mul(mj.zeros([3, 2])), /mul: shapes \[2,3\] and \[3,2\] cannot be/);
  assert.throws(() => f2.add(i2), /add: dtype mismatch: f32\[2\] and i32\[2\]/);
  assert.throws(() => i2.sub(u32([1, 2])), /sub: dtype mismatch: i32\[2\] and u32\[2\]/);
  assert.throws(
    () => i2.add(0.5),
    /add: the number 0.5 is not an integer, but the other operand is i32/,
  );
  assert.throws(() => mj.add(1, 2 as Any), /add: expected at least one Tensor operand/);
  assert.throws(() => mj.add(f2, "x" as Any), /add: expected a Tensor or a number, got string/);
  assert.throws(() => b2.add(b2), /add: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => b2.maximum(b2), /maximum: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => i2.pow(2), /pow: expected a float tensor, got i32\[2\]/);
  assert.throws(() => f2.mod(2), /mod: expected integer tensors, got f32\[2\]/);
  assert.throws(() => b2.lt(b2), /lt: expected numeric tensors, got bool\[2\]/);
  assert.throws(() => b2.ge(true), /ge: expected numeric tensors, got bool\[2\]/);
  assert.throws(() => f2.eq(i2), /eq: dtype mismatch: f32\[2\] and i32\[2\]/);
  assert.throws(
    () => f2.logicalAnd(f2),
    /logicalAnd: expected bool or integer tensors, got f32\[2\]/,
  );
  assert.throws(() => f2.logicalNot(), /logicalNot: expected bool or integer, got f32\[2\]/);
  assert.throws(() => b2.neg(), /neg: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => b2.abs(), /abs: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => b2.sign(), /sign: expected a numeric tensor, got bool\[2\]/);
  assert.throws(() => mj.exp(3 as Any), /exp: expected input to be a Tensor, got number/);
  assert.throws(() => mj.where(f2, f2, f2), /where: expected a bool condition, got f32\[2\]/);
  assert.throws(
    () => mj.where(true as Any, f2, f2),
    /where: expected the condition to be a Tensor/,
  );
  assert.throws(
    () => mj.where(mj.tensor([true, false, true]), f2, 0),
    /where: condition shape \[3\] cannot broadcast with \[2\]/,
  );
  assert.throws(() => mj.where(b2, f2, i2), /where: dtype mismatch: f32\[2\] and i32\[2\]/);
  assert.throws(() => f2.cast("f64" as Any), /cast: unknown dtype "f64"/);
  assert.throws(() => f2.cast("f16" as mj.DType), /cast: dtype f16 is reserved/);
  assert.throws(() => f2.clip(3, 1), /clip: lo \(3\) must not exceed hi \(1\)/);
  assert.throws(() => i2.clip(0.5, 2), /clip: the number 0.5 is not an integer/);
  assert.throws(() => f2.gelu("fast" as Any), /gelu: unknown approximate "fast"/);
});

Deno.test("float-only ops reject integer tensors", () => {
  const i2 = i32([1, 2]);
  const ops: [string, (t: mj.Tensor) => mj.Tensor][] = [
    ["exp", mj.exp],
    ["log", mj.log],
    ["sqrt", mj.sqrt],
    ["rsqrt", mj.rsqrt],
    ["reciprocal", mj.reciprocal],
    ["sin", mj.sin],
    ["cos", mj.cos],
    ["tanh", mj.tanh],
    ["erf", mj.erf],
    ["floor", mj.floor],
    ["sigmoid", mj.sigmoid],
    ["relu", mj.relu],
    ["gelu", (t) => mj.gelu(t)],
    ["silu", mj.silu],
    ["softplus", mj.softplus],
  ];
  for (const [name, op] of ops) {
    assert.throws(
      () => op(i2),
      new RegExp(`^MoejitError: ${name}: expected a float tensor, got i32\\[2\\]`),
      name,
    );
    assert.throws(() => op(mj.tensor([true])), new RegExp(`${name}: expected a float tensor`));
  }
});
