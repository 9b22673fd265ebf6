/**
 * The primitive op registry: every op is declared once, with its category, its argument type
 * and its shape/dtype rule. Everything else (the front end, the interpreter, the VJP table, the
 * WGSL lowering) is a table keyed by these names, so a new op fails to type-check until every
 * table has an entry.
 */
import { type DType, isFloat } from "../dtype.ts";
import { fmtShape, prod, type Shape, shapeEq } from "../shape.ts";
import type { Node } from "./node.ts";

export type Category =
  | "leaf"
  | "unary"
  | "binary"
  | "ternary"
  | "reduce"
  | "movement"
  | "routine"
  | "random"
  | "meta";

export type ReduceKind = "sum" | "max" | "min";

/** Per-op arguments; part of the node's content key. */
export interface OpArgs {
  // leaves
  const: { value: number; shape: Shape; dtype: DType };
  buffer: { id: number; shape: Shape; dtype: DType };
  param: { slot: number; shape: Shape; dtype: DType };
  iota: { axis: number; shape: Shape; dtype: DType };
  randbits: { key0: number; key1: number; stream: number; shape: Shape };
  /** Like randbits, with the Threefry key read from a u32[2] tensor (fresh noise per jit call). */
  randbitsKeyed: { stream: number; shape: Shape };
  // unary
  neg: null;
  exp: null;
  log: null;
  sqrt: null;
  recip: null;
  sin: null;
  cos: null;
  tanh: null;
  erf: null;
  abs: null;
  floor: null;
  not: null;
  cast: { dtype: DType };
  /** Reinterprets the 32 bits of each element as another 32-bit dtype. */
  bitcast: { dtype: DType };
  /**
   * The identity on an i32 index tensor that must lie in [0, size): out-of-range elements are
   * an error raised by every backend (the interpreter at once, compiled kernels through the
   * step's error buffer), named by the op the user called (src/ir/checks.ts).
   */
  checkIndex: { size: number };
  // binary (operands have equal shapes and dtypes)
  add: null;
  sub: null;
  mul: null;
  div: null;
  pow: null;
  max: null;
  min: null;
  mod: null;
  lt: null;
  le: null;
  eq: null;
  ne: null;
  and: null;
  or: null;
  xor: null;
  // ternary
  where: null;
  // reduce: reduced axes keep size 1
  reduce: { op: ReduceKind; axes: number[] };
  // movement
  reshape: { shape: Shape };
  permute: { perm: number[] };
  expand: { shape: Shape };
  pad: { pads: [number, number][]; value: number };
  slice: { starts: number[]; ends: number[] };
  // routines
  gather: { axis: number };
  scatterAdd: { axis: number; shape: Shape };
  matmul: null;
  topk: { k: number };
  /** The rank-th largest of each column of an [n, cols] f32 matrix → [cols] (radix select). */
  kthLargest: { rank: number };
  cumsum: { axis: number; reverse: boolean; exclusive: boolean };
  /** out[r] = a[r] @ b[e] for the expert segment e holding row r (offsets[e] ≤ r < offsets[e+1]). */
  groupedMatmul: null;
  /** out[e] = Σ over rows r of segment e within [rows[0], rows[1]) of a[r]ᵀ ⊗ g[r]. */
  groupedWgrad: { rows: [number, number] };
  /**
   * out[s] = Σ x[order[p]] over positions p of segment s (offsets[s] ≤ p < offsets[s+1]) within
   * [rows[0], rows[1]), in position order: x [R, L], order [P] i32, offsets [S+1] → [S, L]. A
   * deterministic scatter-add (src/passes/scatter.ts) with no float atomics.
   */
  segmentSum: { rows: [number, number] };
  /**
   * Fused softmax(scale·q·kᵀ (+ causal mask))·v over q [..., S, Dh], k and v [..., Sk, Dh] →
   * [..., S, Dh + 1]: the output rows, then each row's log-sum-exp (for the backward).
   */
  attention: { causal: boolean; scale: number };
  /** dq of attention from (q, k, v, dO, lse, delta) → [..., S, Dh]; delta = rowsum(dO ⊙ o) − dlse. */
  attentionBwdQ: { causal: boolean; scale: number };
  /** dk and dv of attention from (q, k, v, dO, lse, delta) → [..., Sk, 2·Dh] (dk then dv). */
  attentionBwdKV: { causal: boolean; scale: number };
  // meta
  stopgrad: null;
  custom: {
    name: string;
    index: number;
    nOut: number;
    nIn: number;
    nSaved: number;
    group: string;
    estimator: boolean;
  };
  mark: { label: string };
  arg: { level: number; path: string };
}

