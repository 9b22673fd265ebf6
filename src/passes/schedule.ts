/**
 * Scheduling: which nodes are realized into buffers, and so which fused kernels run. The rules
 * are explicit (docs/architecture.md §1):
 *  - outputs are realized; inputs (params, buffers) already are;
 *  - routine ops (matmul, top-k, scan, scatter-add) run as templates over realized inputs, but a
 *    matmul's elementwise consumers fuse into its write (epilogue) when they all end in one
 *    kernel, and a cheap elementwise producer of an operand into its reads (prologue);
 *  - a value feeding two or more kernels is realized unless it is cheap to recompute;
 *  - reductions fuse into their consumers as row kernels when every reduction of a kernel shares
 *    one row domain (softmax, norms); otherwise lowering reports a conflict and they are realized;
 *  - a kernel never binds more storage buffers than the device allows.
 * Without fusion every op is its own kernel (the reference for fused-vs-unfused tests).
 */
import type { Node } from "../ir/node.ts";
import type { KernelKind, OpArgs, OpName } from "../ir/ops.ts";
import { categoryOf, IDENTITY_OPS, OPS } from "../ir/ops.ts";
import { consumers, toposort } from "../ir/graph.ts";

export interface ScheduleOptions {
  fuse: boolean;
  /**
   * Realize constants too (with fusion off): a kernel then reads them from a buffer, so a driver
   * that assumes finite math cannot fold x·0 or x/0 away before the numerics check sees them.
   */
  realizeConstants?: boolean;
  /**
   * Fuse cheap elementwise producers into matmul reads (default true). The C target reads
   * operands through BLAS, which takes no hooks.
   */
  prologues?: boolean;
  /**
   * Copy a small transposed B so that x·Wᵀ runs as NN (default true): NT reads run at half
   * speed on llvmpipe; BLAS takes either layout at full speed.
   */
  transposeCopies?: boolean;
  /**
   * Grouped matmuls read a transposed expert weight in place and per-expert weight gradients
   * are written transposed when that is what their one consumer wants (default false): the C
   * target hands either layout to BLAS at full speed, so the transposing copies are pure cost.
   */
  groupedTransposes?: boolean;
  /**
   * Grouped kernels read a dispatch gather's rows in place through the row index (default
   * true). The C target copies gathered rows into a contiguous block for BLAS anyway; a gather
   * kernel of its own does that copy in parallel, once for every kernel that reads those rows.
   */
  gatherInPlace?: boolean;
  /** Nodes that must be realized (from earlier lowering conflicts). */
  forced?: ReadonlySet<Node>;
}

/** A matmul operand: a realized node, possibly stored transposed and broadcast over the batch. */
export interface MatmulOperand {
  node: Node;
  batchBroadcast: boolean;
  /** The node holds the operand with its last two dims swapped. */
  transposed: boolean;
  /**
   * The unrealized operand, an elementwise function of `node` (same shape, same element order)
   * that the template applies to each element it reads (a prologue); absent when `node` is read
   * as is.
   */
  prologue?: Node;
}

function swapsLastTwo(n: Node): boolean {
  if (n.op !== "permute") return false;
  const perm = (n.arg as OpArgs["permute"]).perm;
  const r = perm.length;
  return r >= 2 && perm[r - 2] === r - 1 && perm[r - 1] === r - 2 &&
    perm.slice(0, r - 2).every((p, i) => p === i);
}

/** Elements of a transposed B operand worth copying to run a matmul NN instead of NT. */
const SMALL_TRANSPOSE = 1 << 22;
/** …when the matmul is big enough (multiply-adds) for the copy's extra kernel to pay. */
const MIN_TRANSPOSE_WORK = 1 << 22;

