/**
 * The Tensor front end: a thin, immutable handle on a graph node. Methods only build nodes;
 * nothing runs until `await t.data()` (or a jitted step) realizes the graph.
 */
import type { DType, TypedArray } from "./dtype.ts";
import type { Node } from "./ir/node.ts";
import { fail } from "./errors.ts";
import { realizeNodes } from "./backend.ts";
import type * as Elementwise from "./ops/elementwise.ts";
import type * as Reduce from "./ops/reduce.ts";
import type * as Movement from "./ops/movement.ts";
import type * as Indexing from "./ops/indexing.ts";
import type { matmul as Matmul } from "./ops/linalg.ts";
import type { stopGradient as StopGradient } from "./ops/meta.ts";

/**
 * The functions behind Tensor's methods. The op modules build tensors, so this module cannot
 * import them (that would be a cycle): src/ops/install.ts installs them when moejit is loaded.
 */
export interface TensorOps {
  ew: typeof Elementwise;
  rd: typeof Reduce;
  mv: typeof Movement;
  ix: typeof Indexing;
  matmul: typeof Matmul;
  stopGradient: typeof StopGradient;
}

let installed: TensorOps | null = null;

/** Installs the op functions behind Tensor's methods (src/ops/install.ts does). */
export function installTensorOps(ops: TensorOps): void {
  installed = ops;
}

function ops(): TensorOps {
  return installed ??
    fail("Tensor", "moejit's ops are not loaded: import mod.ts (or browser.ts) before tensors");
}

/** A tensor or a number (broadcast as a constant of the tensor's dtype). */
export type TensorLike = Tensor | number | boolean;
/** One axis or several; negative axes count from the end. */
export type Axis = number | readonly number[];

export class Tensor {
  /** The graph node this tensor stands for. */
  readonly node: Node;

  constructor(node: Node) {
    this.node = node;
  }

  /** The shape, e.g. `[2, 3]`; `[]` for a scalar. */
  get shape(): number[] {
    return [...this.node.shape];
  }
  get dtype(): DType {
    return this.node.dtype;
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.node.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return this.node.size;
  }

  /**
   * Realizes the tensor and returns its elements in row-major order (a fresh copy).
   * bool tensors come back as a Uint8Array of 0/1.
   *
   * @example
   * ```ts
   * const x = mj.tensor([1, 2, 3]).mul(2);
   * console.log(await x.data()); // Float32Array [2, 4, 6]
   * ```
   */
  async data(): Promise<TypedArray> {
    const [d] = await realizeNodes([this.node]);
    return d;
  }

  /**
   * The value of a one-element tensor as a number.
   *
   * @example
   * ```ts
   * const s = await mj.tensor([1, 2, 3]).sum().item(); // 6
   * ```
   */
  async item(): Promise<number> {
    if (this.size !== 1) {
      fail("item", `expected a tensor with one element, got ${this.dtype}[${this.shape}]`);
    }
    const d = await this.data();
    return Number(d[0]);
  }

