/**
 * Lowering: a fused group of graph nodes (a kernel root and its non-realized ancestors) becomes
 * scalar expressions. Movement ops turn into index arithmetic on coordinates; realized nodes
 * become loads; reductions become accumulator variables of row kernels.
 */
import type { DType } from "../src/dtype.ts";
import type { Node } from "../src/ir/node.ts";
import type { OpArgs } from "../src/ir/ops.ts";
import { stridesOf } from "../src/shape.ts";
import {
  bin,
  bitcast,
  cast,
  checkedIndex,
  cst,
  type Exp,
  i32,
  load,
  type ScalarType,
  select,
  threefry,
  threefryKeyed,
  un,
  variable,
} from "./exp.ts";
import type { ElementwiseKernel, RowKernel, RowReduction } from "./kernel.ts";

/**
 * The most loop iterations one invocation may run in total (llvmpipe silently stops every loop
 * after 65,535; docs/architecture.md §3), with a margin.
 */
export const MAX_LOOP_ITERATIONS = 60000;

/** Thrown when a group cannot be lowered as scheduled; the scheduler realizes `node` and retries. */
export class LoweringConflict extends Error {
  constructor(readonly node: Node, why: string) {
    super(`cannot fuse ${node.op}${JSON.stringify(node.shape)}: ${why}`);
  }
}

export function scalarType(d: DType): ScalarType {
  return d;
}

/** Unravel results, by coordinates and shape, so that linearize can undo unravel exactly. */
const unravelOrigin = new Map<string, Exp>();

/** Forgets recorded unravels (call when the expression table is reset). */
export function resetLowerCaches(): void {
  unravelOrigin.clear();
}

const coordKey = (coords: readonly Exp[], shape: readonly number[]) =>
  `${coords.map((c) => c.id).join(",")}|${shape.join(",")}`;

/** Linear row-major index of `coords` in `shape` (size-1 dims contribute nothing). */
export function linearize(coords: readonly Exp[], shape: readonly number[]): Exp {
  if (!shape.some((d) => d > 1)) return i32(0);
  const origin = unravelOrigin.get(coordKey(coords, shape));
  if (origin) return origin;
  const st = stridesOf(shape);
  let acc = i32(0);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    acc = bin("add", acc, bin("mul", coords[i], i32(st[i])));
  }
  return acc;
}

/** Coordinates of linear index `lin` in `shape`. */
export function unravel(lin: Exp, shape: readonly number[]): Exp[] {
  const st = stridesOf(shape);
  const coords = shape.map((d, i) => {
    if (d === 1) return i32(0);
    const q = st[i] === 1 ? lin : bin("div", lin, i32(st[i]));
    return i === 0 ? q : bin("mod", q, i32(d));
  });
  // Only a shape with a non-trivial dim determines its linear index from the coordinates.
  if (shape.some((d) => d > 1)) unravelOrigin.set(coordKey(coords, shape), lin);
  return coords;
}

/** For a reshape that only adds or removes size-1 dims, the source coordinates directly. */
function squeezeCoords(
  coords: readonly Exp[],
  from: readonly number[],
  to: readonly number[],
): Exp[] | null {
  const big = from.filter((d) => d !== 1), small = to.filter((d) => d !== 1);
  if (big.length !== small.length || big.some((d, i) => d !== small[i])) return null;
  const nonOne = coords.filter((_, i) => from[i] !== 1);
  let k = 0;
  return to.map((d) => (d === 1 ? i32(0) : nonOne[k++]));
}

/**
 * The index checks of one kernel, by kernel-local id (the order they were lowered in): which
 * `checkIndex` node each id stands for, so that a failure can name the user's op.
 */
export class KernelChecks {
  readonly nodes: Node[] = [];
  /** The id of `n`'s check, allocated on first use. */
  idOf(n: Node): number {
    let i = this.nodes.indexOf(n);
    if (i < 0) {
      i = this.nodes.length;
      this.nodes.push(n);
    }
    return i;
  }
}

interface ReduceAcc {
  acc: Exp;
  kept: Exp[];
}

