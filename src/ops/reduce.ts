/** Reductions over any set of axes, and the softmax family built on them. */
import { fail } from "../errors.ts";
import type { ReduceKind } from "../ir/ops.ts";
import type { Tensor } from "../tensor.ts";
import type { Axis } from "../tensor.ts";
import { isFloat } from "../dtype.ts";
import { abs, add, div, eq, exp, isnan, log, logicalOr, mul, sub, where } from "./elementwise.ts";
import {
  broadcastTo,
  constant,
  describe,
  normAxes,
  normAxis,
  prim,
  requireFloat,
  requireTensor,
} from "./prim.ts";
import { iotaAlong, stopGradient } from "./meta.ts";

/** Reduces with the primitive (which keeps reduced dims as 1), then drops them unless keepdims. */
function reduceOp(
  name: string,
  kind: ReduceKind,
  x: Tensor,
  axis: Axis | undefined,
  keepdims: boolean,
): Tensor {
  requireTensor(name, x);
  if (x.dtype === "bool") {
    fail(name, `expected a numeric tensor, got ${describe(x)}; cast it first, e.g. .cast("i32")`);
  }
  const axes = normAxes(name, axis, x.ndim, x.shape);
  if (axes.length === 0) return x;
  if (kind !== "sum" && axes.some((a) => x.shape[a] === 0)) {
    fail(name, `cannot take ${kind} over an empty axis of ${describe(x)}`);
  }
  const r = prim("reduce", [x], { op: kind, axes });
  return keepdims ? r : dropAxes(r, axes);
}

function dropAxes(x: Tensor, axes: readonly number[]): Tensor {
  const shape = x.shape.filter((_, i) => !axes.includes(i));
  return prim("reshape", [x], { shape });
}

function reducedCount(x: Tensor, axis: Axis | undefined, name: string): number {
  return normAxes(name, axis, x.ndim, x.shape).reduce((n, a) => n * x.shape[a], 1);
}

/**
 * Sum over `axis` (all axes when omitted; `[]` reduces nothing).
 *
 * @example
 * ```ts
 * mj.tensor([[1, 2], [3, 4]]).sum(0); // [4, 6]
 * ```
 */
export function sum(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  return reduceOp("sum", "sum", x, axis, keepdims);
}

/**
 * Maximum over `axis` (all axes when omitted). NaN propagates: a row holding one gives NaN, on
 * every backend (and topk, argmax and kthLargest rank NaN first for the same reason).
 *
 * @example
 * ```ts
 * mj.tensor([[1, 5], [3, NaN]]).max(1); // [5, NaN]
 * ```
 */
export function max(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  return reduceOp("max", "max", x, axis, keepdims);
}

/**
 * Minimum over `axis` (all axes when omitted). NaN propagates, as in max.
 *
 * @example
 * ```ts
 * mj.tensor([[1, 5], [3, NaN]]).min(1); // [1, NaN]
 * ```
 */
export function min(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  return reduceOp("min", "min", x, axis, keepdims);
}

/** Arithmetic mean over `axis`. */
export function mean(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  requireTensor("mean", x);
  requireFloat("mean", x);
  const n = reducedCount(x, axis, "mean");
  return div(sum(x, axis, keepdims), n);
}

/** Population variance (ddof 0) over `axis`. */
export function variance(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  requireTensor("var", x);
  requireFloat("var", x);
  // Normalized here so that a bad axis is reported as var's, not as the inner mean's.
  axis = normAxes("var", axis, x.ndim, x.shape);
  const m = mean(x, axis, true);
  const d = sub(x, m);
  return mean(mul(d, d), axis, keepdims);
}

/**
 * A max that is safe to subtract, and no gradient flows through it. An infinite max becomes 0:
 * for -inf rows (all masked) x - m would be -inf - -inf = NaN, and for a +inf entry inf - inf
 * would turn logsumexp's correct +inf into NaN.
 */
function stableMax(x: Tensor, axes: number[]): Tensor {
  const m = stopGradient(prim("reduce", [x], { op: "max", axes }));
  return where(eq(abs(m), Infinity), 0, m);
}

/** log(Σ exp(x)) over `axis`, computed stably (rows of -inf give -inf). */
export function logsumexp(x: Tensor, axis?: Axis, keepdims = false): Tensor {
  requireTensor("logsumexp", x);
  requireFloat("logsumexp", x);
  const axes = normAxes("logsumexp", axis, x.ndim, x.shape);
  if (axes.length === 0) return x;
  const m = stableMax(x, axes);
  const s = prim("reduce", [exp(sub(x, m))], { op: "sum", axes });
  const r = add(log(s), m);
  return keepdims ? r : dropAxes(r, axes);
}

/**
 * Softmax along `axis`.
 *
 * @example
 * ```ts
 * const p = logits.softmax(-1); // rows sum to 1
 * ```
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  requireTensor("softmax", x);
  requireFloat("softmax", x);
  const a = normAxis("softmax", axis, x.ndim, x.shape);
  const e = exp(sub(x, stableMax(x, [a])));
  return div(e, prim("reduce", [e], { op: "sum", axes: [a] }));
}

/** log(softmax(x)) along `axis`, computed stably. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireTensor("logSoftmax", x);
  requireFloat("logSoftmax", x);
  const a = normAxis("logSoftmax", axis, x.ndim, x.shape);
  // (x - m) - log Σ exp(x - m) rather than x - logsumexp(x): with large logits the latter
  // subtracts two nearly equal f32 numbers and keeps only the bits left after |m|'s exponent.
  const shifted = sub(x, stableMax(x, [a]));
  return sub(shifted, log(prim("reduce", [exp(shifted)], { op: "sum", axes: [a] })));
}

function argReduce(name: string, kind: "max" | "min", x: Tensor, axis: number, keepdims: boolean) {
  requireTensor(name, x);
  if (x.dtype === "bool") fail(name, `expected a numeric tensor, got ${describe(x)}`);
  const a = normAxis(name, axis, x.ndim, x.shape);
  const n = x.shape[a];
  if (n === 0) fail(name, `cannot take ${name} over an empty axis of ${describe(x)}`);
  const best = broadcastTo(prim("reduce", [x], { op: kind, axes: [a] }), x.shape);
  const idx = iotaAlong(x.shape, a, "i32");
  // max/min propagate NaN, so a row holding one has best = NaN, which equals nothing; counting
  // NaN as a hit picks the row's first NaN (as NumPy does) instead of the out-of-range n. A NaN
  // can only sit in a row whose best is NaN, so other rows are unaffected.
  const hit = isFloat(x.dtype) ? logicalOr(eq(x, best), isnan(x)) : eq(x, best);
  const cand = where(hit, idx, constant(n, x.shape, "i32"));
  const r = prim("reduce", [cand], { op: "min", axes: [a] });
  return keepdims ? r : dropAxes(r, [a]);
}

/**
 * Index of the maximum along `axis` (i32); ties resolve to the lowest index, and a NaN wins (the
 * first NaN's index), as max returns NaN.
 */
export function argmax(x: Tensor, axis = -1, keepdims = false): Tensor {
  return argReduce("argmax", "max", x, axis, keepdims);
}

/**
 * Index of the minimum along `axis` (i32); ties resolve to the lowest index, and a NaN wins (the
 * first NaN's index), as min returns NaN.
 */
export function argmin(x: Tensor, axis = -1, keepdims = false): Tensor {
  return argReduce("argmin", "min", x, axis, keepdims);
}
