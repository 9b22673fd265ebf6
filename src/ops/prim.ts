/** Small builders shared by the op modules: constants, operand checks, broadcasting. */
import { type DType, isFloat } from "../dtype.ts";
import { fail, formatValue } from "../errors.ts";
import { makeNode } from "../ir/node.ts";
import type { OpArgs, OpName } from "../ir/ops.ts";
import { broadcastShapes, fmtShape, type Shape, shapeEq } from "../shape.ts";
import { Tensor, type TensorLike } from "../tensor.ts";

/** Builds a primitive node over tensors. */
export function prim<K extends OpName>(op: K, src: readonly Tensor[], arg: OpArgs[K]): Tensor {
  return new Tensor(makeNode(op, src.map((t) => t.node), arg));
}

/** Canonical form of a constant for `dtype` (so equal constants intern to one node). */
export function coerceValue(v: number, dtype: DType): number {
  switch (dtype) {
    case "bool":
      return v !== 0 ? 1 : 0;
    case "i32":
      return v | 0;
    case "u32":
      return v >>> 0;
    default:
      return Math.fround(v);
  }
}

const INT_RANGE = { i32: [-2147483648, 2147483647], u32: [0, 4294967295] } as const;

/**
 * Why `v` cannot be stored in an integer dtype, or undefined when it can. Host storage would
 * otherwise truncate or wrap it without a word.
 */
export function intMisfit(v: number, dtype: DType): string | undefined {
  if (dtype !== "i32" && dtype !== "u32") return undefined;
  if (!Number.isInteger(v)) return `not an integer, but dtype is ${dtype}`;
  const [lo, hi] = INT_RANGE[dtype];
  if (v < lo || v > hi) return `outside the ${dtype} range ${lo}..${hi}`;
  return undefined;
}

/** A constant tensor: one node, no storage, whatever its shape. */
export function constant(value: number, shape: Shape, dtype: DType): Tensor {
  return new Tensor(
    makeNode("const", [], { value: coerceValue(value, dtype), shape: [...shape], dtype }),
  );
}

export function describe(t: Tensor): string {
  return `${t.dtype}${fmtShape(t.shape)}`;
}

/** Turns a number/boolean operand into a constant of `like`'s dtype, checking it fits. */
export function lift(op: string, x: TensorLike, like: Tensor | DType): Tensor {
  if (x instanceof Tensor) return x;
  const dtype = typeof like === "string" ? like : like.dtype;
  if (typeof x === "boolean") x = x ? 1 : 0;
  if (typeof x !== "number") {
    fail(
      op,
      `expected a Tensor or a number, got ${typeof x === "object" ? "an object" : typeof x}`,
    );
  }
  if ((dtype === "i32" || dtype === "u32") && !Number.isInteger(x)) {
    fail(op, `the number ${x} is not an integer, but the other operand is ${dtype}`);
  }
  return constant(x, [], dtype);
}

/** Broadcasts `t` to `shape` (which must be a valid broadcast target). */
export function broadcastTo(t: Tensor, shape: Shape): Tensor {
  if (shapeEq(t.shape, shape)) return t;
  const n = t.node;
  if (n.op === "const") {
    const a = n.arg as OpArgs["const"];
    return constant(a.value, shape, a.dtype);
  }
  let x = t;
  if (x.ndim < shape.length) {
    x = prim("reshape", [x], { shape: [...Array(shape.length - x.ndim).fill(1), ...x.shape] });
  }
  return prim("expand", [x], { shape: [...shape] });
}

/** Two operands brought to one dtype (checked) and one broadcast shape. */
export function binaryOperands(op: string, a: TensorLike, b: TensorLike): [Tensor, Tensor] {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) {
    fail(op, `expected at least one Tensor operand, got ${typeof a} and ${typeof b}`);
  }
  const ta = a instanceof Tensor ? a : lift(op, a, b as Tensor);
  const tb = b instanceof Tensor ? b : lift(op, b, ta);
  if (ta.dtype !== tb.dtype) {
    fail(
      op,
      `dtype mismatch: ${describe(ta)} and ${describe(tb)}; expected equal dtypes ` +
        `(convert one with .cast("${ta.dtype}") or .cast("${tb.dtype}"))`,
    );
  }
  const shape = broadcastShapes(ta.shape, tb.shape);
  if (!shape) {
    fail(
      op,
      `shapes ${fmtShape(ta.shape)} and ${fmtShape(tb.shape)} cannot be broadcast together; ` +
        `expected equal sizes or 1 in each trailing dimension`,
    );
  }
  return [broadcastTo(ta, shape), broadcastTo(tb, shape)];
}

export function requireFloat(op: string, t: Tensor): void {
  if (!isFloat(t.dtype)) {
    fail(op, `expected a float tensor, got ${describe(t)}; convert it with .cast("f32")`);
  }
}

export function requireNumeric(op: string, t: Tensor): void {
  if (t.dtype === "bool") fail(op, `expected a numeric tensor, got ${describe(t)}`);
}

export function requireTensor(op: string, t: unknown, what = "input"): asserts t is Tensor {
  if (!(t instanceof Tensor)) {
    fail(op, `expected ${what} to be a Tensor, got ${t === null ? "null" : typeof t}`);
  }
}

/** Normalizes an axis against `rank`, with an error naming the op and the valid range. */
export function normAxis(op: string, axis: number, rank: number, shape?: Shape): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    fail(
      op,
      `axis ${axis} is out of range for a tensor of rank ${rank}` +
        (shape ? ` (shape ${fmtShape(shape)})` : "") +
        `; expected an integer in ${-rank}..${rank - 1}`,
    );
  }
  return axis < 0 ? axis + rank : axis;
}

/** Normalizes an axis list: undefined means all axes; duplicates are an error. */
export function normAxes(
  op: string,
  axis: number | readonly number[] | undefined,
  rank: number,
  shape?: Shape,
): number[] {
  if (axis === undefined || axis === null) return [...Array(rank).keys()];
  const list = typeof axis === "number" ? [axis] : [...axis];
  const out = list.map((a) => normAxis(op, a, rank, shape));
  if (new Set(out).size !== out.length) {
    fail(op, `axis list ${formatValue(list)} repeats an axis`);
  }
  return out.sort((a, b) => a - b);
}

/**
 * A permute node, composed with a permute below it and dropped when it is the identity, so
 * transposes of transposes (common in backward passes) cost nothing.
 */
export function permuted(t: Tensor, perm: readonly number[]): Tensor {
  let src = t, p = [...perm];
  if (t.node.op === "permute") {
    const inner = (t.node.arg as OpArgs["permute"]).perm;
    p = p.map((i) => inner[i]);
    src = new Tensor(t.node.src[0]);
  }
  if (p.every((a, i) => a === i)) return src;
  return prim("permute", [src], { perm: p });
}