export type OpName = keyof OpArgs;

export interface Inferred {
  shape: Shape;
  dtype: DType;
}

/**
 * The kernel template that runs a routine op (src/passes/kernels/ lowers each kind; codegen/
 * emits it for WGSL and C). `fused` kernels are everything else: elementwise and row kernels.
 */
export type KernelKind =
  | "fused"
  | "matmul"
  | "grouped"
  | "wgrad"
  | "segmentSum"
  | "topk"
  | "kthLargest"
  | "cumsum"
  | "scatterAdd"
  | "attention"
  | "attentionBwdQ"
  | "attentionBwdKV";

export interface OpDef<K extends OpName> {
  category: Category;
  /** Shape and dtype of the result; throws on inconsistent input (internal invariant). */
  infer(src: readonly Node[], arg: OpArgs[K]): Inferred;
  /** Number of sources; -1 for variadic. */
  arity: number;
  /**
   * Routines only: the template that runs the op as its own kernel over realized inputs, and
   * whether elementwise consumers may fuse into its write (an epilogue: matmul-like templates).
   */
  kernel?: KernelKind;
  epilogue?: boolean;
  /** ALU cost of recomputing the op inside a consumer (default 1; transcendentals 4). */
  cost?: number;
}

class IRError extends Error {
  constructor(op: string, msg: string) {
    super(`IR invariant violated in ${op}: ${msg}`);
  }
}

function same(op: string, src: readonly Node[]): void {
  for (let i = 1; i < src.length; i++) {
    if (!shapeEq(src[0].shape, src[i].shape) || src[0].dtype !== src[i].dtype) {
      throw new IRError(
        op,
        `operands differ: ${src[0].dtype}${fmtShape(src[0].shape)} vs ${src[i].dtype}${
          fmtShape(src[i].shape)
        }`,
      );
    }
  }
}

function checkAxis(op: string, axis: number, rank: number): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= rank) {
    throw new IRError(op, `axis ${axis} is not in 0..${rank - 1}`);
  }
}

/** One entry per dim of `shape`, each an integer pair with 0 ≤ lo ≤ hi ≤ dim. */
function checkRanges(op: string, shape: Shape, lo: readonly number[], hi: readonly number[]) {
  if (lo.length !== shape.length || hi.length !== shape.length) {
    throw new IRError(op, `${lo.length} ranges for a source of rank ${shape.length}`);
  }
  shape.forEach((d, i) => {
    if (
      !Number.isInteger(lo[i]) || !Number.isInteger(hi[i]) || lo[i] < 0 || hi[i] < lo[i] ||
      hi[i] > d
    ) {
      throw new IRError(op, `range [${lo[i]}, ${hi[i]}) does not fit axis ${i} of size ${d}`);
    }
  });
}

function leaf<K extends "const" | "buffer" | "param" | "iota">(): OpDef<K> {
  return {
    category: "leaf",
    arity: 0,
    infer: (_s, a) => ({ shape: a.shape, dtype: a.dtype }),
  };
}

function unary<K extends OpName>(op: K, floatOnly: boolean, cost = 1): OpDef<K> {
  return {
    category: "unary",
    arity: 1,
    cost,
    infer: (s) => {
      if (floatOnly && !isFloat(s[0].dtype)) {
        throw new IRError(op, `needs a float operand, got ${s[0].dtype}${fmtShape(s[0].shape)}`);
      }
      return { shape: s[0].shape, dtype: s[0].dtype };
    },
  };
}

