/**
 * Per-element error estimates for f32 graphs, by running-error analysis on the interpreter.
 *
 * The interpreter evaluates the graph (rounding to f32 after every op, as the device does) and,
 * alongside every value, an estimate of how far an f32 implementation may lie from the exact
 * result at each element: the propagated errors of the operands (through each op's derivative,
 * bounded with the actual values) plus the op's own rounding. Sums of R terms add
 * γ(R)·Σ|terms| with γ(R) = u·(2 + 2√R): that covers summation in any order (sequential,
 * chunked, tree) at the size of error seen in practice, which grows like √R for random rounding
 * rather than the worst case R. Transcendentals get the accuracy the WGSL spec allows or what
 * llvmpipe delivers, whichever is tighter in practice (see LOCAL below).
 *
 * A discontinuity (a comparison, floor, a float-to-int cast, a top-k ranking) whose operands lie
 * within the error of the boundary is a hazard: the two backends may legitimately take different
 * branches there, so the graph is ill-conditioned at that input and is not a valid test. An exact
 * tie of values that carry an error is a hazard too (f32 rounding can make nearly equal values
 * equal on one backend only), except where it is structural: x against itself (isnan) or
 * against max(x), as in argmax and in max's gradient. Ties of exact values (inputs, integers, copies of them) resolve the same way
 * everywhere and are compared.
 *
 * Movement, gather and scatter move errors with the values by running the interpreter's own
 * kernels on the error arrays.
 */
import type { TypedArray } from "../../src/dtype.ts";
import { toposort } from "../../src/ir/graph.ts";
import type { Node } from "../../src/ir/node.ts";
import type { OpArgs, OpName } from "../../src/ir/ops.ts";
import { type EvalContext, type Kernel, KERNELS } from "../../src/interp/kernels.ts";

/** Unit roundoff of f32. */
export const U = 2 ** -24;
/** Absolute floor per op: devices may flush subnormal results to zero. */
const TINY = 2 ** -125;

/** Rounding error allowed for a sum of R terms, per unit of Σ|terms|. */
export function gamma(R: number): number {
  return R <= 1 ? 0 : U * (2 + 2 * Math.sqrt(R));
}

/** Whether |v| is a power of two: scaling by it is exact (subnormals aside). */
function pow2(v: number): boolean {
  const a = Math.abs(v);
  return a > 0 && 2 ** Math.round(Math.log2(a)) === a;
}

/** An element where a discontinuous op's operands are within the error of its boundary. */
export interface Hazard {
  node: Node;
  index: number;
  /** Distance to the boundary on the interpreter. */
  margin: number;
  /** The error estimate of that distance. */
  error: number;
  what: string;
}

export interface Analysis {
  /** Interpreter values of the roots. */
  values: TypedArray[];
  /** Per-element error estimates of the roots; null where the result is exact. */
  errors: (Float64Array | null)[];
  hazards: Hazard[];
  /** The first non-constant node with a NaN or an infinity, if any. */
  nonFinite: Node | null;
}

type Err = Float64Array | null;

const WIDE: EvalContext = { wide: true };
const NARROW: EvalContext = { wide: false };

/** The node with another argument (to run a kernel on error arrays). */
function withArg<K extends OpName>(n: Node<K>, arg: OpArgs[K]): Node<K> {
  return Object.create(n, { arg: { value: arg } });
}

function run<K extends OpName>(n: Node<K>, inputs: TypedArray[]): Float64Array {
  return (KERNELS[n.op] as Kernel<K>)(n, inputs, WIDE) as Float64Array;
}

const absOf = (v: TypedArray): Float64Array => Float64Array.from(v as ArrayLike<number>, Math.abs);
const at = (e: Err, i: number): number => (e ? e[i] : 0);

/**
 * Evaluates `roots` on the interpreter with error estimates. `safety` scales the error when
 * deciding whether a discontinuity is too close to call.
 */