export class Lowerer {
  #memo = new Map<string, Exp>();
  constructor(
    /** The slot of a node read from a buffer, or undefined when computed in this kernel. */
    readonly slotOf: (n: Node) => number | undefined,
    /** Reductions computed by this kernel, by node. */
    readonly reduces: Map<Node, ReduceAcc> = new Map(),
    /** The node this kernel computes (never loaded even though it is realized). */
    readonly root?: Node,
    /** Values a template already holds, such as the element a matmul prologue was given. */
    readonly given: ReadonlyMap<Node, Exp> = new Map(),
    /** Where index checks are registered; null where the kernel cannot report them. */
    readonly checks: KernelChecks | null = null,
  ) {}

  lower(n: Node, coords: readonly Exp[]): Exp {
    const key = `${n.serial}:${coords.map((c) => c.id).join(",")}`;
    let e = this.#memo.get(key);
    if (!e) {
      e = this.#lower(n, coords);
      this.#memo.set(key, e);
    }
    return e;
  }

  #lower(n: Node, coords: readonly Exp[]): Exp {
    const t = scalarType(n.dtype);
    const v = this.given.get(n);
    if (v) return v;
    if (n !== this.root) {
      const slot = this.slotOf(n);
      if (slot !== undefined) return load(slot, t, linearize(coords, n.shape));
    }
    const src = n.src;
    const L = (i: number, c: readonly Exp[] = coords) => this.lower(src[i], c);
    switch (n.op) {
      case "const":
        return cst((n.arg as OpArgs["const"]).value, t);
      case "iota":
        return cast(coords[(n.arg as OpArgs["iota"]).axis], t);
      case "randbitsKeyed": {
        const a = n.arg as OpArgs["randbitsKeyed"];
        return threefryKeyed(
          L(0, [i32(0)]),
          L(0, [i32(1)]),
          a.stream,
          cast(linearize(coords, n.shape), "u32"),
        );
      }
      case "randbits": {
        const a = n.arg as OpArgs["randbits"];
        return threefry(a.key0, a.key1, a.stream, cast(linearize(coords, n.shape), "u32"));
      }
      case "buffer":
      case "param":
        throw new LoweringConflict(n, "input leaf without a binding");
      case "neg":
      case "exp":
      case "log":
      case "sqrt":
      case "recip":
      case "sin":
      case "cos":
      case "tanh":
      case "erf":
      case "abs":
      case "floor":
      case "not":
        return un(n.op, L(0));
      case "checkIndex": {
        const checks = this.checks;
        const x = L(0);
        if (!checks) {
          if (x.lo >= 0 && x.hi < (n.arg as OpArgs["checkIndex"]).size) return x;
          throw new LoweringConflict(n, "an index check in a template's hook");
        }
        return checkedIndex(x, (n.arg as OpArgs["checkIndex"]).size, () => checks.idOf(n));
      }
      case "cast":
        return cast(L(0), t);
      case "bitcast":
        return bitcast(L(0), t);
      case "ne":
        // x != x is the NaN test; spell it by bits (WGSL may assume no NaNs in comparisons).
        if (src[0] === src[1] && src[0].dtype === "f32") return un("isnan", L(0));
        return bin("ne", L(0), L(1));
      case "add":
      case "sub":
      case "mul":
      case "div":
      case "pow":
      case "max":
      case "min":
      case "mod":
      case "lt":
      case "le":
      case "eq":
      case "and":
      case "or":
      case "xor":
        return bin(n.op, L(0), L(1));
      case "where":
        return select(L(0), L(1), L(2));
      case "reduce": {
        const r = this.reduces.get(n);
        if (!r) throw new LoweringConflict(n, "a reduction read inside another kernel");
        const axes = (n.arg as OpArgs["reduce"]).axes;
        const kept = coords.filter((_, i) => !axes.includes(i));
        if (kept.length !== r.kept.length || kept.some((c, i) => c !== r.kept[i])) {
          throw new LoweringConflict(n, "read at another row than the one being reduced");
        }
        return r.acc;
      }
      case "reshape":
        return L(
          0,
          squeezeCoords(coords, n.shape, src[0].shape) ??
            unravel(linearize(coords, n.shape), src[0].shape),
        );
      case "permute": {
        const perm = (n.arg as OpArgs["permute"]).perm;
        const sc = new Array<Exp>(perm.length);
        perm.forEach((p, i) => (sc[p] = coords[i]));
        return L(0, sc);
      }
      case "expand":
        return L(0, src[0].shape.map((d, i) => (d === 1 ? i32(0) : coords[i])));
      case "slice": {
        const starts = (n.arg as OpArgs["slice"]).starts;
        return L(0, coords.map((c, i) => bin("add", c, i32(starts[i]))));
      }
      case "pad": {
        const { pads, value } = n.arg as OpArgs["pad"];
        const sc = coords.map((c, i) => bin("sub", c, i32(pads[i][0])));
        let valid = cst(1, "bool");
        sc.forEach((c, i) => {
          if (pads[i][0] === 0 && pads[i][1] === 0) return;
          valid = bin(
            "and",
            valid,
            bin("and", bin("le", i32(0), c), bin("lt", c, i32(src[0].shape[i]))),
          );
        });
        // Clamp so that the (discarded) out-of-range read still addresses the buffer.
        const clamped = sc.map((c, i) =>
          pads[i][0] === 0 && pads[i][1] === 0
            ? c
            : bin("min", bin("max", c, i32(0)), i32(Math.max(0, src[0].shape[i] - 1)))
        );
        return select(valid, L(0, clamped), cst(value, t));
      }
      case "gather": {
        const axis = (n.arg as OpArgs["gather"]).axis;
        const idx = L(1);
        const sc = [...coords];
        sc[axis] = bin("min", bin("max", idx, i32(0)), i32(src[0].shape[axis] - 1));
        return L(0, sc);
      }
      case "stopgrad":
      case "mark":
      case "arg":
      case "custom":
        return L(0);
      case "matmul":
      case "groupedMatmul": {
        // Inside a matmul template's epilogue the product is the accumulator, read at the
        // element being written.
        const r = this.reduces.get(n);
        if (r && coords.length === r.kept.length && coords.every((c, i) => c === r.kept[i])) {
          return r.acc;
        }
        throw new LoweringConflict(n, `${n.op} runs as its own kernel`);
      }
      case "groupedWgrad":
      case "segmentSum":
      case "attention":
      case "attentionBwdQ":
      case "attentionBwdKV":
      case "topk":
      case "kthLargest":
      case "cumsum":
      case "scatterAdd":
        throw new LoweringConflict(n, `${n.op} runs as its own kernel`);
    }
  }
}