function binary<K extends OpName>(op: K, result: "same" | "bool"): OpDef<K> {
  return {
    category: "binary",
    arity: 2,
    infer: (s) => {
      same(op, s);
      return { shape: s[0].shape, dtype: result === "bool" ? "bool" : s[0].dtype };
    },
  };
}

/** [S, Sk, Dh] of attention operands q [..., S, Dh], k and v [..., Sk, Dh] (f32, equal leading dims). */
function attentionDims(
  op: string,
  s: readonly { shape: Shape; dtype: DType }[],
): [number, number, number] {
  const [q, k, v] = s;
  const r = q.shape.length;
  if (r < 2 || k.shape.length !== r || v.shape.length !== r) throw new IRError(op, "rank");
  if ([q, k, v].some((t) => t.dtype !== "f32")) throw new IRError(op, "needs f32 operands");
  const Dh = q.shape[r - 1], Sk = k.shape[r - 2];
  if (k.shape[r - 1] !== Dh || !shapeEq(k.shape, v.shape)) {
    throw new IRError(op, "k and v must be [..., Sk, Dh]");
  }
  if (!shapeEq(q.shape.slice(0, r - 2), k.shape.slice(0, r - 2))) {
    throw new IRError(op, "batch dims");
  }
  return [q.shape[r - 2], Sk, Dh];
}

/** dO like q; lse and delta [..., S]. */
function checkAttentionGrad(op: string, s: readonly { shape: Shape; dtype: DType }[]): void {
  const [q, , , dO, lse, delta] = s;
  if (!shapeEq(dO.shape, q.shape)) throw new IRError(op, "dO must match q");
  for (const t of [lse, delta]) {
    if (!shapeEq(t.shape, q.shape.slice(0, -1)) || t.dtype !== "f32") {
      throw new IRError(op, "lse and delta must be f32 [..., S]");
    }
  }
}