export function analyze(roots: readonly Node[], safety: number): Analysis {
  const order = toposort(roots, (n) => n.op === "buffer");
  const uses = new Map<Node, number>();
  for (const n of order) for (const s of n.src) uses.set(s, (uses.get(s) ?? 0) + 1);
  const rootSet = new Set(roots);
  const vals = new Map<Node, TypedArray>();
  const errs = new Map<Node, Err>();
  const hazards: Hazard[] = [];
  let nonFinite: Node | null = null;

  const hazard = (node: Node, index: number, margin: number, error: number, what: string) => {
    // At margin 0 only a real error counts (not the subnormal floor alone).
    if (margin <= safety * error && error > (margin === 0 ? 1e-30 : 0) && hazards.length < 20) {
      hazards.push({ node, index, margin, error, what });
    }
  };

  for (const n of order) {
    let v: TypedArray;
    if (n.op === "buffer") {
      if (!n.host) throw new Error("internal: fuzz analysis needs host buffers");
      v = n.host;
    } else {
      v = (KERNELS[n.op] as Kernel<OpName>)(n, n.src.map((s) => vals.get(s)!), NARROW);
    }
    vals.set(n, v);
    const e = n.dtype === "f32" || n.op === "topk" || isDiscrete(n)
      ? errorOf(n, v, vals, errs, hazard, safety)
      : null;
    errs.set(n, n.dtype === "f32" ? e : null);
    if (!nonFinite && n.dtype === "f32" && n.op !== "const") {
      for (let i = 0; i < v.length; i++) {
        if (!Number.isFinite(v[i])) {
          nonFinite = n;
          break;
        }
      }
    }
    for (const s of n.src) {
      const left = uses.get(s)! - 1;
      uses.set(s, left);
      if (left === 0 && !rootSet.has(s)) {
        vals.delete(s);
        errs.delete(s);
      }
    }
  }
  return {
    values: roots.map((r) => vals.get(r)!),
    errors: roots.map((r) => errs.get(r) ?? null),
    hazards,
    nonFinite,
  };
}

/** Non-float results computed from floats: their boundaries are checked. */
function isDiscrete(n: Node): boolean {
  const from = n.src[0]?.dtype;
  if (from !== "f32") return false;
  return ["lt", "le", "eq", "ne", "cast", "floor"].includes(n.op);
}

/** Whether `b` is a max or min reduction of `a` (seen through movement and stopGradient). */
function selectsFrom(b: Node, a: Node): boolean {
  let n = b;
  while (["reshape", "expand", "permute", "stopgrad"].includes(n.op)) n = n.src[0];
  return n.op === "reduce" && (n.arg as OpArgs["reduce"]).op !== "sum" && n.src[0] === a;
}

/**
 * The margin to use for a value at distance `d` from an integer boundary. An exactly integral
 * value with an error may land on either side, unless its error is one correctly rounded op on
 * exact operands (x·4 of an exact x): add, sub and mul round correctly on every backend, so that
 * value is reproduced exactly.
 */
function onInteger(d: number, x: number, e: number): number {
  if (d !== 0) return d;
  return e <= 1.01 * (U * Math.abs(x) + TINY) ? 1 : Number.MIN_VALUE;
}

type HazardFn = (node: Node, index: number, margin: number, error: number, what: string) => void;

