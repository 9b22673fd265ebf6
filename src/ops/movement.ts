/** Movement ops: views of the same elements in another shape or order. */
import { fail, formatValue } from "../errors.ts";
import type { OpArgs } from "../ir/ops.ts";
import { broadcastShapes, fmtShape, prod, shapeEq } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add } from "./elementwise.ts";
import {
  broadcastTo as bcast,
  coerceValue,
  constant,
  describe,
  intMisfit,
  normAxes,
  normAxis,
  permuted,
  prim,
  requireTensor,
} from "./prim.ts";

function checkDims(op: string, dims: readonly number[], allowMinusOne: boolean): void {
  if (!Array.isArray(dims)) fail(op, `expected an array of dimensions, got ${typeof dims}`);
  for (const d of dims) {
    if (!Number.isInteger(d) || (d < 0 && !(allowMinusOne && d === -1))) {
      fail(op, `invalid dimension ${d} in ${formatValue(dims)}; expected integers >= 0`);
    }
  }
}

/**
 * Same elements, new shape; one dimension may be -1 and is inferred.
 *
 * @example
 * ```ts
 * mj.arange(6).reshape([2, -1]); // shape [2, 3]
 * ```
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  requireTensor("reshape", x);
  checkDims("reshape", shape, true);
  const holes = shape.filter((d) => d === -1).length;
  if (holes > 1) fail("reshape", `only one dimension may be -1, got ${fmtShape(shape)}`);
  let target = [...shape];
  if (holes === 1) {
    const known = prod(shape.filter((d) => d !== -1));
    if (known === 0 || x.size % known !== 0) {
      fail(
        "reshape",
        `cannot infer -1 in ${fmtShape(shape)} for ${describe(x)} (${x.size} elements)`,
      );
    }
    target = shape.map((d) => (d === -1 ? x.size / known : d));
  }
  if (prod(target) !== x.size) {
    fail(
      "reshape",
      `cannot reshape ${describe(x)} (${x.size} elements) to ${fmtShape(target)} ` +
        `(${prod(target)} elements); expected the same number of elements`,
    );
  }
  if (shapeEq(target, x.shape)) return x;
  if (x.node.op === "const") {
    const a = x.node.arg as OpArgs["const"];
    return constant(a.value, target, a.dtype);
  }
  // Reshape of a reshape is one reshape.
  const src = x.node.op === "reshape" ? new Tensor(x.node.src[0]) : x;
  if (shapeEq(src.shape, target)) return src;
  return prim("reshape", [src], { shape: target });
}

/** Result dim i is x's dim `perm[i]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  requireTensor("permute", x);
  if (!Array.isArray(perm) || perm.length !== x.ndim) {
    fail(
      "permute",
      `expected a permutation of ${x.ndim} axes for ${describe(x)}, got ${formatValue(perm)}`,
    );
  }
  const p = perm.map((a) => normAxis("permute", a, x.ndim, x.shape));
  if (new Set(p).size !== p.length) {
    fail("permute", `${formatValue(perm)} is not a permutation (an axis repeats)`);
  }
  return permuted(x, p);
}

/** Reverses the dims, or applies `perm` when given. */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  requireTensor("transpose", x);
  return permute(x, perm ?? [...Array(x.ndim).keys()].reverse());
}

/** Swaps two dims. */
export function swapAxes(x: Tensor, a: number, b: number): Tensor {
  requireTensor("swapAxes", x);
  const i = normAxis("swapAxes", a, x.ndim, x.shape);
  const j = normAxis("swapAxes", b, x.ndim, x.shape);
  const perm = [...Array(x.ndim).keys()];
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** NumPy broadcast to `shape`. */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  requireTensor("broadcastTo", x);
  checkDims("broadcastTo", shape, false);
  const b = broadcastShapes(x.shape, shape);
  if (!b || !shapeEq(b, shape)) {
    fail(
      "broadcastTo",
      `cannot broadcast ${describe(x)} to ${fmtShape(shape)}; expected each dim of the input ` +
        `to equal the target's or be 1`,
    );
  }
  return bcast(x, shape);
}

/** Drops size-1 dims (all of them, or those in `axis`). */
export function squeeze(x: Tensor, axis?: number | readonly number[]): Tensor {
  requireTensor("squeeze", x);
  const axes = axis === undefined
    ? x.shape.flatMap((d, i) => (d === 1 ? [i] : []))
    : normAxes("squeeze", axis, x.ndim, x.shape);
  for (const a of axes) {
    if (x.shape[a] !== 1) {
      fail("squeeze", `axis ${a} of ${describe(x)} has size ${x.shape[a]}, not 1`);
    }
  }
  return reshape(x, x.shape.filter((_, i) => !axes.includes(i)));
}

/** Inserts a size-1 dim at `axis` (which may be ndim, or negative). */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  requireTensor("unsqueeze", x);
  const a = normAxis("unsqueeze", axis, x.ndim + 1);
  const s = x.shape;
  s.splice(a, 0, 1);
  return reshape(x, s);
}

type Range = readonly [number, number] | number | null;