  /** The elements as nested arrays (numbers, or booleans for bool tensors). */
  async tolist(): Promise<unknown> {
    const d = await this.data();
    const shape = this.shape;
    const isBool = this.dtype === "bool";
    let pos = 0;
    const build = (dim: number): unknown => {
      if (dim === shape.length) {
        const v = d[pos++];
        return isBool ? v !== 0 : Number(v);
      }
      const out: unknown[] = [];
      for (let i = 0; i < shape[dim]; i++) out.push(build(dim + 1));
      return out;
    };
    return build(0);
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(",")}])`;
  }
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }

  // ---- elementwise -------------------------------------------------------------------------
  add(o: TensorLike): Tensor {
    return ops().ew.add(this, o);
  }
  sub(o: TensorLike): Tensor {
    return ops().ew.sub(this, o);
  }
  mul(o: TensorLike): Tensor {
    return ops().ew.mul(this, o);
  }
  div(o: TensorLike): Tensor {
    return ops().ew.div(this, o);
  }
  pow(o: TensorLike): Tensor {
    return ops().ew.pow(this, o);
  }
  mod(o: TensorLike): Tensor {
    return ops().ew.mod(this, o);
  }
  maximum(o: TensorLike): Tensor {
    return ops().ew.maximum(this, o);
  }
  minimum(o: TensorLike): Tensor {
    return ops().ew.minimum(this, o);
  }
  neg(): Tensor {
    return ops().ew.neg(this);
  }
  abs(): Tensor {
    return ops().ew.abs(this);
  }
  sign(): Tensor {
    return ops().ew.sign(this);
  }
  exp(): Tensor {
    return ops().ew.exp(this);
  }
  log(): Tensor {
    return ops().ew.log(this);
  }
  sqrt(): Tensor {
    return ops().ew.sqrt(this);
  }
  rsqrt(): Tensor {
    return ops().ew.rsqrt(this);
  }
  reciprocal(): Tensor {
    return ops().ew.reciprocal(this);
  }
  square(): Tensor {
    return ops().ew.mul(this, this);
  }
  sin(): Tensor {
    return ops().ew.sin(this);
  }
  cos(): Tensor {
    return ops().ew.cos(this);
  }
  tanh(): Tensor {
    return ops().ew.tanh(this);
  }
  erf(): Tensor {
    return ops().ew.erf(this);
  }
  floor(): Tensor {
    return ops().ew.floor(this);
  }
  sigmoid(): Tensor {
    return ops().ew.sigmoid(this);
  }
  relu(): Tensor {
    return ops().ew.relu(this);
  }
  /** GELU; `approximate: "tanh"` gives the tanh form, the default is the exact erf form. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return ops().ew.gelu(this, approximate);
  }
  silu(): Tensor {
    return ops().ew.silu(this);
  }
  softplus(): Tensor {
    return ops().ew.softplus(this);
  }
  clip(lo: number, hi: number): Tensor {
    return ops().ew.clip(this, lo, hi);
  }
  lt(o: TensorLike): Tensor {
    return ops().ew.lt(this, o);
  }
  le(o: TensorLike): Tensor {
    return ops().ew.le(this, o);
  }
  gt(o: TensorLike): Tensor {
    return ops().ew.gt(this, o);
  }
  ge(o: TensorLike): Tensor {
    return ops().ew.ge(this, o);
  }
  eq(o: TensorLike): Tensor {
    return ops().ew.eq(this, o);
  }
  ne(o: TensorLike): Tensor {
    return ops().ew.ne(this, o);
  }
  logicalAnd(o: TensorLike): Tensor {
    return ops().ew.logicalAnd(this, o);
  }
  logicalOr(o: TensorLike): Tensor {
    return ops().ew.logicalOr(this, o);
  }
  logicalXor(o: TensorLike): Tensor {
    return ops().ew.logicalXor(this, o);
  }
  logicalNot(): Tensor {
    return ops().ew.logicalNot(this);
  }
  isnan(): Tensor {
    return ops().ew.isnan(this);
  }
  /** `where(this, a, b)`: elements of `a` where this bool tensor is true, else of `b`. */
  where(a: TensorLike, b: TensorLike): Tensor {
    return ops().ew.where(this, a, b);
  }
  cast(dtype: DType): Tensor {
    return ops().ew.cast(this, dtype);
  }
  /** Reinterprets the 32 bits of each element as `dtype` (f32, i32, u32). */
  bitcast(dtype: DType): Tensor {
    return ops().ew.bitcast(this, dtype);
  }

  // ---- reductions --------------------------------------------------------------------------
  sum(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.sum(this, axis, keepdims);
  }
  mean(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.mean(this, axis, keepdims);
  }
  max(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.max(this, axis, keepdims);
  }
  min(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.min(this, axis, keepdims);
  }
  /** Population variance (ddof 0). */
  var(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.variance(this, axis, keepdims);
  }
  logsumexp(axis?: Axis, keepdims = false): Tensor {
    return ops().rd.logsumexp(this, axis, keepdims);
  }
  softmax(axis = -1): Tensor {
    return ops().rd.softmax(this, axis);
  }
  logSoftmax(axis = -1): Tensor {
    return ops().rd.logSoftmax(this, axis);
  }
  /** Index of the largest element along `axis` (ties to the lower index), as i32. */
  argmax(axis = -1, keepdims = false): Tensor {
    return ops().rd.argmax(this, axis, keepdims);
  }
  argmin(axis = -1, keepdims = false): Tensor {
    return ops().rd.argmin(this, axis, keepdims);
  }
  cumsum(axis = -1, opts: { reverse?: boolean; exclusive?: boolean } = {}): Tensor {
    return ops().ix.cumsum(this, axis, opts);
  }

  // ---- movement ----------------------------------------------------------------------------
  /** New shape with the same elements; one dim may be -1 (inferred). */
  reshape(shape: readonly number[]): Tensor {
    return ops().mv.reshape(this, shape);
  }
  /** Reorders dims: result dim i is this tensor's dim `perm[i]`. */
  permute(perm: readonly number[]): Tensor {
    return ops().mv.permute(this, perm);
  }
  /** `transpose()` reverses all dims; `transpose(perm)` is `permute(perm)`. */
  transpose(perm?: readonly number[]): Tensor {
    return ops().mv.transpose(this, perm);
  }
  /** Swaps two dims (defaults: the last two). */
  swapAxes(a = -2, b = -1): Tensor {
    return ops().mv.swapAxes(this, a, b);
  }
  /** Broadcasts to `shape` (NumPy rules: size-1 dims stretch, new dims on the left). */
  expand(shape: readonly number[]): Tensor {
    return ops().mv.broadcastTo(this, shape);
  }
  broadcastTo(shape: readonly number[]): Tensor {
    return ops().mv.broadcastTo(this, shape);
  }
  squeeze(axis?: Axis): Tensor {
    return ops().mv.squeeze(this, axis);
  }
  unsqueeze(axis: number): Tensor {
    return ops().mv.unsqueeze(this, axis);
  }
  flatten(): Tensor {
    return ops().mv.reshape(this, [this.size]);
  }
  /**
   * Per-axis ranges: `[start, end)` pairs (negative counts from the end), `null` for the whole
   * axis, or a number to pick one index and drop the axis. Missing trailing axes are kept whole.
   */
  slice(ranges: readonly (readonly [number, number] | number | null)[]): Tensor {
    return ops().mv.slice(this, ranges);
  }
  /** `length` elements of `axis` starting at `start`. */
  narrow(axis: number, start: number, length: number): Tensor {
    return ops().mv.narrow(this, axis, start, length);
  }
  /** Pads each axis with `[before, after]` elements of `value` (default 0). */
  pad(pads: readonly (readonly [number, number])[], value = 0): Tensor {
    return ops().mv.pad(this, pads, value);
  }
  /** `take_along_axis`: result[..i..] = this[..index[..i..]..] along `axis`. */
  gather(axis: number, index: Tensor): Tensor {
    return ops().ix.gather(this, axis, index);
  }
  matmul(o: Tensor): Tensor {
    return ops().matmul(this, o);
  }
  /** The k largest elements along the last axis, sorted descending; ties to the lower index. */
  topk(k: number): { values: Tensor; indices: Tensor } {
    return ops().ix.topk(this, k);
  }
  /** Identity forward; blocks gradients. */
  stopGradient(): Tensor {
    return ops().stopGradient(this);
  }
}