/** The error estimate of node `n` with value `y`. */
function errorOf(
  n: Node,
  y: TypedArray,
  vals: Map<Node, TypedArray>,
  errs: Map<Node, Err>,
  hazard: HazardFn,
  safety: number,
): Err {
  const src = n.src;
  const V = (i: number) => vals.get(src[i])!;
  const E = (i: number) => errs.get(src[i]) ?? null;
  const size = y.length;
  const make = (f: (i: number) => number): Float64Array => {
    const out = new Float64Array(size);
    for (let i = 0; i < size; i++) out[i] = f(i);
    return out;
  };
  const local = (c: number) => (i: number) => c * U * Math.abs(y[i]) + TINY;

  switch (n.op) {
    case "const":
    case "buffer":
    case "param":
    case "iota":
    case "randbits":
    case "randbitsKeyed":
      return null;
    case "neg":
    case "abs":
    case "reshape":
    case "stopgrad":
    case "custom":
    case "mark":
    case "arg":
      return E(0);
    case "exp": {
      const x = V(0), ex = E(0);
      // WGSL: 3 + 2|x| ULP.
      return make((i) =>
        Math.abs(y[i]) * (Math.expm1(at(ex, i)) + (4 + 2 * Math.abs(x[i])) * U) + TINY
      );
    }
    case "log": {
      const x = V(0), ex = E(0);
      return make((i) => {
        const room = Math.abs(x[i]) - at(ex, i);
        if (room <= 0 || Math.abs(x[i]) <= safety * at(ex, i)) {
          hazard(n, i, Math.abs(x[i]), at(ex, i), "log near 0");
        }
        // WGSL: absolute 2^-21 on [0.5, 2], 3 ULP elsewhere.
        return at(ex, i) / Math.max(room, 1e-30) + 2 ** -21 + 4 * U * Math.abs(y[i]);
      });
    }
    case "sqrt": {
      const x = V(0), ex = E(0);
      return make((i) => {
        const e = at(ex, i);
        const lo = Math.max(0, x[i] - e);
        const prop = lo > 0 ? Math.min(e / (2 * Math.sqrt(lo)), Math.sqrt(e)) : Math.sqrt(e);
        return prop + 4 * U * Math.abs(y[i]) + TINY;
      });
    }
    case "recip": {
      const x = V(0), ex = E(0);
      return make((i) => {
        const ax = Math.abs(x[i]), e = at(ex, i);
        if (ax <= safety * e) hazard(n, i, ax, e, "reciprocal near 0");
        return e / (ax * Math.max(ax - e, 1e-30)) + 3 * U * Math.abs(y[i]) + TINY;
      });
    }
    case "sin":
    case "cos":
      // WGSL allows 2^-11 absolute on [-π, π]; llvmpipe delivers about 2 ULP of 1.
      return make((i) => at(E(0), i) + 4 * U + 2 * U * Math.abs(y[i]));
    case "tanh":
      // llvmpipe's tanh is accurate in absolute terms (about 2.5·u), not relative ones near 0.
      return make((i) => at(E(0), i) + 4 * U + 2 * U * Math.abs(y[i]));
    case "erf":
      // The kernels use Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, plus f32 evaluation.
      return make((i) => (2 / Math.sqrt(Math.PI)) * at(E(0), i) + 4e-7);
    case "floor": {
      const x = V(0), ex = E(0);
      if (ex) {
        for (let i = 0; i < size; i++) {
          const f = x[i] - Math.floor(x[i]);
          const d = Math.min(f, 1 - f);
          hazard(n, i, onInteger(d, x[i], ex[i]), ex[i], "floor at an integer");
        }
      }
      return null;
    }
    case "cast": {
      const from = src[0].dtype, to = n.dtype;
      if (from === "f32" && to !== "f32") {
        const x = V(0), ex = E(0);
        if (ex) {
          for (let i = 0; i < size; i++) {
            let d: number;
            if (to === "bool") d = Math.abs(x[i]);
            else {
              const f = Math.abs(x[i]) - Math.floor(Math.abs(x[i]));
              d = x[i] === 0 ? 1 : onInteger(Math.min(f, 1 - f), x[i], ex[i]);
            }
            hazard(n, i, d, ex[i], `cast to ${to}`);
          }
        }
        return null;
      }
      if (to === "f32" && (from === "i32" || from === "u32")) {
        let big = false;
        for (let i = 0; i < size && !big; i++) big = Math.abs(y[i]) > 2 ** 24;
        return big ? make(local(1)) : null;
      }
      return null;
    }
    case "checkIndex":
    case "not":
    case "and":
    case "or":
    case "xor":
    case "mod":
    case "bitcast":
      return null;
    case "add":
    case "sub": {
      if (n.dtype !== "f32") return null;
      const a = V(0), b = V(1), ea = E(0), eb = E(1);
      // Adding an exact 0 rounds nothing.
      return make((i) => {
        const exact = (a[i] === 0 && !at(ea, i)) || (b[i] === 0 && !at(eb, i));
        return at(ea, i) + at(eb, i) + (exact ? 0 : U * Math.abs(y[i])) + TINY;
      });
    }
    case "mul": {
      if (n.dtype !== "f32") return null;
      const a = V(0), b = V(1), ea = E(0), eb = E(1);
      // Scaling by an exact power of two rounds nothing.
      return make((i) => {
        const exact = (pow2(a[i]) && !at(ea, i)) || (pow2(b[i]) && !at(eb, i));
        return Math.abs(b[i]) * at(ea, i) + Math.abs(a[i]) * at(eb, i) + at(ea, i) * at(eb, i) +
          (exact ? 0 : U * Math.abs(y[i])) + TINY;
      });
    }
    case "div": {
      if (n.dtype !== "f32") return null;
      const b = V(1), ea = E(0), eb = E(1);
      return make((i) => {
        const ab = Math.abs(b[i]), e = at(eb, i);
        if (ab <= safety * e) hazard(n, i, ab, e, "division by nearly 0");
        const exact = pow2(b[i]) && !e;
        return (at(ea, i) + Math.abs(y[i]) * e) / Math.max(ab - e, 1e-30) +
          (exact ? 0 : 3 * U * Math.abs(y[i])) + TINY;
      });
    }
    case "pow": {
      const a = V(0), b = V(1), ea = E(0), eb = E(1);
      return make((i) => {
        const ai = Math.abs(a[i]), bi = b[i], yi = Math.abs(y[i]);
        // d/da = b·a^(b−1), d/db = a^b·ln|a| (written so that a → 0 stays finite).
        const da = ai === 0 ? 0 : Math.abs(bi) * Math.pow(ai, bi - 1);
        const db = yi === 0 ? 0 : yi * Math.abs(Math.log(ai));
        const own = (4 + 2 * Math.abs(bi * Math.log2(ai || 1))) * U * yi;
        return da * at(ea, i) + db * at(eb, i) + own + TINY;
      });
    }
    case "max":
    case "min": {
      const ea = E(0), eb = E(1);
      if (!ea && !eb) return null;
      return make((i) => Math.max(at(ea, i), at(eb, i)));
    }
    case "lt":
    case "le":
    case "eq":
    case "ne": {
      const a = V(0), b = V(1), ea = E(0), eb = E(1);
      // x against itself (isnan) or against max(x) (argmax, max's gradient) ties the same way
      // on every backend.
      const structural = src[0] === src[1] || selectsFrom(src[1], src[0]) ||
        selectsFrom(src[0], src[1]);
      if (ea || eb) {
        for (let i = 0; i < size; i++) {
          const d = Math.abs(a[i] - b[i]);
          if (d === 0 && structural) continue;
          hazard(n, i, d, at(ea, i) + at(eb, i), `comparison ${n.op}`);
        }
      }
      return null;
    }
    case "where": {
      const c = V(0), ea = E(1), eb = E(2);
      if (!ea && !eb) return null;
      return make((i) => (c[i] ? at(ea, i) : at(eb, i)));
    }
    case "reduce": {
      if (n.dtype !== "f32") return null;
      const arg = n.arg as OpArgs["reduce"];
      const ex = E(0);
      // max/min select one element: its error, at most the largest error of the group.
      if (arg.op !== "sum") {
        return ex ? run(withArg(n as Node<"reduce">, { ...arg, op: "max" }), [ex]) : null;
      }
      const R = arg.axes.reduce((p, a) => p * src[0].shape[a], 1);
      const mags = run(n as Node<"reduce">, [absOf(V(0))]);
      const prop = ex ? run(n as Node<"reduce">, [ex]) : null;
      // A sum of one term is that term.
      const g = gamma(R), own = R > 1 ? U : 0;
      return make((i) => at(prop, i) + g * mags[i] + own * Math.abs(y[i]) + TINY);
    }
    case "cumsum": {
      if (n.dtype !== "f32") return null;
      const arg = n.arg as OpArgs["cumsum"];
      const ex = E(0);
      const mags = run(n as Node<"cumsum">, [absOf(V(0))]);
      const prop = ex ? run(n as Node<"cumsum">, [ex]) : null;
      const g = gamma(src[0].shape[arg.axis]);
      return make((i) => at(prop, i) + g * mags[i] + U * Math.abs(y[i]) + TINY);
    }
    case "permute":
    case "expand":
    case "slice": {
      const ex = E(0);
      return ex ? run(n, [ex]) : null;
    }
    case "pad": {
      const ex = E(0);
      if (!ex) return null;
      const arg = n.arg as OpArgs["pad"];
      return run(withArg(n as Node<"pad">, { ...arg, value: 0 }), [ex]);
    }
    case "gather": {
      const ex = E(0);
      return ex ? run(n, [ex, V(1)]) : null;
    }
    case "scatterAdd": {
      const eu = E(0), idx = V(1);
      const arg = n.arg as OpArgs["scatterAdd"];
      const mags = run(n, [absOf(V(0)), idx]);
      const prop = eu ? run(n, [eu, idx]) : null;
      const g = gamma(src[0].shape[arg.axis]);
      return make((i) => at(prop, i) + g * mags[i] + U * Math.abs(y[i]) + TINY);
    }
    case "matmul": {
      const a = V(0), b = V(1), ea = E(0), eb = E(1);
      const K = src[0].shape[src[0].shape.length - 1];
      const aa = absOf(a), ab = absOf(b);
      const mags = run(n, [aa, ab]);
      const pa = ea ? run(n, [ea, ab]) : null;
      const pb = eb ? run(n, [aa, eb]) : null;
      const pab = ea && eb ? run(n, [ea, eb]) : null;
      const g = gamma(K);
      return make((i) =>
        at(pa, i) + at(pb, i) + at(pab, i) + g * mags[i] + U * Math.abs(y[i]) + TINY
      );
    }
    case "topk": {
      topkHazards(n as Node<"topk">, V(0), E(0), hazard);
      return null;
    }
    default:
      throw new Error(`fuzz error analysis: no rule for ${n.op}`);
  }
}

/**
 * Top-k picks the k largest in order: every adjacent pair among the first k + 1 of a row must
 * be separated by more than their errors, or the ranking may differ between backends.
 */
function topkHazards(n: Node<"topk">, x: TypedArray, ex: Err, hazard: HazardFn): void {
  if (!ex) return;
  const cols = n.src[0].shape[n.src[0].shape.length - 1];
  const k = n.arg.k;
  const rows = cols === 0 ? 0 : x.length / cols;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const order = Array.from({ length: cols }, (_, i) => i);
    order.sort((p, q) => x[base + q] - x[base + p] || p - q);
    for (let j = 0; j < Math.min(k, cols - 1); j++) {
      const p = base + order[j], q = base + order[j + 1];
      hazard(n, p, Math.abs(x[p] - x[q]), ex[p] + ex[q], "top-k ranking");
    }
  }
}