/**
 * The most a prologue may cost (cost() units: 1 per arithmetic op, 4 per transcendental) per
 * element read. The register-blocked kernels read each element many times (an A element once
 * per column block, N/(4·C) times; a B element M/R times) and do only 4·C (A) or R (B)
 * multiply-adds per element read, so the prologue's share of the time does not shrink with size
 * while the kernel it saves does. Measured on llvmpipe at 1024³ (NN): x·s + b in A's prologue
 * costs nothing measurable, exp(x) about 8 % (several times its own kernel); at 512³ neither is
 * measurable. So a few arithmetic ops always fuse, a transcendental only into a matmul of at
 * most PROLOGUE_TRANSCENDENTAL_WORK multiply-adds, and longer chains (GELU, a normalization)
 * run once in their own kernel.
 */
const PROLOGUE_COST = 3;
const PROLOGUE_TRANSCENDENTAL_COST = 4;
const PROLOGUE_TRANSCENDENTAL_WORK = 1 << 26;

/** Peels transposes and whole-batch broadcasts off a matmul operand: both are free to read. */
export function matmulOperand(
  s: Node,
): { node: Node; batchBroadcast: boolean; transposed: boolean } {
  let node = s, batchBroadcast = false, transposed = false;
  for (;;) {
    if (IDENTITY.has(node.op)) {
      node = node.src[0];
      continue;
    }
    if (swapsLastTwo(node)) {
      transposed = !transposed;
      node = node.src[0];
      continue;
    }
    const under = batchBroadcastSource(node);
    if (under) {
      batchBroadcast = true;
      node = under;
      continue;
    }
    return { node, batchBroadcast, transposed };
  }
}

/** Rows of a grouped op's first operand: a realized matrix, optionally gathered by row index. */
export interface RowOperand {
  node: Node;
  rowIndex?: Node;
}

/** Templates that need nothing but their root: they read its sources as realized values. */
export type SimpleKernelKind = Exclude<KernelKind, "fused" | "matmul" | "grouped" | "wgrad">;

/** A template kernel of a routine whose sources it reads as realized values. */
export interface SimpleKernel {
  kind: SimpleKernelKind;
  root: Node;
}

export type PlannedKernel =
  | { kind: "fused"; root: Node }
  | { kind: "matmul"; root: Node; mm: Node; a: MatmulOperand; b: MatmulOperand }
  | {
    kind: "grouped";
    root: Node;
    mm: Node;
    a: RowOperand;
    b: Node;
    /** `b` holds each expert's matrix transposed ([E, N, K]). */
    bTransposed: boolean;
    offsets: Node;
  }
  | {
    kind: "wgrad";
    /** The groupedWgrad node, or the transpose of it that the kernel writes directly. */
    root: Node;
    wgrad: Node;
    a: RowOperand;
    g: Node;
    offsets: Node;
    /** The kernel writes each expert's gradient transposed ([E, N, K]): root is that view. */
    transposed: boolean;
  }
  | SimpleKernel;

/** The planned kernel of a given kind. */
export type KernelOf<K extends KernelKind> = K extends SimpleKernelKind ? SimpleKernel
  : Extract<PlannedKernel, { kind: K }>;

export interface Schedule {
  /** Input leaves, in first-use order. */
  inputs: Node[];
  realized: Set<Node>;
  kernels: PlannedKernel[];
}

/** Ops that run as a template kernel of their own (the op table says which). */
const isRoutine = (op: OpName) => OPS[op].kernel !== undefined;
/** Routines whose elementwise consumers can fuse into their write (matmul-like templates). */
const isMatmul = (op: OpName) => OPS[op].epilogue === true;
const IDENTITY = IDENTITY_OPS;

/** The value under identity wrappers (mark, stopgrad, custom, arg): what a routine really reads. */
export function throughIdentity(n: Node): Node {
  while (IDENTITY.has(n.op)) n = n.src[0];
  return n;
}

/** A view of a realized node that a matmul can read with a zero batch stride. */
export function batchBroadcastSource(op: Node): Node | null {
  if (op.op !== "expand") return null;
  let src = op.src[0];
  const r = op.shape.length;
  if (src.shape.slice(0, r - 2).some((d) => d !== 1)) return null;
  if (src.shape[r - 2] !== op.shape[r - 2] || src.shape[r - 1] !== op.shape[r - 1]) return null;
  // Leading size-1 dims added by a reshape of the real operand are free too.
  if (
    src.op === "reshape" && src.src[0].size === src.size &&
    src.src[0].shape.join() === src.shape.slice(src.shape.length - src.src[0].shape.length).join()
  ) {
    src = src.src[0];
  }
  return src;
}

