/** Tensor constructors: from data, constants, ranges and counter-based random draws. */
import { allocHost, checkDType, type DType, type TypedArray } from "../dtype.ts";
import { fail, formatValue } from "../errors.ts";
import { makeNode } from "../ir/node.ts";
import { newBufferNode } from "../ir/values.ts";
import { drawKey } from "../rng.ts";
import { fmtShape, prod } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add, cast, cos, div, log, mul, sqrt, sub } from "./elementwise.ts";
import { constant, intMisfit, requireTensor } from "./prim.ts";
import { iotaAlong } from "./meta.ts";
// Tensors made here get their methods from the op modules (tensor.ts cannot import them).
import "./install.ts";
import { concat } from "./movement.ts";

/** Nested arrays of numbers or booleans, or a typed array. */
export type TensorData = number | boolean | TypedArray | readonly unknown[];

const KNOWN_OPTIONS = new Set(["dtype"]);

function checkOptions(op: string, opts: object | undefined, known = KNOWN_OPTIONS): void {
  if (!opts) return;
  if (typeof opts !== "object") fail(op, `expected an options object, got ${typeof opts}`);
  for (const k of Object.keys(opts)) {
    if (!known.has(k)) {
      fail(op, `unknown option ${formatValue(k)}; expected ${[...known].join(", ")}`);
    }
  }
}

function checkShape(op: string, shape: readonly number[]): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    fail(op, `expected a shape of non-negative integers, got ${formatValue(shape)}`);
  }
  return [...shape];
}

function inferNested(op: string, data: readonly unknown[]): { shape: number[]; flat: unknown[] } {
  const shape: number[] = [];
  let level: unknown = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  const flat: unknown[] = [];
  const walk = (v: unknown, dim: number, path: string): void => {
    if (dim === shape.length) {
      if (Array.isArray(v)) {
        fail(op, `ragged nested array at ${path}: expected a number, got an array`);
      }
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim]) {
      fail(
        op,
        `ragged nested array at ${path}: expected ${shape[dim]} elements, got ${
          Array.isArray(v) ? v.length : typeof v
        }`,
      );
    }
    v.forEach((e, i) => walk(e, dim + 1, `${path}[${i}]`));
  };
  walk(data, 0, "data");
  return { shape, flat };
}

function dtypeOfTyped(op: string, d: TypedArray): DType {
  if (d instanceof Float32Array || d instanceof Float64Array) return "f32";
  if (d instanceof Int32Array) return "i32";
  if (d instanceof Uint32Array) return "u32";
  return fail(op, `a Uint8Array needs an explicit dtype (e.g. { dtype: "bool" })`);
}

/** A tensor backed by host data (copied), as a `buffer` leaf node. */
export function fromHost(data: TypedArray, shape: readonly number[], dtype: DType): Tensor {
  return new Tensor(newBufferNode(shape, dtype, data));
}

/**
 * A tensor from data: a number, nested arrays, or a typed array (with an optional shape).
 * The dtype defaults from the data: numbers → f32, booleans → bool, Int32Array → i32, ….
 *
 * @example
 * ```ts
 * const a = mj.tensor([[1, 2, 3], [4, 5, 6]]);          // f32[2,3]
 * const b = mj.tensor([0, 2, 1], undefined, { dtype: "i32" });
 * const c = mj.tensor(new Float32Array(6), [3, 2]);
 * ```
 */
export function tensor(
  data: TensorData,
  shape?: readonly number[],
  opts?: { dtype?: DType },
): Tensor {
  checkOptions("tensor", opts);
  let flat: ArrayLike<unknown>;
  let inferred: number[];
  let dtype: DType | undefined = opts?.dtype !== undefined
    ? checkDType(opts.dtype, "tensor")
    : undefined;
  if (typeof data === "number" || typeof data === "boolean") {
    flat = [data];
    inferred = [];
    dtype ??= typeof data === "boolean" ? "bool" : "f32";
  } else if (ArrayBuffer.isView(data)) {
    flat = data as TypedArray;
    inferred = [(data as TypedArray).length];
    dtype ??= dtypeOfTyped("tensor", data as TypedArray);
  } else if (Array.isArray(data)) {
    const r = inferNested("tensor", data);
    flat = r.flat;
    inferred = r.shape;
    dtype ??= r.flat.length && typeof r.flat[0] === "boolean" ? "bool" : "f32";
  } else {
    return fail("tensor", `expected a number, nested arrays or a typed array, got ${typeof data}`);
  }
  let target = inferred;
  if (shape !== undefined) {
    target = checkShape("tensor", shape);
    if (prod(target) !== flat.length) {
      fail(
        "tensor",
        `data has ${flat.length} elements but shape ${fmtShape(target)} needs ${prod(target)}`,
      );
    }
  }
  const host = allocHost(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (typeof v !== "number" && typeof v !== "boolean") {
      fail(
        "tensor",
        `element ${i} is ${v === null ? "null" : typeof v}; expected a number or boolean`,
      );
    }
    const n = Number(v);
    const misfit = intMisfit(n, dtype);
    if (misfit) fail("tensor", `element ${i} is ${n}, which is ${misfit}`);
    host[i] = dtype === "bool" ? (n !== 0 ? 1 : 0) : n;
  }
  return fromHost(host, target, dtype);
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, opts?: { dtype?: DType }): Tensor {
  return filled("full", shape, value, opts);
}

