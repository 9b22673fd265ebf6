/** Elementwise ops: primitives with their checks, and composites written once over them. */
import { checkDType, type DType, isFloat } from "../dtype.ts";
import { fail, formatValue } from "../errors.ts";
import type { Tensor, TensorLike } from "../tensor.ts";
import { customVjp } from "../autodiff/custom.ts";
import {
  binaryOperands,
  broadcastTo,
  constant,
  describe,
  lift,
  prim,
  requireFloat,
  requireNumeric,
  requireTensor,
} from "./prim.ts";
import { broadcastShapes, fmtShape } from "../shape.ts";

/** A binary elementwise op with broadcasting. */
export type BinaryOp = (a: TensorLike, b: TensorLike) => Tensor;
/** A unary elementwise op. */
export type UnaryOp = (x: Tensor) => Tensor;

// ---- binary arithmetic -----------------------------------------------------------------------

function arith(op: "add" | "sub" | "mul" | "div" | "max" | "min", name: string): BinaryOp {
  return (a: TensorLike, b: TensorLike): Tensor => {
    const [x, y] = binaryOperands(name, a, b);
    requireNumeric(name, x);
    return prim(op, [x, y], null);
  };
}

/** Elementwise sum with NumPy broadcasting. @example `mj.add(x, 1)` */
export const add: BinaryOp = arith("add", "add");
/** Elementwise difference. @example `mj.sub(x, y)` */
export const sub: BinaryOp = arith("sub", "sub");
/** Elementwise product. @example `mj.mul(x, 2)` */
export const mul: BinaryOp = arith("mul", "mul");
/** Elementwise quotient; integer division truncates toward zero (x / 0 = x). */
export const div: BinaryOp = arith("div", "div");
/** Elementwise maximum (ties pass half the gradient to each side). */
export const maximum: BinaryOp = arith("max", "maximum");
/** Elementwise minimum (ties pass half the gradient to each side). */
export const minimum: BinaryOp = arith("min", "minimum");

/** `a ** b` for floats (negative bases with integer exponents keep their sign). */
export function pow(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = binaryOperands("pow", a, b);
  requireFloat("pow", x);
  return prim("pow", [x, y], null);
}

/** Remainder of integer division, with the sign of the dividend (x % 0 = 0). */
export function mod(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = binaryOperands("mod", a, b);
  if (x.dtype !== "i32" && x.dtype !== "u32") {
    fail("mod", `expected integer tensors, got ${describe(x)}`);
  }
  return prim("mod", [x, y], null);
}

// ---- comparisons and logic ----------------------------------------------------------------------

function compare(op: "lt" | "le" | "eq" | "ne", name: string, swap: boolean): BinaryOp {
  return (a: TensorLike, b: TensorLike): Tensor => {
    const [x, y] = binaryOperands(name, a, b);
    if ((op === "lt" || op === "le") && x.dtype === "bool") {
      fail(name, `expected numeric tensors, got ${describe(x)}`);
    }
    return prim(op, swap ? [y, x] : [x, y], null);
  };
}

export const lt: BinaryOp = compare("lt", "lt", false);
export const le: BinaryOp = compare("le", "le", false);
export const gt: BinaryOp = compare("lt", "gt", true);
export const ge: BinaryOp = compare("le", "ge", true);
export const eq: BinaryOp = compare("eq", "eq", false);
export const ne: BinaryOp = compare("ne", "ne", false);

function logic(op: "and" | "or" | "xor", name: string): BinaryOp {
  return (a: TensorLike, b: TensorLike): Tensor => {
    const [x, y] = binaryOperands(name, a, b);
    if (isFloat(x.dtype)) fail(name, `expected bool or integer tensors, got ${describe(x)}`);
    return prim(op, [x, y], null);
  };
}

/** Logical (bool) or bitwise (integer) and. */
export const logicalAnd: BinaryOp = logic("and", "logicalAnd");
export const logicalOr: BinaryOp = logic("or", "logicalOr");
export const logicalXor: BinaryOp = logic("xor", "logicalXor");

export function logicalNot(x: Tensor): Tensor {
  requireTensor("logicalNot", x);
  if (isFloat(x.dtype)) fail("logicalNot", `expected bool or integer, got ${describe(x)}`);
  return prim("not", [x], null);
}

/** True where x is NaN. */
export function isnan(x: Tensor): Tensor {
  requireTensor("isnan", x);
  if (!isFloat(x.dtype)) return constant(0, x.shape, "bool");
  return prim("ne", [x, x], null);
}

/**
 * Elementwise select: `a` where `cond` is true, else `b`; all three broadcast together.
 *
 * @example
 * ```ts
 * const y = mj.where(x.gt(0), x, 0); // relu
 * ```
 */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  requireTensor("where", cond, "the condition");
  if (cond.dtype !== "bool") {
    fail("where", `expected a bool condition, got ${describe(cond)}; compare first, e.g. x.gt(0)`);
  }
  const [x, y] = binaryOperands("where", a, b);
  const shape = broadcastShapes(cond.shape, x.shape);
  if (!shape) {
    fail(
      "where",
      `condition shape ${fmtShape(cond.shape)} cannot broadcast with ${fmtShape(x.shape)}`,
    );
  }
  return prim(
    "where",
    [broadcastTo(cond, shape), broadcastTo(x, shape), broadcastTo(y, shape)],
    null,
  );
}

