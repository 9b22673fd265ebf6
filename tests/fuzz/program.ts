/**
 * Fuzz programs: a random graph as plain data (SSA over the public ops), so that it can be
 * generated from a seed, built on any backend, shrunk by editing the data, and printed as a
 * runnable TypeScript snippet.
 *
 * Sizes come from a few dimension symbols (`dims`) or from the shape of an earlier node, never
 * from a number fixed at generation time, so shrinking a symbol keeps the graph consistent.
 * Parameters that depend on sizes (slice bounds, reshape targets, top-k's k) are stored in a
 * size-independent form and resolved when the program is built; every op resolves to one
 * `Call` that is both what runs and what the snippet prints.
 */
import * as mj from "../../mod.ts";
import type { TypedArray } from "../../src/dtype.ts";
import { indices, uniform, uniformInts } from "./data.ts";

export type DT = "f32" | "i32" | "bool";

/** A size: a dimension symbol, a literal, or axis `axis` of an earlier node. */
export type Dim = { sym: number } | { lit: number } | { like: number; axis: number };

export type Unary =
  | "neg"
  | "abs"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "reciprocal"
  | "square"
  | "sin"
  | "cos"
  | "tanh"
  | "erf"
  | "sigmoid"
  | "relu"
  | "gelu"
  | "silu"
  | "softplus"
  | "floor"
  | "sign"
  | "clip"
  | "logicalNot";

export type Binary =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "pow"
  | "mod"
  | "maximum"
  | "minimum"
  | "lt"
  | "le"
  | "gt"
  | "ge"
  | "eq"
  | "ne"
  | "logicalAnd"
  | "logicalOr"
  | "logicalXor";

export type Reduction = "sum" | "mean" | "max" | "min" | "var" | "logsumexp";

/** One node of a program. `x`, `a`, `b`, … refer to earlier nodes by index. */
export type Op =
  /** Data: f32 uniform in [lo, hi), i32 uniform in [lo, hi], bool true with probability hi. */
  | { k: "input"; dtype: DT; shape: Dim[]; lo: number; hi: number; seed: number; grad: boolean }
  /** i32 indices uniform in [0, bound). */
  | { k: "index"; shape: Dim[]; bound: Dim; seed: number }
  | { k: "unary"; f: Unary; x: number; args?: (number | string)[] }
  | { k: "binary"; f: Binary; a: number; b: number }
  /**
   * `x.f(c)`, or `mj.f(c, x)` when `swap`. A `runtime` constant is an argument of the compiled
   * step when the program runs through `mj.jit` (a runtime scalar), a number otherwise.
   */
  | { k: "scalar"; f: Binary; x: number; c: number; swap: boolean; runtime?: boolean }
  | { k: "where"; cond: number; a: number | { c: number }; b: number | { c: number } }
  | { k: "cast"; x: number; dtype: DT }
  | { k: "reduce"; f: Reduction; x: number; axes: number[] | null; keepdims: boolean }
  | { k: "softmax"; f: "softmax" | "logSoftmax"; x: number; axis: number }
  | { k: "argmax"; f: "argmax" | "argmin"; x: number; axis: number; keepdims: boolean }
  /** k is clamped to the last axis. */
  | { k: "topk"; x: number; kk: number; part: "values" | "indices" }
  | { k: "cumsum"; x: number; axis: number; reverse: boolean; exclusive: boolean }
  | { k: "gather"; x: number; axis: number; index: number }
  | { k: "takeRows"; x: number; rows: number }
  | { k: "matmul"; a: number; b: number }
  /** merge: axes axis and axis+1; split: axis into (its smallest prime factor, the rest). */
  | { k: "reshape"; x: number; how: "merge" | "split" | "flatten"; axis: number; infer: boolean }
  | { k: "permute"; x: number; perm: number[]; form: "permute" | "transpose" | "swapAxes" }
  | { k: "expand"; x: number; shape: Dim[] }
  | { k: "squeeze"; x: number; axis: number }
  | { k: "unsqueeze"; x: number; axis: number }
  /** start = ⌊from·d⌋ (clamped), length = 1 + ⌊len·(d − start − 1)⌋. */
  /** `index` picks the element at `from` and drops the axis (`x.slice([null, …, k])`). */
  | {
    k: "slice";
    x: number;
    axis: number;
    from: number;
    len: number;
    form: "slice" | "narrow" | "index";
  }
  | { k: "pad"; x: number; pads: [number, number][]; value: number }
  | { k: "concat"; xs: number[]; axis: number }
  | { k: "stack"; xs: number[]; axis: number };