// zeros and ones share full's checks but report under their own names.
function filled(
  op: string,
  shape: readonly number[],
  value: number,
  opts?: { dtype?: DType },
): Tensor {
  checkOptions(op, opts);
  const s = checkShape(op, shape);
  const dtype = checkDType(opts?.dtype ?? (typeof value === "boolean" ? "bool" : "f32"), op);
  if (typeof value !== "number" && typeof value !== "boolean") {
    fail(op, `expected a number value, got ${typeof value}`);
  }
  const misfit = intMisfit(Number(value), dtype);
  if (misfit) fail(op, `value ${value} is ${misfit}`);
  return constant(Number(value), s, dtype);
}

/** Zeros of `shape` (f32 unless `dtype` says otherwise). */
export function zeros(shape: readonly number[], opts?: { dtype?: DType }): Tensor {
  return filled("zeros", shape, 0, opts);
}

/** Ones of `shape`. */
export function ones(shape: readonly number[], opts?: { dtype?: DType }): Tensor {
  return filled("ones", shape, 1, opts);
}

export function zerosLike(t: Tensor): Tensor {
  requireTensor("zerosLike", t);
  return constant(0, t.shape, t.dtype);
}

export function onesLike(t: Tensor): Tensor {
  requireTensor("onesLike", t);
  return constant(1, t.shape, t.dtype);
}

/** A tensor of `t`'s shape and dtype filled with `value`. */
export function fullLike(t: Tensor, value: number): Tensor {
  requireTensor("fullLike", t);
  if (typeof value !== "number" && typeof value !== "boolean") {
    fail("fullLike", `expected a number value, got ${typeof value}`);
  }
  const misfit = intMisfit(Number(value), t.dtype);
  if (misfit) fail("fullLike", `value ${value} is ${misfit}`);
  return constant(Number(value), t.shape, t.dtype);
}

/**
 * `start, start+step, …` below `stop`. `arange(n)` is `0..n-1`. The dtype is i32 when all
 * arguments are integers, f32 otherwise.
 *
 * @example
 * ```ts
 * mj.arange(5);           // i32 [0,1,2,3,4]
 * mj.arange(0, 1, 0.25);  // f32 [0,0.25,0.5,0.75]
 * ```
 */
export function arange(
  start: number,
  stop?: number,
  step = 1,
  opts?: { dtype?: DType },
): Tensor {
  checkOptions("arange", opts);
  if (stop === undefined) [start, stop] = [0, start];
  for (const [k, v] of [["start", start], ["stop", stop], ["step", step]] as const) {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      fail("arange", `${k} must be a finite number, got ${v}`);
    }
  }
  if (step === 0) fail("arange", "step must not be 0");
  const allInt = [start, stop, step].every(Number.isInteger);
  const dtype = checkDType(opts?.dtype ?? (allInt ? "i32" : "f32"), "arange");
  if (dtype === "bool") fail("arange", "dtype bool is not supported; expected f32, i32 or u32");
  if (dtype !== "f32" && !allInt) {
    // Otherwise the failure would surface from the mul/add that builds the range.
    fail(
      "arange",
      `start ${start}, stop ${stop} and step ${step} are not all integers, but dtype is ${dtype}`,
    );
  }
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const idx = iotaAlong([n], 0, dtype === "f32" ? "f32" : dtype);
  if (start === 0 && step === 1) return idx;
  return add(mul(idx, step), start);
}