/** The non-realized reductions a kernel root depends on, sources first. */
export function groupReductions(root: Node, isRealized: (n: Node) => boolean): Node[] {
  const out: Node[] = [];
  const seen = new Set<Node>();
  const visit = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n !== root && isRealized(n)) return;
    n.src.forEach(visit);
    if (n.op === "reduce") out.push(n);
  };
  visit(root);
  return out;
}

/** How a target wants kernels lowered. */
export interface LowerOptions {
  /**
   * Index an elementwise kernel's elements (a row kernel's rows) by two variables, `<name>_o`
   * over the outer elements and `<name>_i` along the last axis, so that a C loop nest over them
   * reads each row through affine, vectorizable indices (the C target).
   */
  splitLastAxis?: boolean;
}

/** Rows shorter than this, or fewer of them, stay one flat loop. */
const MIN_SPLIT_LENGTH = 4;
const MIN_SPLIT_ROWS = 16;

/** The length of the last axis when indexing by (outer, last axis) pays; 0 otherwise. */
function splitLength(shape: readonly number[]): number {
  const size = shape.reduce((p, d) => p * d, 1);
  const last = shape[shape.length - 1] ?? 1;
  return last >= MIN_SPLIT_LENGTH && size / last >= MIN_SPLIT_ROWS ? last : 0;
}

/** The flat index `name_o · inner + name_i` of a split loop over `n` elements. */
function splitIndex(name: string, n: number, inner: number): Exp {
  const o = variable(`${name}_o`, "i32", 0, n / inner - 1);
  const i = variable(`${name}_i`, "i32", 0, inner - 1);
  return bin("add", bin("mul", o, i32(inner)), i);
}

/**
 * Lowers a kernel root: elementwise when it contains no reduction, otherwise a row kernel whose
 * reductions all share one source shape and axes.
 */