export interface Program {
  /** Sizes of the dimension symbols. */
  dims: number[];
  nodes: Op[];
  /** Nodes whose values are compared (and, for f32, feed the loss). */
  outputs: number[];
}

/** A resolved op: what runs and what the snippet prints. */
export type Arg =
  | { ref: number }
  | { refs: number[] }
  | { lit: unknown }
  /** The constant of scalar node `node`: a number, or the step's runtime scalar for it. */
  | { scalar: number; value: number };
export interface Call {
  /** Method on the tensor `self`, or a function of `mj` when self is undefined. */
  fn: string;
  self?: number;
  args: Arg[];
  /** A property of the result (top-k's values or indices). */
  prop?: string;
}

/** Where the builders look up sizes, earlier tensors and runtime scalars. */
export interface Env {
  dims: readonly number[];
  tensors: mj.Tensor[];
  /** Runtime scalars (inside mj.jit) by the index of their scalar node. */
  scalars?: ReadonlyMap<number, mj.Tensor>;
}

export function resolveDim(d: Dim, env: Env): number {
  if ("sym" in d) return env.dims[d.sym];
  if ("lit" in d) return d.lit;
  const t = env.tensors[d.like];
  if (!t || d.axis >= t.ndim) throw new Error(`internal: bad dim reference ${JSON.stringify(d)}`);
  return t.shape[d.axis];
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function smallestFactor(n: number): number {
  for (let f = 2; f * f <= n; f++) if (n % f === 0) return f;
  return n;
}

/** The source nodes an op reads values from (not the ones it takes sizes from). */
export function operands(op: Op): number[] {
  switch (op.k) {
    case "input":
    case "index":
      return [];
    case "binary":
    case "matmul":
      return [op.a, op.b];
    case "where":
      return [
        op.cond,
        ...(typeof op.a === "number" ? [op.a] : []),
        ...(typeof op.b === "number" ? [op.b] : []),
      ];
    case "gather":
      return [op.x, op.index];
    case "takeRows":
      return [op.x, op.rows];
    case "concat":
    case "stack":
      return [...op.xs];
    default:
      return [op.x];
  }
}

/** The nodes an op takes sizes from. */
export function sizeRefs(op: Op): number[] {
  const dims = op.k === "input" || op.k === "index" || op.k === "expand" ? op.shape : [];
  const all = op.k === "index" ? [...dims, op.bound] : dims;
  return all.flatMap((d) => ("like" in d ? [d.like] : []));
}

/** Resolves an input's data and shape. */
export function inputData(op: Op & { k: "input" | "index" }, env: Env): {
  data: TypedArray;
  shape: number[];
  dtype: DT;
  text: string;
} {
  const shape = op.shape.map((d) => resolveDim(d, env));
  const n = numel(shape);
  if (op.k === "index") {
    const bound = resolveDim(op.bound, env);
    return {
      data: indices(n, op.seed, bound),
      shape,
      dtype: "i32",
      text: `mj.tensor(indices(${n}, ${op.seed}, ${bound}), ${
        JSON.stringify(shape)
      }, { dtype: "i32" })`,
    };
  }
  if (op.dtype === "f32") {
    return {
      data: uniform(n, op.seed, op.lo, op.hi),
      shape,
      dtype: "f32",
      text: `mj.tensor(uniform(${n}, ${op.seed}, ${num(op.lo)}, ${num(op.hi)}), ${
        JSON.stringify(shape)
      })`,
    };
  }
  if (op.dtype === "i32") {
    return {
      data: uniformInts(n, op.seed, op.lo, op.hi),
      shape,
      dtype: "i32",
      text: `mj.tensor(uniformInts(${n}, ${op.seed}, ${op.lo}, ${op.hi}), ${
        JSON.stringify(shape)
      }, { dtype: "i32" })`,
    };
  }
  const ints = uniformInts(n, op.seed, 0, 999);
  const p = Math.round(op.hi * 1000);
  return {
    data: Uint8Array.from(ints, (v) => (v < p ? 1 : 0)),
    shape,
    dtype: "bool",
    text:
      `mj.tensor(Uint8Array.from(uniformInts(${n}, ${op.seed}, 0, 999), (v) => (v < ${p} ? 1 : 0)), ${
        JSON.stringify(shape)
      }, { dtype: "bool" })`,
  };
}

/** A number as TypeScript source (keeps -0). */
export function num(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

/** Resolves non-input node `i` against the sizes of its operands. */
export function resolve(op: Op, env: Env, i: number): Call {
  const t = (j: number) => env.tensors[j];
  const lit = (v: unknown): Arg => ({ lit: v });
  const ref = (j: number): Arg => ({ ref: j });
  switch (op.k) {
    case "input":
    case "index":
      throw new Error("internal: inputs are not calls");
    case "unary":
      return { fn: op.f, self: op.x, args: (op.args ?? []).map(lit) };
    case "binary":
      return { fn: op.f, self: op.a, args: [ref(op.b)] };
    case "scalar": {
      const c: Arg = op.runtime ? { scalar: i, value: op.c } : lit(op.c);
      return op.swap ? { fn: op.f, args: [c, ref(op.x)] } : { fn: op.f, self: op.x, args: [c] };
    }
    case "where": {
      const side = (v: number | { c: number }) => (typeof v === "number" ? ref(v) : lit(v.c));
      return { fn: "where", args: [ref(op.cond), side(op.a), side(op.b)] };
    }
    case "cast":
      return { fn: "cast", self: op.x, args: [lit(op.dtype)] };
    case "reduce":
      return {
        fn: op.f,
        self: op.x,
        args: op.axes === null && !op.keepdims ? [] : [lit(op.axes ?? undefined), lit(op.keepdims)],
      };
    case "softmax":
      return { fn: op.f, self: op.x, args: [lit(op.axis)] };
    case "argmax":
      return { fn: op.f, self: op.x, args: [lit(op.axis), lit(op.keepdims)] };
    case "topk": {
      const x = t(op.x);
      const n = x.shape[x.ndim - 1];
      return {
        fn: "topk",
        self: op.x,
        args: [lit(Math.max(1, Math.min(op.kk, n)))],
        prop: op.part,
      };
    }
    case "cumsum": {
      const o: Record<string, boolean> = {};
      if (op.reverse) o.reverse = true;
      if (op.exclusive) o.exclusive = true;
      return {
        fn: "cumsum",
        self: op.x,
        args: [lit(op.axis), ...(Object.keys(o).length ? [lit(o)] : [])],
      };
    }
    case "gather":
      return { fn: "gather", self: op.x, args: [lit(op.axis), ref(op.index)] };
    case "takeRows":
      return { fn: "takeRows", args: [ref(op.x), ref(op.rows)] };
    case "matmul":
      return { fn: "matmul", self: op.a, args: [ref(op.b)] };
    case "reshape": {
      const s = t(op.x).shape;
      let shape: number[];
      if (op.how === "flatten") shape = [numel(s)];
      else if (op.how === "merge") {
        const a = Math.min(op.axis, s.length - 2);
        shape = [...s.slice(0, a), s[a] * s[a + 1], ...s.slice(a + 2)];
      } else {
        const d = s[op.axis];
        const f = d <= 1 ? 1 : smallestFactor(d);
        shape = [...s.slice(0, op.axis), f, d / f, ...s.slice(op.axis + 1)];
      }
      if (op.infer && shape.length) {
        const at = shape.indexOf(Math.max(...shape));
        if (shape.every((d) => d > 0)) shape[at] = -1;
      }
      return { fn: "reshape", self: op.x, args: [lit(shape)] };
    }
    case "permute":
      if (op.form === "transpose") return { fn: "transpose", self: op.x, args: [] };
      if (op.form === "swapAxes") {
        return { fn: "swapAxes", self: op.x, args: [lit(op.perm[0]), lit(op.perm[1])] };
      }
      return { fn: "permute", self: op.x, args: [lit(op.perm)] };
    case "expand":
      return { fn: "expand", self: op.x, args: [lit(op.shape.map((d) => resolveDim(d, env)))] };
    case "squeeze":
      return { fn: "squeeze", self: op.x, args: [lit(op.axis)] };
    case "unsqueeze":
      return { fn: "unsqueeze", self: op.x, args: [lit(op.axis)] };
    case "slice": {
      const d = t(op.x).shape[op.axis];
      const start = Math.min(Math.max(0, d - 1), Math.floor(op.from * d));
      const length = Math.min(d - start, 1 + Math.floor(op.len * Math.max(0, d - start - 1)));
      if (op.form === "narrow") {
        return { fn: "narrow", self: op.x, args: [lit(op.axis), lit(start), lit(length)] };
      }
      // slice takes ranges for leading axes (null keeps an axis), with negative ends sometimes.
      const ranges: unknown[] = Array(op.axis).fill(null);
      if (op.form === "index") {
        ranges.push(start);
        return { fn: "slice", self: op.x, args: [lit(ranges)] };
      }
      const end = start + length;
      ranges.push([start, end < d ? end - d : end]);
      return { fn: "slice", self: op.x, args: [lit(ranges)] };
    }
    case "pad":
      return { fn: "pad", self: op.x, args: [lit(op.pads), lit(op.value)] };
    case "concat":
      return { fn: "concat", args: [{ refs: op.xs }, lit(op.axis)] };
    case "stack":
      return { fn: "stack", args: [{ refs: op.xs }, lit(op.axis)] };
  }
}

/** Runs a resolved call. */
export function exec(call: Call, env: Env): mj.Tensor {
  const args = call.args.map((a) =>
    "ref" in a
      ? env.tensors[a.ref]
      : "refs" in a
      ? a.refs.map((r) => env.tensors[r])
      : "scalar" in a
      ? env.scalars?.get(a.scalar) ?? a.value
      : a.lit
  );
  // deno-lint-ignore no-explicit-any
  const target: any = call.self === undefined ? mj : env.tensors[call.self];
  const f = target[call.fn];
  if (typeof f !== "function") throw new Error(`internal: no function ${call.fn}`);
  const r = f.apply(target, args);
  return call.prop ? r[call.prop] : r;
}

/**
 * The call as TypeScript source over tensor names `name(i)`; runtime scalars print as
 * `scalar(node)` when given, as their value otherwise.
 */
export function callText(
  call: Call,
  name: (i: number) => string,
  scalar?: (node: number) => string,
): string {
  const arg = (a: Arg): string =>
    "ref" in a
      ? name(a.ref)
      : "refs" in a
      ? `[${a.refs.map(name).join(", ")}]`
      : "scalar" in a
      ? scalar?.(a.scalar) ?? num(a.value)
      : litText(a.lit);
  const args = call.args.map(arg).join(", ");
  const head = call.self === undefined
    ? `mj.${call.fn}(${args})`
    : `${name(call.self)}.${call.fn}(${args})`;
  return call.prop ? `${head}.${call.prop}` : head;
}

function litText(v: unknown): string {
  if (v === undefined) return "undefined";
  if (typeof v === "number") return num(v);
  if (Array.isArray(v)) return `[${v.map(litText).join(", ")}]`;
  if (v && typeof v === "object") {
    return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${litText(x)}`).join(", ")} }`;
  }
  return JSON.stringify(v);
}

/** Scalar nodes whose constant is a runtime scalar under mj.jit. */
export function runtimeScalars(p: Program): number[] {
  return live(p).filter((i) => {
    const op = p.nodes[i];
    return op.k === "scalar" && !!op.runtime;
  });
}

/** Whether an input takes part in the gradient (an f32 input marked `grad`). */
export function isGradInput(op: Op): boolean {
  return op.k === "input" && op.dtype === "f32" && op.grad;
}

/**
 * Builds every node of the program. `input(i, data)` makes the tensor for input node i (fresh
 * host data, a placeholder while tracing, or the argument of a differentiated function).
 */
export function build(
  p: Program,
  input: (i: number, d: ReturnType<typeof inputData>) => mj.Tensor,
  scalars?: ReadonlyMap<number, mj.Tensor>,
): mj.Tensor[] {
  const env: Env = { dims: p.dims, tensors: [], scalars };
  p.nodes.forEach((op, i) => {
    env.tensors[i] = op.k === "input" || op.k === "index"
      ? input(i, inputData(op, env))
      : exec(resolve(op, env, i), env);
  });
  return env.tensors;
}

/** Shapes and dtypes of all nodes (builds over constant placeholders; nothing runs). */
export function shapesOf(p: Program): { shape: number[]; dtype: DT }[] {
  const ts = build(p, (_i, d) => mj.zeros(d.shape).cast(d.dtype));
  return ts.map((t) => ({ shape: t.shape, dtype: t.dtype as DT }));
}

/**
 * The scalar whose gradient is checked: Σ over f32 outputs of sum(out · w), with fixed
 * pseudo-random weights w (so that every element of every output matters, with its own weight).
 */
export function lossOf(outs: readonly mj.Tensor[]): mj.Tensor | null {
  let loss: mj.Tensor | null = null;
  outs.forEach((o, i) => {
    if (o.dtype !== "f32") return;
    const w = mj.tensor(uniform(o.size, 1_000_003 + i, -1, 1), o.shape);
    const term = o.mul(w).sum();
    loss = loss ? loss.add(term) : term;
  });
  return loss;
}

/** Nodes whose values the outputs depend on (value edges only), in program order. */
export function live(p: Program): number[] {
  const keep = new Set<number>(p.outputs);
  for (let i = p.nodes.length - 1; i >= 0; i--) {
    if (keep.has(i)) operands(p.nodes[i]).forEach((s) => keep.add(s));
  }
  return [...keep].sort((a, b) => a - b);
}

/** Nodes needed to build the outputs: value edges and size references. */
export function needed(p: Program): Set<number> {
  const keep = new Set<number>(p.outputs);
  for (let i = p.nodes.length - 1; i >= 0; i--) {
    if (keep.has(i)) [...operands(p.nodes[i]), ...sizeRefs(p.nodes[i])].forEach((s) => keep.add(s));
  }
  return keep;
}

/** Drops nodes nothing needs and renumbers the rest. */
export function compact(p: Program): Program {
  const keep = needed(p);
  const map = new Map<number, number>();
  const nodes: Op[] = [];
  p.nodes.forEach((op, i) => {
    if (!keep.has(i)) return;
    map.set(i, nodes.length);
    nodes.push(renumber(op, (r) => map.get(r)!));
  });
  return { dims: [...p.dims], nodes, outputs: p.outputs.map((o) => map.get(o)!) };
}

/** The op with every node reference passed through `f`. */
export function renumber(op: Op, f: (i: number) => number): Op {
  const dim = (d: Dim): Dim => ("like" in d ? { like: f(d.like), axis: d.axis } : d);
  const o = structuredClone(op) as Op;
  switch (o.k) {
    case "input":
      o.shape = o.shape.map(dim);
      return o;
    case "index":
      o.shape = o.shape.map(dim);
      o.bound = dim(o.bound);
      return o;
    case "binary":
    case "matmul":
      o.a = f(o.a);
      o.b = f(o.b);
      return o;
    case "where":
      o.cond = f(o.cond);
      if (typeof o.a === "number") o.a = f(o.a);
      if (typeof o.b === "number") o.b = f(o.b);
      return o;
    case "gather":
      o.x = f(o.x);
      o.index = f(o.index);
      return o;
    case "takeRows":
      o.x = f(o.x);
      o.rows = f(o.rows);
      return o;
    case "concat":
    case "stack":
      o.xs = o.xs.map(f);
      return o;
    case "expand":
      o.x = f(o.x);
      o.shape = o.shape.map(dim);
      return o;
    default:
      (o as { x: number }).x = f((o as { x: number }).x);
      return o;
  }
}

/** Replaces value uses of node `from` (after it) by node `to`; sizes still come from `from`. */
export function replaceUses(p: Program, from: number, to: number): Program {
  const nodes = p.nodes.map((op, i) => {
    if (i <= from) return op;
    const value = new Set(operands(op));
    if (!value.has(from)) return op;
    return renumberValues(op, (r) => (r === from ? to : r));
  });
  return { dims: [...p.dims], nodes, outputs: p.outputs.map((o) => (o === from ? to : o)) };
}

/** Like renumber, but leaves size references alone. */
function renumberValues(op: Op, f: (i: number) => number): Op {
  if (op.k === "input" || op.k === "index") return op;
  if (op.k === "expand") return { ...op, x: f(op.x) };
  return renumber(op, f);
}