export const OPS: { [K in OpName]: OpDef<K> } = {
  const: leaf(),
  buffer: leaf(),
  param: leaf(),
  iota: leaf(),
  randbits: { category: "leaf", arity: 0, infer: (_s, a) => ({ shape: a.shape, dtype: "u32" }) },
  randbitsKeyed: {
    category: "random",
    arity: 1,
    infer: (s, a) => {
      if (s[0].dtype !== "u32" || s[0].shape.length !== 1 || s[0].shape[0] !== 2) {
        throw new IRError("randbitsKeyed", "the key must be u32[2]");
      }
      return { shape: a.shape, dtype: "u32" };
    },
  },

  neg: unary("neg", false),
  exp: unary("exp", true, 4),
  log: unary("log", true, 4),
  sqrt: unary("sqrt", true, 4),
  recip: unary("recip", true, 4),
  sin: unary("sin", true, 4),
  cos: unary("cos", true, 4),
  tanh: unary("tanh", true, 4),
  erf: unary("erf", true, 4),
  abs: unary("abs", false),
  floor: unary("floor", true),
  not: unary("not", false),
  cast: { category: "unary", arity: 1, infer: (s, a) => ({ shape: s[0].shape, dtype: a.dtype }) },
  bitcast: {
    category: "unary",
    arity: 1,
    infer: (s, a) => {
      const ok = (d: DType) => d === "f32" || d === "i32" || d === "u32";
      if (!ok(s[0].dtype) || !ok(a.dtype)) throw new IRError("bitcast", "needs 32-bit dtypes");
      return { shape: s[0].shape, dtype: a.dtype };
    },
  },

  checkIndex: {
    category: "unary",
    arity: 1,
    infer: (s, a) => {
      if (s[0].dtype !== "i32") throw new IRError("checkIndex", "needs an i32 index");
      if (!Number.isInteger(a.size) || a.size < 0) throw new IRError("checkIndex", "size");
      return { shape: s[0].shape, dtype: "i32" };
    },
  },

  add: binary("add", "same"),
  sub: binary("sub", "same"),
  mul: binary("mul", "same"),
  div: binary("div", "same"),
  pow: { ...binary("pow", "same"), cost: 4 },
  max: binary("max", "same"),
  min: binary("min", "same"),
  mod: binary("mod", "same"),
  lt: binary("lt", "bool"),
  le: binary("le", "bool"),
  eq: binary("eq", "bool"),
  ne: binary("ne", "bool"),
  and: binary("and", "same"),
  or: binary("or", "same"),
  xor: binary("xor", "same"),

  where: {
    category: "ternary",
    arity: 3,
    infer: (s) => {
      if (s[0].dtype !== "bool") throw new IRError("where", "condition must be bool");
      if (!shapeEq(s[0].shape, s[1].shape)) throw new IRError("where", "condition shape");
      same("where", [s[1], s[2]]);
      return { shape: s[1].shape, dtype: s[1].dtype };
    },
  },

  reduce: {
    category: "reduce",
    arity: 1,
    infer: (s, a) => {
      a.axes.forEach((ax) => checkAxis("reduce", ax, s[0].shape.length));
      if (new Set(a.axes).size !== a.axes.length) throw new IRError("reduce", "repeated axis");
      const shape = s[0].shape.map((d, i) => (a.axes.includes(i) ? 1 : d));
      return { shape, dtype: s[0].dtype };
    },
  },

  reshape: {
    category: "movement",
    arity: 1,
    infer: (s, a) => {
      if (prod(a.shape) !== prod(s[0].shape)) throw new IRError("reshape", "size changes");
      return { shape: a.shape, dtype: s[0].dtype };
    },
  },
  permute: {
    category: "movement",
    arity: 1,
    infer: (s, a) => {
      const r = s[0].shape.length;
      if (
        a.perm.length !== r || a.perm.some((p) => !Number.isInteger(p) || p < 0 || p >= r) ||
        new Set(a.perm).size !== r
      ) {
        throw new IRError("permute", `[${a.perm}] is not a permutation of ${r} axes`);
      }
      return { shape: a.perm.map((p) => s[0].shape[p]), dtype: s[0].dtype };
    },
  },
  expand: {
    category: "movement",
    arity: 1,
    infer: (s, a) => {
      if (a.shape.length !== s[0].shape.length) throw new IRError("expand", "rank changes");
      s[0].shape.forEach((d, i) => {
        if (d !== a.shape[i] && d !== 1) throw new IRError("expand", "non-1 dim expanded");
      });
      return { shape: a.shape, dtype: s[0].dtype };
    },
  },
  pad: {
    category: "movement",
    arity: 1,
    infer: (s, a) => {
      if (a.pads.length !== s[0].shape.length) throw new IRError("pad", "one pair per axis");
      if (
        a.pads.some(([lo, hi]) =>
          !(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && hi >= 0)
        )
      ) {
        throw new IRError("pad", "pads must be integers >= 0");
      }
      return {
        shape: s[0].shape.map((d, i) => d + a.pads[i][0] + a.pads[i][1]),
        dtype: s[0].dtype,
      };
    },
  },
  slice: {
    category: "movement",
    arity: 1,
    infer: (s, a) => {
      checkRanges("slice", s[0].shape, a.starts, a.ends);
      return { shape: a.starts.map((st, i) => a.ends[i] - st), dtype: s[0].dtype };
    },
  },

  gather: {
    category: "routine",
    arity: 2,
    infer: (s, a) => {
      const [x, idx] = s;
      if (idx.dtype !== "i32") throw new IRError("gather", "index must be i32");
      if (idx.shape.length !== x.shape.length) throw new IRError("gather", "rank");
      checkAxis("gather", a.axis, x.shape.length);
      idx.shape.forEach((d, i) => {
        if (i !== a.axis && d !== x.shape[i]) throw new IRError("gather", "non-axis dims differ");
      });
      return { shape: idx.shape, dtype: x.dtype };
    },
  },
  scatterAdd: {
    category: "routine",
    kernel: "scatterAdd",
    arity: 2,
    infer: (s, a) => {
      const [upd, idx] = s;
      if (idx.dtype !== "i32") throw new IRError("scatterAdd", "index must be i32");
      if (!shapeEq(upd.shape, idx.shape)) throw new IRError("scatterAdd", "updates vs index");
      if (a.shape.length !== upd.shape.length) throw new IRError("scatterAdd", "rank");
      checkAxis("scatterAdd", a.axis, upd.shape.length);
      a.shape.forEach((d, i) => {
        if (i !== a.axis && d !== upd.shape[i]) throw new IRError("scatterAdd", "non-axis dims");
      });
      return { shape: a.shape, dtype: upd.dtype };
    },
  },
  groupedMatmul: {
    category: "routine",
    kernel: "grouped",
    epilogue: true,
    arity: 3,
    infer: (s) => {
      const [a, b, off] = s;
      if (a.shape.length !== 2 || b.shape.length !== 3) throw new IRError("groupedMatmul", "rank");
      if (a.shape[1] !== b.shape[1]) throw new IRError("groupedMatmul", "inner dims");
      if (off.dtype !== "i32" || off.shape.length !== 1 || off.shape[0] !== b.shape[0] + 1) {
        throw new IRError("groupedMatmul", "offsets must be i32 [E+1]");
      }
      if (a.dtype !== "f32" || b.dtype !== "f32") throw new IRError("groupedMatmul", "dtypes");
      return { shape: [a.shape[0], b.shape[2]], dtype: "f32" };
    },
  },
  groupedWgrad: {
    category: "routine",
    kernel: "wgrad",
    arity: 3,
    infer: (s, arg) => {
      const [a, g, off] = s;
      if (a.shape.length !== 2 || g.shape.length !== 2 || a.shape[0] !== g.shape[0]) {
        throw new IRError("groupedWgrad", "operands must be [R,K] and [R,N]");
      }
      if (off.dtype !== "i32" || off.shape.length !== 1 || off.shape[0] < 1) {
        throw new IRError("groupedWgrad", "offsets must be i32 [E+1]");
      }
      const [r0, r1] = arg.rows;
      if (!(0 <= r0 && r0 <= r1 && r1 <= a.shape[0])) throw new IRError("groupedWgrad", "rows");
      return { shape: [off.shape[0] - 1, a.shape[1], g.shape[1]], dtype: "f32" };
    },
  },
  segmentSum: {
    category: "routine",
    kernel: "segmentSum",
    arity: 3,
    infer: (s, arg) => {
      const [x, order, off] = s;
      if (x.shape.length !== 2 || x.dtype !== "f32") throw new IRError("segmentSum", "x f32[R, L]");
      if (order.dtype !== "i32" || order.shape.length !== 1) {
        throw new IRError("segmentSum", "order must be i32 [P]");
      }
      if (off.dtype !== "i32" || off.shape.length !== 1 || off.shape[0] < 1) {
        throw new IRError("segmentSum", "offsets must be i32 [S+1]");
      }
      const [r0, r1] = arg.rows;
      if (!(0 <= r0 && r0 <= r1 && r1 <= order.shape[0])) throw new IRError("segmentSum", "rows");
      return { shape: [off.shape[0] - 1, x.shape[1]], dtype: "f32" };
    },
  },
  matmul: {
    category: "routine",
    kernel: "matmul",
    epilogue: true,
    arity: 2,
    infer: (s) => {
      const [a, b] = s;
      const r = a.shape.length;
      if (r < 2 || b.shape.length !== r) throw new IRError("matmul", "rank");
      if (a.shape[r - 1] !== b.shape[r - 2]) throw new IRError("matmul", "inner dims");
      if (!shapeEq(a.shape.slice(0, r - 2), b.shape.slice(0, r - 2))) {
        throw new IRError("matmul", "batch dims");
      }
      if (a.dtype !== b.dtype) throw new IRError("matmul", "dtypes");
      return { shape: [...a.shape.slice(0, r - 1), b.shape[r - 1]], dtype: a.dtype };
    },
  },
  attention: {
    category: "routine",
    kernel: "attention",
    arity: 3,
    infer: (s, a) => {
      const [S, Sk, Dh] = attentionDims("attention", s);
      if (a.causal && Sk < S) {
        throw new IRError("attention", `causal needs Sk ≥ S, got S ${S}, Sk ${Sk}`);
      }
      return { shape: [...s[0].shape.slice(0, -1), Dh + 1], dtype: "f32" };
    },
  },
  attentionBwdQ: {
    category: "routine",
    kernel: "attentionBwdQ",
    arity: 6,
    infer: (s) => {
      attentionDims("attentionBwdQ", s);
      checkAttentionGrad("attentionBwdQ", s);
      return { shape: s[0].shape, dtype: "f32" };
    },
  },
  attentionBwdKV: {
    category: "routine",
    kernel: "attentionBwdKV",
    arity: 6,
    infer: (s) => {
      const [, , Dh] = attentionDims("attentionBwdKV", s);
      checkAttentionGrad("attentionBwdKV", s);
      return { shape: [...s[1].shape.slice(0, -1), 2 * Dh], dtype: "f32" };
    },
  },
  kthLargest: {
    category: "routine",
    kernel: "kthLargest",
    arity: 1,
    infer: (s, a) => {
      if (s[0].shape.length !== 2 || s[0].dtype !== "f32") {
        throw new IRError("kthLargest", "needs f32[n, cols]");
      }
      if (!Number.isInteger(a.rank) || a.rank < 1 || a.rank > s[0].shape[0]) {
        throw new IRError("kthLargest", "rank");
      }
      return { shape: [s[0].shape[1]], dtype: "f32" };
    },
  },
  topk: {
    category: "routine",
    kernel: "topk",
    arity: 1,
    infer: (s, a) => {
      const n = s[0].shape[s[0].shape.length - 1];
      if (s[0].shape.length === 0 || !Number.isInteger(a.k) || a.k < 0 || a.k > n) {
        throw new IRError("topk", `k = ${a.k} for a source of shape ${fmtShape(s[0].shape)}`);
      }
      return { shape: [...s[0].shape.slice(0, -1), a.k], dtype: "i32" };
    },
  },
  cumsum: {
    category: "routine",
    kernel: "cumsum",
    arity: 1,
    infer: (s, a) => {
      checkAxis("cumsum", a.axis, s[0].shape.length);
      return { shape: s[0].shape, dtype: s[0].dtype };
    },
  },

  stopgrad: {
    category: "meta",
    arity: 1,
    infer: (s) => ({ shape: s[0].shape, dtype: s[0].dtype }),
  },
  custom: {
    category: "meta",
    arity: -1,
    infer: (s, a) => {
      // Sources: the forward's output, the tensor inputs, the saved residuals.
      if (s.length !== 1 + a.nIn + a.nSaved) {
        throw new IRError("custom", `${s.length} sources, expected 1 + ${a.nIn} + ${a.nSaved}`);
      }
      if (!(a.index >= 0 && a.index < a.nOut)) {
        throw new IRError("custom", `output ${a.index} of ${a.nOut}`);
      }
      return { shape: s[0].shape, dtype: s[0].dtype };
    },
  },
  mark: { category: "meta", arity: 1, infer: (s) => ({ shape: s[0].shape, dtype: s[0].dtype }) },
  arg: { category: "meta", arity: 1, infer: (s) => ({ shape: s[0].shape, dtype: s[0].dtype }) },
};

/** Ops that are the identity on their first source when evaluated. */
export const IDENTITY_OPS: ReadonlySet<OpName> = new Set(["stopgrad", "custom", "mark", "arg"]);

export function categoryOf(op: OpName): Category {
  return OPS[op].category;
}