/**
 * Converts dtypes. float→int truncates toward zero and saturates (NaN→0); int→bool is x≠0;
 * i32↔u32 reinterprets the bits.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  requireTensor("cast", x);
  dtype = checkDType(dtype, "cast");
  if (x.dtype === dtype) return x;
  return prim("cast", [x], { dtype });
}

/**
 * Reinterprets each element's 32 bits as another 32-bit dtype (f32, i32, u32); no value
 * conversion and no gradient.
 *
 * @example
 * ```ts
 * mj.tensor([1]).bitcast("u32"); // [0x3f800000]
 * ```
 */
export function bitcast(x: Tensor, dtype: DType): Tensor {
  requireTensor("bitcast", x);
  dtype = checkDType(dtype, "bitcast");
  if (x.dtype === "bool" || dtype === "bool") {
    fail("bitcast", `expected 32-bit dtypes (f32, i32, u32), got ${describe(x)} to ${dtype}`);
  }
  if (x.dtype === dtype) return x;
  return prim("bitcast", [x], { dtype });
}

// ---- unary ------------------------------------------------------------------------------------

/** `name` is what errors call the op: the primitive's name is not always the public one. */
function floatUnary(
  op: "exp" | "log" | "sqrt" | "recip" | "sin" | "cos" | "tanh" | "erf" | "floor",
  name: string = op,
) {
  return (x: Tensor): Tensor => {
    requireTensor(name, x);
    requireFloat(name, x);
    return prim(op, [x], null);
  };
}

export const exp: UnaryOp = floatUnary("exp");
export const log: UnaryOp = floatUnary("log");
export const sqrt: UnaryOp = floatUnary("sqrt");
export const reciprocal: UnaryOp = floatUnary("recip", "reciprocal");
export const sin: UnaryOp = floatUnary("sin");
export const cos: UnaryOp = floatUnary("cos");
export const tanh: UnaryOp = floatUnary("tanh");
export const erf: UnaryOp = floatUnary("erf");
export const floor: UnaryOp = floatUnary("floor");

export function neg(x: Tensor): Tensor {
  requireTensor("neg", x);
  requireNumeric("neg", x);
  return prim("neg", [x], null);
}

export function abs(x: Tensor): Tensor {
  requireTensor("abs", x);
  requireNumeric("abs", x);
  return prim("abs", [x], null);
}

/** -1, 0 or 1 (in x's dtype); NaN stays NaN. */
export function sign(x: Tensor): Tensor {
  requireTensor("sign", x);
  requireNumeric("sign", x);
  const one = constant(1, x.shape, x.dtype);
  const zero = constant(0, x.shape, x.dtype);
  const pos = where(gt(x, 0), one, zero);
  if (x.dtype === "u32") return pos;
  const s = where(lt(x, 0), constant(-1, x.shape, x.dtype), pos);
  // Both comparisons are false for NaN, which would otherwise read as 0 and hide it.
  return isFloat(x.dtype) ? where(isnan(x), x, s) : s;
}

export function rsqrt(x: Tensor): Tensor {
  requireTensor("rsqrt", x);
  requireFloat("rsqrt", x);
  return reciprocal(sqrt(x));
}

/** max(x, 0), with gradient 0 at x = 0; NaN stays NaN. */
export function relu(x: Tensor): Tensor {
  requireTensor("relu", x);
  requireFloat("relu", x);
  // Selecting on x <= 0 rather than x > 0 lets NaN (for which both are false) pass through.
  return where(le(x, 0), 0, x);
}

// sigmoid is stable for any x (no overflow in either direction), and its backward uses the
// output, s(1-s), so huge |x| gives a gradient of 0 rather than inf·0 = NaN.
const sigmoidVjp = customVjp({
  name: "mj.sigmoid",
  fwd: (x: Tensor) => {
    const e = exp(neg(abs(x)));
    const onePlus = add(e, 1);
    const out = where(ge(x, 0), reciprocal(onePlus), div(e, onePlus));
    return { out, saved: [out] };
  },
  bwd: ([s], g) => [mul(g as Tensor, mul(s, sub(1, s)))],
});

/** 1 / (1 + exp(-x)), computed without overflow. */
export function sigmoid(x: Tensor): Tensor {
  requireTensor("sigmoid", x);
  requireFloat("sigmoid", x);
  return sigmoidVjp(x) as Tensor;
}

/** x · sigmoid(x). */
export function silu(x: Tensor): Tensor {
  requireTensor("silu", x);
  requireFloat("silu", x);
  return mul(x, sigmoid(x));
}

/** log(1 + exp(x)), computed as max(x,0) + log(1 + exp(-|x|)). */
export function softplus(x: Tensor): Tensor {
  requireTensor("softplus", x);
  requireFloat("softplus", x);
  return add(relu(x), log(add(exp(neg(abs(x))), 1)));
}

/**
 * GELU. The default is the exact form 0.5·x·(1 + erf(x/√2)); `"tanh"` is
 * 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
 */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  requireTensor("gelu", x);
  requireFloat("gelu", x);
  if (approximate === "tanh") {
    const inner = mul(add(x, mul(mul(mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
    return mul(mul(x, 0.5), add(tanh(inner), 1));
  }
  if (approximate !== "none") {
    fail("gelu", `unknown approximate ${formatValue(approximate)}; expected "none" or "tanh"`);
  }
  return mul(mul(x, 0.5), add(erf(mul(x, Math.SQRT1_2)), 1));
}

/** Clamps to [lo, hi]. */
export function clip(x: Tensor, lo: number, hi: number): Tensor {
  requireTensor("clip", x);
  if (lo > hi) fail("clip", `lo (${lo}) must not exceed hi (${hi})`);
  return minimum(maximum(x, lift("clip", lo, x)), lift("clip", hi, x));
}