/**
 * The base of a prologue: the one realized value that the f32 operand `e` computes from
 * elementwise at each of its own elements (through identities and reshapes, which keep the
 * element order, so a reshaped value is read in place), the rest being constants and reads of
 * smaller realized values (broadcast rows such as a scale and a shift); null when `e` is not of
 * that form. Transposes inside `e` are not followed: the template reads the base in `e`'s
 * layout.
 */
function prologueBase(e: Node, isLeaf: (n: Node) => boolean): Node | null {
  // The template hands a prologue a row and a column: a vector under a batch broadcast has none.
  if (e.dtype !== "f32" || e.shape.length < 2 || isLeaf(e)) return null;
  let base: Node | null = null, ok = true;
  const beside: Node[] = [];
  const seen = new Set<Node>();
  const aligned = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (isLeaf(n)) {
      ok &&= base === null && n.dtype === "f32"; // a second full-size read is not cheap
      base = n;
    } else if (IDENTITY.has(n.op)) aligned(n.src[0]);
    else if (isElementwise(n) || n.op === "reshape") n.src.forEach(aligned);
    else beside.push(n);
  };
  aligned(e);
  const cheap = (n: Node): boolean =>
    isLeaf(n)
      ? n.size < e.size
      : IDENTITY.has(n.op)
      ? cheap(n.src[0])
      : n.op === "const" || n.op === "iota" ||
        ((isElementwise(n) || categoryOf(n.op) === "movement") && n.src.every(cheap));
  return ok && beside.every(cheap) ? base : null;
}

/**
 * `takeRows(x, rows)` (a gather along axis 0 by a broadcast row index), seen through identity
 * nodes such as dispatch's custom-VJP wrapper: a grouped kernel reads x's rows in place.
 */
export function gatheredRows(s: Node): RowOperand | null {
  let n = s;
  while (IDENTITY.has(n.op)) n = n.src[0];
  if (n.op !== "gather" || (n.arg as OpArgs["gather"]).axis !== 0 || n.shape.length !== 2) {
    return null;
  }
  let idx = n.src[1];
  if (idx.op === "expand") idx = idx.src[0];
  if (idx.op !== "reshape" || idx.shape.length !== 2 || idx.shape[1] !== 1) return null;
  const rows = idx.src[0];
  if (rows.shape.length !== 1 || rows.dtype !== "i32") return null;
  return { node: throughIdentity(n.src[0]), rowIndex: rows };
}