/** Where a draw's Threefry key comes from: a number seed, a key tensor, or the global sequence. */
export interface RandomKey {
  /** A fixed seed (part of the graph: a jitted step reuses it every call). */
  seed?: number;
  /**
   * A key tensor of one or two integers (i32/u32), e.g. `[seed, step]`. Passed into a jitted
   * step as an argument, it gives fresh noise on every call without recompiling.
   */
  key?: Tensor;
}

/** A u32[2] Threefry key from one or two integers. */
export function keyTensor(op: string, key: Tensor): Tensor {
  if (
    !(key instanceof Tensor) || (key.dtype !== "i32" && key.dtype !== "u32") || key.size < 1 ||
    key.size > 2
  ) {
    fail(
      op,
      `key must be an i32/u32 tensor of one or two integers, got ${
        key instanceof Tensor ? `${key.dtype}[${key.shape}]` : typeof key
      }`,
    );
  }
  const k = cast(key.reshape([key.size]), "u32");
  return key.size === 2 ? k : concat([k, constant(0, [1], "u32")], 0);
}

/** Raw counter-based random bits (u32), the source of every draw. */
export function randomBits(
  shape: readonly number[],
  stream: number,
  from: RandomKey | number | [number, number] = {},
): Tensor {
  if (Array.isArray(from)) {
    const [key0, key1] = from;
    return new Tensor(makeNode("randbits", [], { key0, key1, stream, shape: [...shape] }));
  }
  const k: RandomKey = typeof from === "number" ? { seed: from } : from;
  if (k.key !== undefined) {
    if (k.seed !== undefined) fail("random", "give either seed or key, not both");
    return new Tensor(
      makeNode("randbitsKeyed", [keyTensor("random", k.key).node], { stream, shape: [...shape] }),
    );
  }
  const [key0, key1] = drawKey(k.seed);
  return new Tensor(makeNode("randbits", [], { key0, key1, stream, shape: [...shape] }));
}

/** Uniform [0, 1) from random bits: the top 24 bits give every f32 on a 2^-24 grid exactly. */
export function uniformFromBits(bits: Tensor): Tensor {
  return mul(cast(div(bits, 256), "f32"), 2 ** -24);
}

const RAND_OPTIONS = new Set(["seed", "key", "dtype"]);

/** A key shared by the streams of one draw (randn uses two): a key tensor or a fixed pair. */
export function drawSource(
  op: string,
  opts?: { seed?: number; key?: Tensor },
): RandomKey | [number, number] {
  const seed = checkSeed(op, opts?.seed);
  if (opts?.key !== undefined) return { key: opts.key, ...(seed !== undefined ? { seed } : {}) };
  return drawKey(seed);
}

/**
 * Uniform samples in [0, 1). Counter-based and seeded: the same seed gives the same numbers on
 * every backend. Without `seed` or `key`, draws follow the global sequence set by `mj.seed`.
 *
 * @example
 * ```ts
 * const u = mj.rand([4, 4], { seed: 1 });
 * const noise = mj.rand([T, N], { key: stepKey }); // inside mj.jit: fresh every call
 * ```
 */
export function rand(shape: readonly number[], opts?: RandomKey & { dtype?: DType }): Tensor {
  checkOptions("rand", opts, RAND_OPTIONS);
  const s = checkShape("rand", shape);
  if (opts?.dtype && opts.dtype !== "f32") {
    fail("rand", `only dtype f32 is supported, got ${opts.dtype}`);
  }
  return uniformFromBits(randomBits(s, 0, drawSource("rand", opts)));
}

/**
 * Standard normal samples (Box–Muller over two counter-based uniform streams).
 *
 * @example
 * ```ts
 * const w = mj.randn([256, 64], { seed: 0 }).mul(0.02);
 * ```
 */
export function randn(shape: readonly number[], opts?: RandomKey & { dtype?: DType }): Tensor {
  checkOptions("randn", opts, RAND_OPTIONS);
  const s = checkShape("randn", shape);
  if (opts?.dtype && opts.dtype !== "f32") {
    fail("randn", `only dtype f32 is supported, got ${opts.dtype}`);
  }
  const src = drawSource("randn", opts);
  const u1 = sub(1, uniformFromBits(randomBits(s, 0, src))); // (0, 1]: log is finite
  const u2 = uniformFromBits(randomBits(s, 1, src));
  return mul(sqrt(mul(log(u1), -2)), cos(mul(u2, 2 * Math.PI)));
}

function checkSeed(op: string, seed: number | undefined): number | undefined {
  if (seed === undefined) return undefined;
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
    fail(op, `seed must be a non-negative integer, got ${seed}`);
  }
  return seed;
}