export function lowerGroup(
  root: Node,
  isRealized: (n: Node) => boolean,
  slotOf: (n: Node) => number | undefined,
  outSlot: number,
  label: string,
  checks: KernelChecks = new KernelChecks(),
  opts: LowerOptions = {},
): ElementwiseKernel | RowKernel {
  const reds = groupReductions(root, isRealized);
  const out = { slot: outSlot, type: scalarType(root.dtype) };
  if (reds.length === 0) {
    const lw = new Lowerer(slotOf, new Map(), root, undefined, checks);
    const inner = opts.splitLastAxis ? splitLength(root.shape) : 0;
    if (inner) {
      const lin = splitIndex("gidx", root.size, inner);
      const value = lw.lower(root, unravel(lin, root.shape));
      return { kind: "elementwise", label, n: root.size, out, value, inner };
    }
    const gidx = variable("gidx", "i32", 0, root.size - 1);
    const value = lw.lower(root, unravel(gidx, root.shape));
    return { kind: "elementwise", label, n: root.size, out, value };
  }
  // The reduction nearest the root stays in this kernel; any earlier one over another domain
  // must be realized first.
  const last = reds[reds.length - 1];
  const srcShape = last.src[0].shape;
  const axes = (last.arg as OpArgs["reduce"]).axes;
  for (const r of reds) {
    const a = (r.arg as OpArgs["reduce"]).axes;
    if (r.src[0].shape.join() !== srcShape.join() || a.join() !== axes.join()) {
      throw new LoweringConflict(r, "reductions over different shapes in one kernel");
    }
  }
  const keptShape = srcShape.filter((_, i) => !axes.includes(i));
  const redShape = axes.map((a) => srcShape[a]);
  const rows = keptShape.reduce((p, d) => p * d, 1);
  const R = redShape.reduce((p, d) => p * d, 1);
  // llvmpipe stops an invocation's loops after 65,535 iterations in total, sequential loops
  // included: a row kernel runs one loop of R per reduction (plus one to store per element).
  // Too many for one kernel: realize an earlier reduction, which takes its sources along.
  const perElement = root.size !== rows && root.shape.join() === srcShape.join();
  const allowed = Math.floor(MAX_LOOP_ITERATIONS / Math.max(1, R)) - (perElement ? 1 : 0);
  if (reds.length > allowed && allowed >= 1) {
    throw new LoweringConflict(
      reds[reds.length - allowed - 1],
      `${reds.length} reductions of ${R} would loop past the per-invocation cap`,
    );
  }
  const innerRows = opts.splitLastAxis ? splitLength(keptShape) : 0;
  const row = innerRows
    ? splitIndex("row", rows, innerRows)
    : variable("row", "i32", 0, Math.max(0, rows - 1));
  const r = variable("r", "i32", 0, Math.max(0, R - 1));
  const kept = unravel(row, keptShape);
  const rc = unravel(r, redShape);
  const merged: Exp[] = [];
  let ki = 0, ri = 0;
  for (let i = 0; i < srcShape.length; i++) merged.push(axes.includes(i) ? rc[ri++] : kept[ki++]);
  const accs = new Map<Node, ReduceAcc>();
  const reductions: RowReduction[] = [];
  reds.forEach((red, i) => {
    const lw = new Lowerer(slotOf, new Map(accs), root, undefined, checks);
    const value = lw.lower(red.src[0], merged);
    const type = scalarType(red.dtype);
    const acc = `acc${i}`;
    reductions.push({ kind: (red.arg as OpArgs["reduce"]).op, value, acc, type });
    accs.set(red, { acc: variable(acc, type), kept });
  });
  const lw = new Lowerer(slotOf, accs, root, undefined, checks);
  if (root.size === rows) {
    // One output per row: index the root by the row (its shape may drop or add size-1 dims).
    const value = lw.lower(root, unravel(row, root.shape));
    return {
      kind: "row",
      label,
      rows,
      R,
      reductions,
      out,
      output: { perElement: false, value, index: row },
      ...(innerRows ? { innerRows } : {}),
    };
  }
  if (root.shape.join() === srcShape.join()) {
    const value = lw.lower(root, merged);
    return {
      kind: "row",
      label,
      rows,
      R,
      reductions,
      out,
      output: { perElement: true, value, index: linearize(merged, srcShape) },
      ...(innerRows ? { innerRows } : {}),
    };
  }
  throw new LoweringConflict(
    reds[reds.length - 1],
    "the kernel's output is not per row or per element",
  );
}
