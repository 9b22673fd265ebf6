/** Index-driven ops: gather/scatter, rows, top-k, one-hot, cumulative sums. */
import { fail, formatValue, userCallSite } from "../errors.ts";
import { labelIndexCheck } from "../ir/checks.ts";
import { fmtShape, isIntegerDim } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { cast, eq } from "./elementwise.ts";
import { reshape } from "./movement.ts";
import { broadcastTo, describe, normAxis, prim, requireTensor } from "./prim.ts";
import { iotaAlong } from "./meta.ts";
import { checkDType, type DType } from "../dtype.ts";

function requireIndex(op: string, idx: Tensor): void {
  requireTensor(op, idx, "the index");
  if (idx.dtype !== "i32") {
    fail(op, `expected an i32 index tensor, got ${describe(idx)}; convert with .cast("i32")`);
  }
}

/**
 * `index` guarded to lie in [0, size): every backend raises an error naming `op` (the function
 * the user called), the bad index, `axis` and the user's call site. Library code calls it where a
 * user's indices enter, then indexes with the unchecked primitives below.
 */
export function checkIndex(op: string, index: Tensor, size: number, axis: string): Tensor {
  const n = index.node;
  if (n.op === "checkIndex" && (n.arg as { size: number }).size === size) return index;
  const t = prim("checkIndex", [index], { size });
  labelIndexCheck(t.node, { op, axis, site: userCallSite() });
  return t;
}

/** gather without an index check, for indices the library computed itself (always in range). */
export function gatherTrusted(x: Tensor, axis: number, index: Tensor): Tensor {
  return prim("gather", [x, index], { axis });
}

/** takeRows without an index check, for row indices the library computed itself. */
export function takeRowsTrusted(x: Tensor, rows: Tensor): Tensor {
  const rest = x.shape.slice(1);
  const idx = broadcastTo(reshape(rows, [rows.shape[0], ...rest.map(() => 1)]), [
    rows.shape[0],
    ...rest,
  ]);
  return prim("gather", [x, idx], { axis: 0 });
}

/** scatterAdd without an index check, for indices the library computed itself. */
export function scatterAddTrusted(
  updates: Tensor,
  axis: number,
  index: Tensor,
  shape: readonly number[],
): Tensor {
  return prim("scatterAdd", [updates, index], { axis, shape: [...shape] });
}

/**
 * `take_along_axis`: `out[..., i, ...] = x[..., index[..., i, ...], ...]` along `axis`. `index`
 * has x's rank and matches x on every other axis. Indices must lie in `[0, x.shape[axis])`.
 *
 * @example
 * ```ts
 * const picked = logits.gather(1, labels.reshape([-1, 1])); // [T, 1]
 * ```
 */
export function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  requireTensor("gather", x);
  requireIndex("gather", index);
  const a = normAxis("gather", axis, x.ndim, x.shape);
  if (index.ndim !== x.ndim || index.shape.some((d, i) => i !== a && d !== x.shape[i])) {
    fail(
      "gather",
      `index shape ${fmtShape(index.shape)} does not fit ${describe(x)} along axis ${a}; ` +
        `expected rank ${x.ndim} and sizes equal to x's on every axis but ${a}`,
    );
  }
  return gatherTrusted(x, a, checkIndex("gather", index, x.shape[a], `axis ${a}`));
}

/**
 * The inverse of gather: a zero tensor of `shape` into which `updates[..., i, ...]` is added at
 * position `index[..., i, ...]` along `axis` (repeated indices accumulate).
 */
export function scatterAdd(
  updates: Tensor,
  axis: number,
  index: Tensor,
  shape: readonly number[],
): Tensor {
  requireTensor("scatterAdd", updates, "updates");
  requireIndex("scatterAdd", index);
  const a = normAxis("scatterAdd", axis, updates.ndim, updates.shape);
  // The target size along `axis` is free, so nothing else would catch a bad one before the
  // kernel allocates it.
  if (!Array.isArray(shape) || !shape.every(isIntegerDim)) {
    fail("scatterAdd", `expected a shape of non-negative integers, got ${formatValue(shape)}`);
  }
  if (index.ndim !== updates.ndim || index.shape.some((d, i) => d !== updates.shape[i])) {
    fail(
      "scatterAdd",
      `index shape ${fmtShape(index.shape)} must equal updates shape ${fmtShape(updates.shape)}`,
    );
  }
  if (shape.length !== updates.ndim || shape.some((d, i) => i !== a && d !== updates.shape[i])) {
    fail(
      "scatterAdd",
      `target shape ${fmtShape(shape)} must match updates ${
        fmtShape(updates.shape)
      } on every axis but ${a}`,
    );
  }
  return scatterAddTrusted(
    updates,
    a,
    checkIndex("scatterAdd", index, shape[a], `axis ${a} of the target`),
    shape,
  );
}