/** Per-axis `[start, end)` ranges, `null` (whole axis) or an index (axis dropped). */
export function slice(x: Tensor, ranges: readonly Range[]): Tensor {
  requireTensor("slice", x);
  if (!Array.isArray(ranges) || ranges.length > x.ndim) {
    fail(
      "slice",
      `expected at most ${x.ndim} ranges for ${describe(x)}, got ${formatValue(ranges)}`,
    );
  }
  const starts: number[] = [], ends: number[] = [], drop: number[] = [];
  for (let i = 0; i < x.ndim; i++) {
    const d = x.shape[i];
    const r = i < ranges.length ? ranges[i] : null;
    if (r === null || r === undefined) {
      starts.push(0);
      ends.push(d);
    } else if (typeof r === "number") {
      if (!Number.isInteger(r) || r < -d || r >= d) {
        fail("slice", `index ${r} is out of range for axis ${i} of ${describe(x)}`);
      }
      const s = r < 0 ? r + d : r;
      starts.push(s);
      ends.push(s + 1);
      drop.push(i);
    } else {
      let [s, e] = r;
      if (!Number.isInteger(s) || !Number.isInteger(e)) {
        fail("slice", `range ${formatValue(r)} for axis ${i} must be integers`);
      }
      if (s < 0) s += d;
      if (e < 0) e += d;
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, s), d);
      starts.push(s);
      ends.push(e);
    }
  }
  let y = x;
  if (starts.some((s, i) => s !== 0 || ends[i] !== x.shape[i])) {
    y = prim("slice", [x], { starts, ends });
  }
  return drop.length ? reshape(y, y.shape.filter((_, i) => !drop.includes(i))) : y;
}

/** `length` elements of `axis` from `start`. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  requireTensor("narrow", x);
  const a = normAxis("narrow", axis, x.ndim, x.shape);
  if (
    !Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 ||
    start + length > x.shape[a]
  ) {
    fail("narrow", `range [${start}, ${start + length}) is outside axis ${a} of ${describe(x)}`);
  }
  const ranges: Range[] = x.shape.map(() => null);
  ranges[a] = [start, start + length];
  return slice(x, ranges);
}

/** Pads every axis with `[before, after]` elements of `value`. */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  requireTensor("pad", x);
  if (!Array.isArray(pads) || pads.length !== x.ndim) {
    fail(
      "pad",
      `expected ${x.ndim} [before, after] pairs for ${describe(x)}, got ${formatValue(pads)}`,
    );
  }
  for (const p of pads) {
    if (!Array.isArray(p) || p.length !== 2 || !p.every((v) => Number.isInteger(v) && v >= 0)) {
      fail("pad", `each pad must be [before, after] with integers >= 0, got ${formatValue(p)}`);
    }
  }
  if (typeof value !== "number" && typeof value !== "boolean") {
    fail("pad", `expected a number value, got ${typeof value}`);
  }
  const v = Number(value);
  const misfit = intMisfit(v, x.dtype);
  if (misfit) fail("pad", `value ${v} is ${misfit}`);
  if (pads.every(([a, b]) => a === 0 && b === 0)) return x;
  // Canonical per dtype (a bool pad of 2 is true), as for any other constant: the kernels fill
  // host storage with the value as given.
  return prim("pad", [x], {
    pads: pads.map(([a, b]) => [a, b] as [number, number]),
    value: coerceValue(v, x.dtype),
  });
}

/**
 * Joins tensors along an existing axis.
 *
 * @example
 * ```ts
 * mj.concat([a, b], 0); // [2,3] and [4,3] → [6,3]
 * ```
 */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) {
    fail("concat", "expected a non-empty array of tensors");
  }
  xs.forEach((t, i) => requireTensor("concat", t, `element ${i}`));
  const first = xs[0];
  const a = normAxis("concat", axis, first.ndim, first.shape);
  for (let i = 0; i < xs.length; i++) {
    const t: Tensor = xs[i];
    if (t.dtype !== first.dtype) {
      fail(
        "concat",
        `element ${i} is ${describe(t)}, element 0 is ${describe(first)}; expected one dtype`,
      );
    }
    if (t.ndim !== first.ndim || t.shape.some((d, j) => j !== a && d !== first.shape[j])) {
      fail(
        "concat",
        `element ${i} has shape ${fmtShape(t.shape)}, element 0 has ${fmtShape(first.shape)}; ` +
          `expected equal shapes except along axis ${a}`,
      );
    }
  }
  if (xs.length === 1) return first;
  const total = xs.reduce((n, t) => n + t.shape[a], 0);
  // Each output element is one input's value plus the others' padding. x + -0 is x for every
  // float, whereas x + 0 turns -0 into +0, so f32 pads with -0.
  const fill = first.dtype === "f32" ? -0 : 0;
  let before = 0;
  let out: Tensor | null = null;
  for (const t of xs as Tensor[]) {
    const pads = t.shape.map((_, j) =>
      (j === a ? [before, total - before - t.shape[a]] : [0, 0]) as [number, number]
    );
    before += t.shape[a];
    const p = pad(t, pads, fill);
    out = out ? (first.dtype === "bool" ? prim("or", [out, p], null) : add(out, p)) : p;
  }
  return out!;
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) fail("stack", "expected a non-empty array of tensors");
  xs.forEach((t, i) => requireTensor("stack", t, `element ${i}`));
  const first = xs[0];
  // Checked here, before the unsqueeze, so that errors name stack and the shapes as given.
  for (let i = 1; i < xs.length; i++) {
    const t: Tensor = xs[i];
    if (t.dtype !== first.dtype) {
      fail(
        "stack",
        `element ${i} is ${describe(t)}, element 0 is ${describe(first)}; expected one dtype`,
      );
    }
    if (!shapeEq(t.shape, first.shape)) {
      fail(
        "stack",
        `element ${i} has shape ${fmtShape(t.shape)}, element 0 has ${
          fmtShape(first.shape)
        }; expected equal shapes`,
      );
    }
  }
  const a = normAxis("stack", axis, first.ndim + 1);
  return concat(xs.map((t) => unsqueeze(t, a)), a);
}