export function schedule(
  roots: readonly Node[],
  isInput: (n: Node) => boolean,
  opts: ScheduleOptions,
): Schedule {
  const order = toposort(roots, isInput);
  const users = consumers(order);
  const realized = new Set<Node>();
  const inputs: Node[] = [];
  const isLeafConst = (n: Node) => n.op === "const" || n.op === "iota" || n.op === "randbits";
  for (const n of order) if (isInput(n)) inputs.push(n);
  const realize = (n: Node) => {
    if (!isInput(n)) realized.add(n);
  };
  const isLeaf = (n: Node) => realized.has(n) || isInput(n);
  for (const r of roots) realize(r);
  for (const f of opts.forced ?? []) realize(f);

  const matmulOperands = new Map<Node, [MatmulOperand, MatmulOperand]>();
  const rowOperands = new Map<Node, RowOperand>();
  /** Grouped matmuls whose B is read transposed in place: the stored matrix. */
  const transposedB = new Map<Node, Node>();
  /** Transposes of a weight gradient that its kernel writes directly: the groupedWgrad node. */
  const transposedWgrad = new Map<Node, Node>();
  const transposes = opts.fuse && opts.groupedTransposes === true;
  for (const n of order) {
    if (isInput(n)) continue;
    if (!opts.fuse && (!isLeafConst(n) || opts.realizeConstants)) realize(n);
    // An index check runs once, as its own kernel, whether or not a consumer's value ends up
    // depending on the index (a gather from a constant does not), so it always reports.
    if (n.op === "checkIndex") realize(n);
    if (isRoutine(n.op)) {
      const kind = OPS[n.op].kernel;
      const only = users.get(n) ?? [];
      if (
        kind === "wgrad" && transposes && only.length === 1 && swapsLastTwo(only[0]) &&
        !roots.includes(n)
      ) {
        // The weight is stored [E, N, K] (x·Wᵀ): write its gradient that way, not [E, K, N]
        // and then a transposing copy.
        transposedWgrad.set(only[0], n);
        realize(only[0]);
      } else if (!isMatmul(n.op)) realize(n);
      if (kind === "grouped" || kind === "wgrad") {
        const g = opts.fuse && opts.gatherInPlace !== false ? gatheredRows(n.src[0]) : null;
        const a: RowOperand = g ?? { node: throughIdentity(n.src[0]) };
        realize(a.node);
        if (a.rowIndex) realize(throughIdentity(a.rowIndex));
        if (a.rowIndex) a.rowIndex = throughIdentity(a.rowIndex);
        rowOperands.set(n, a);
        const b = throughIdentity(n.src[1]);
        if (kind === "grouped" && transposes && swapsLastTwo(b)) {
          transposedB.set(n, throughIdentity(b.src[0]));
          realize(throughIdentity(b.src[0]));
        } else realize(b);
        n.src.slice(2).forEach((s) => realize(throughIdentity(s)));
      } else if (kind === "matmul") {
        const ops = n.src.map((s, i): MatmulOperand => {
          const o = matmulOperand(s);
          const view = throughIdentity(s);
          // x·Wᵀ (NT) runs at about half the speed of NN: a small transposed B (a weight) is
          // cheaper to copy once into [K, N] than to read transposed M/tile times.
          const r = n.shape.length;
          const work = n.size * n.src[0].shape[r - 1]; // multiply-adds
          if (
            opts.transposeCopies !== false &&
            i === 1 && o.transposed && !o.batchBroadcast && swapsLastTwo(view) &&
            o.node.size <= SMALL_TRANSPOSE && work >= MIN_TRANSPOSE_WORK
          ) {
            realize(view);
            return { node: view, batchBroadcast: false, transposed: false };
          }
          // A cheap elementwise producer over one realized base fuses into the reads.
          const base = opts.fuse && opts.prologues !== false ? prologueBase(o.node, isLeaf) : null;
          const budget = work <= PROLOGUE_TRANSCENDENTAL_WORK
            ? PROLOGUE_TRANSCENDENTAL_COST
            : PROLOGUE_COST;
          if (base && cost(o.node, realized, isInput) <= budget) {
            return { ...o, node: base, prologue: o.node };
          }
          realize(o.node);
          return o;
        });
        matmulOperands.set(n, [ops[0], ops[1]]);
      } else {
        n.src.forEach((s) => realize(throughIdentity(s)));
      }
    }
    if (n.op === "gather" && opts.fuse && cost(n.src[0], realized, isInput) > 2) realize(n.src[0]);
  }

  // Values feeding several kernels are realized unless recomputing them is cheap.
  const feeds = new Map<Node, Set<Node>>();
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    if (isInput(n)) continue;
    if (realized.has(n)) {
      feeds.set(n, new Set([n]));
      continue;
    }
    const f = new Set<Node>();
    for (const c of users.get(n) ?? []) for (const k of feeds.get(c) ?? []) f.add(k);
    const loops = n.op === "reduce" || isMatmul(n.op);
    if (f.size > 1 && (loops || cost(n, realized, isInput) > 8)) {
      realize(n);
      feeds.set(n, new Set([n]));
      continue;
    }
    if (isMatmul(n.op)) {
      // Epilogue fusion: every consumer elementwise, f32, on the matmul's own shape, and all of
      // them inside one kernel (GELU reads its input twice: x·Φ(x) is still one epilogue).
      const us = users.get(n) ?? [];
      const ok = us.length >= 1 && f.size === 1 &&
        us.every((u) => isElementwise(u) && u.dtype === "f32" && u.shape.join() === n.shape.join());
      if (!ok) {
        realize(n);
        feeds.set(n, new Set([n]));
        continue;
      }
    }
    feeds.set(n, f);
  }

  // A prologue whose operand a later routine realized after all (or part of it, so that the
  // base changed) just reads the realized operand.
  for (const ops of matmulOperands.values()) {
    ops.forEach((o, i) => {
      if (o.prologue && prologueBase(o.prologue, isLeaf) !== o.node) {
        realize(o.prologue);
        ops[i] = { ...o, node: o.prologue, prologue: undefined };
      }
    });
  }

  const kernels: PlannedKernel[] = [];
  for (const n of order) {
    if (!realized.has(n)) continue;
    const kind = OPS[n.op].kernel;
    if (kind && kind !== "matmul" && kind !== "grouped" && kind !== "wgrad") {
      kernels.push({ kind, root: n });
      continue;
    }
    const wgrad = kind === "wgrad" ? n : transposedWgrad.get(n);
    if (wgrad) {
      kernels.push({
        kind: "wgrad",
        root: n,
        wgrad,
        a: rowOperands.get(wgrad)!,
        g: wgrad.src[1],
        offsets: wgrad.src[2],
        transposed: wgrad !== n,
      });
      continue;
    }
    const mm = isMatmul(n.op) ? n : fusedMatmul(n, realized);
    if (mm && OPS[mm.op].kernel === "grouped") {
      kernels.push({
        kind: "grouped",
        root: n,
        mm,
        a: rowOperands.get(mm)!,
        b: transposedB.get(mm) ?? mm.src[1],
        bTransposed: transposedB.has(mm),
        offsets: mm.src[2],
      });
      continue;
    }
    if (mm) {
      const [a, b] = matmulOperands.get(mm)!;
      kernels.push({ kind: "matmul", root: n, mm, a, b });
      continue;
    }
    kernels.push({ kind: "fused", root: n });
  }
  return { inputs, realized, kernels };
}