/**
 * Rows of `x` (`[R, ...]`) picked by `rows` (`[M]` i32): result `[M, ...]`.
 *
 * @example
 * ```ts
 * const emb = mj.takeRows(table, tokenIds); // [V, d] by [T] → [T, d]
 * ```
 */
export function takeRows(x: Tensor, rows: Tensor): Tensor {
  requireTensor("takeRows", x);
  requireIndex("takeRows", rows);
  if (x.ndim < 1 || rows.ndim !== 1) {
    fail(
      "takeRows",
      `expected x with rank ≥ 1 and a 1-D index, got ${describe(x)} and ${describe(rows)}`,
    );
  }
  return takeRowsTrusted(x, checkIndex("takeRows", rows, x.shape[0], "the rows of x"));
}

/** Adds the rows of `updates` (`[M, ...]`) into a zero `[numRows, ...]` at `rows` (`[M]` i32). */
export function scatterAddRows(updates: Tensor, rows: Tensor, numRows: number): Tensor {
  requireTensor("scatterAddRows", updates, "updates");
  requireIndex("scatterAddRows", rows);
  if (updates.ndim < 1 || rows.ndim !== 1 || rows.shape[0] !== updates.shape[0]) {
    fail(
      "scatterAddRows",
      `expected updates [M, ...] and rows [M], got ${describe(updates)} and ${describe(rows)}`,
    );
  }
  if (!Number.isInteger(numRows) || numRows < 0) {
    fail("scatterAddRows", `numRows must be a non-negative integer, got ${numRows}`);
  }
  const rest = updates.shape.slice(1);
  const checked = checkIndex("scatterAddRows", rows, numRows, "the rows of the target");
  const idx = broadcastTo(reshape(checked, [rows.shape[0], ...rest.map(() => 1)]), updates.shape);
  return prim("scatterAdd", [updates, idx], { axis: 0, shape: [numRows, ...rest] });
}

/**
 * The `k` largest entries along the last axis, sorted descending; ties go to the lower index.
 * NaN ranks above +Infinity (the rule of max and argmax, and of NumPy and PyTorch), on every
 * backend.
 *
 * @example
 * ```ts
 * const { values, indices } = scores.topk(2); // [T, 2] each
 * ```
 */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  requireTensor("topk", x);
  if (x.ndim < 1) fail("topk", `expected a tensor with at least one axis, got ${describe(x)}`);
  if (x.dtype === "bool") fail("topk", `expected a numeric tensor, got ${describe(x)}`);
  const n = x.shape[x.ndim - 1];
  if (!Number.isInteger(k) || k < 1 || k > n) {
    fail("topk", `k must be an integer in 1..${n} (the last axis of ${describe(x)}), got ${k}`);
  }
  const indices = prim("topk", [x], { k });
  const values = gatherTrusted(x, x.ndim - 1, indices);
  return { values, indices };
}

/** One-hot encoding: `[...]` i32 indices → `[..., n]` of 0/1 in `dtype` (default f32). */
export function oneHot(index: Tensor, n: number, dtype: DType = "f32"): Tensor {
  requireIndex("oneHot", index);
  if (!Number.isInteger(n) || n < 1) fail("oneHot", `n must be a positive integer, got ${n}`);
  dtype = checkDType(dtype, "oneHot");
  const shape = [...index.shape, n];
  const hot = eq(
    broadcastTo(reshape(index, [...index.shape, 1]), shape),
    iotaAlong(shape, shape.length - 1),
  );
  return cast(hot, dtype);
}

/** Cumulative sum along `axis`; `reverse` sums from the end, `exclusive` omits the element itself. */
export function cumsum(
  x: Tensor,
  axis = -1,
  opts: { reverse?: boolean; exclusive?: boolean } = {},
): Tensor {
  requireTensor("cumsum", x);
  if (x.dtype === "bool") fail("cumsum", `expected a numeric tensor, got ${describe(x)}`);
  for (const k of Object.keys(opts)) {
    if (k !== "reverse" && k !== "exclusive") {
      fail("cumsum", `unknown option ${formatValue(k)}; expected reverse or exclusive`);
    }
  }
  const a = normAxis("cumsum", axis, x.ndim, x.shape);
  return prim("cumsum", [x], { axis: a, reverse: !!opts.reverse, exclusive: !!opts.exclusive });
}