function isElementwise(n: Node): boolean {
  const c = categoryOf(n.op);
  return c === "unary" || c === "binary" || c === "ternary";
}

/** The unrealized matmul inside a kernel root's group, if any. */
function fusedMatmul(root: Node, realized: ReadonlySet<Node>): Node | null {
  let found: Node | null = null;
  const seen = new Set<Node>();
  const visit = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n !== root && realized.has(n)) return;
    if (isMatmul(n.op)) found = n;
    else n.src.forEach(visit);
  };
  visit(root);
  return found;
}

/** Rough cost of recomputing `n` inside a consumer (ALU ops until realized values). */
function cost(
  n: Node,
  realized: ReadonlySet<Node>,
  isInput: (n: Node) => boolean,
  memo = new Map<Node, number>(),
): number {
  if (realized.has(n) || isInput(n)) return 0;
  const m = memo.get(n);
  if (m !== undefined) return m;
  let c: number;
  if (n.op === "const" || n.op === "iota") c = 0;
  else if (n.op === "randbits") c = 6;
  else if (n.op === "randbitsKeyed") c = 6 + cost(n.src[0], realized, isInput, memo);
  // Routines and reductions are realized (or run as the root of their own kernel): a consumer
  // reads their result, it never recomputes them. Their status is not decided yet when the
  // reverse pass asks, and counting them as expensive would realize every cheap op on top of
  // a matmul. (A reduction that cannot be read where it is needed fails lowering and is
  // realized then.)
  else if (n.op === "reduce" || isRoutine(n.op)) c = 0;
  else {
    const own = categoryOf(n.op) === "movement" || IDENTITY.has(n.op) ? 0 : OPS[n.op].cost ?? 1;
    c = own;
    for (const s of n.src) c += cost(s, realized, isInput, memo);
  }
  memo.set(n, c);
  return c;
}

export type { OpArgs };
