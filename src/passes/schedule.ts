/**
 * Scheduling: which nodes are realized into buffers, and so which fused kernels run. The rules
 * are explicit (design.md §4):
 *  - outputs are realized; inputs (params, buffers) already are;
 *  - routine ops (matmul, top-k, scan, scatter-add) run as templates over realized inputs; a
 *    a matmul's elementwise consumers fuse into its write (epilogue) when they all end in one
 *    kernel;
 *  - a value feeding two or more kernels is realized unless it is cheap to recompute;
 *  - reductions fuse into their consumers as row kernels when every reduction of a kernel shares
 *    one row domain (softmax, norms); otherwise lowering reports a conflict and they are realized;
 *  - a kernel never binds more storage buffers than the device allows.
 * Without fusion every op is its own kernel (the reference for fused-vs-unfused tests).
 */
import type { Node } from "../ir/node.ts";
import type { OpArgs } from "../ir/ops.ts";
import { categoryOf } from "../ir/ops.ts";
import { consumers, toposort } from "../ir/graph.ts";

export interface ScheduleOptions {
  fuse: boolean;
  /** Nodes that must be realized (from earlier lowering conflicts). */
  forced?: ReadonlySet<Node>;
}

/** A matmul operand: a realized node, possibly stored transposed and broadcast over the batch. */
export interface MatmulOperand {
  node: Node;
  batchBroadcast: boolean;
  /** The node holds the operand with its last two dims swapped. */
  transposed: boolean;
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

export type PlannedKernel =
  | { kind: "fused"; root: Node }
  | { kind: "matmul"; root: Node; mm: Node; a: MatmulOperand; b: MatmulOperand }
  | { kind: "grouped"; root: Node; mm: Node; a: RowOperand; b: Node; offsets: Node }
  | { kind: "wgrad"; root: Node; a: RowOperand; g: Node; offsets: Node }
  | { kind: "topk" | "kthLargest" | "cumsum" | "scatterAdd"; root: Node }
  | { kind: "attention" | "attentionBwdQ" | "attentionBwdKV"; root: Node };

export interface Schedule {
  /** Input leaves, in first-use order. */
  inputs: Node[];
  realized: Set<Node>;
  kernels: PlannedKernel[];
}

const ROUTINES = new Set([
  "matmul",
  "groupedMatmul",
  "groupedWgrad",
  "topk",
  "kthLargest",
  "attention",
  "attentionBwdQ",
  "attentionBwdKV",
  "cumsum",
  "scatterAdd",
]);
/** Routines whose single elementwise consumer can fuse into their write. */
const MATMULS = new Set(["matmul", "groupedMatmul"]);
const IDENTITY = new Set(["stopgrad", "mark", "arg", "custom"]);
const TRANSCENDENTAL = new Set(["exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "pow", "recip"]);

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
  for (const r of roots) realize(r);
  for (const f of opts.forced ?? []) realize(f);

  const matmulOperands = new Map<Node, [MatmulOperand, MatmulOperand]>();
  const rowOperands = new Map<Node, RowOperand>();
  for (const n of order) {
    if (isInput(n)) continue;
    if (!opts.fuse && !isLeafConst(n)) realize(n);
    if (ROUTINES.has(n.op)) {
      if (!MATMULS.has(n.op)) realize(n);
      if (n.op === "groupedMatmul" || n.op === "groupedWgrad") {
        const g = opts.fuse ? gatheredRows(n.src[0]) : null;
        const a: RowOperand = g ?? { node: throughIdentity(n.src[0]) };
        realize(a.node);
        if (a.rowIndex) realize(throughIdentity(a.rowIndex));
        if (a.rowIndex) a.rowIndex = throughIdentity(a.rowIndex);
        rowOperands.set(n, a);
        n.src.slice(1).forEach((s) => realize(throughIdentity(s)));
      } else if (n.op === "matmul") {
        const ops = n.src.map((s, i): MatmulOperand => {
          const o = matmulOperand(s);
          const view = throughIdentity(s);
          // x·Wᵀ (NT) runs at about half the speed of NN: a small transposed B (a weight) is
          // cheaper to copy once into [K, N] than to read transposed M/tile times.
          const r = n.shape.length;
          const work = n.size * n.src[0].shape[r - 1]; // multiply-adds
          if (
            i === 1 && o.transposed && !o.batchBroadcast && swapsLastTwo(view) &&
            o.node.size <= SMALL_TRANSPOSE && work >= MIN_TRANSPOSE_WORK
          ) {
            realize(view);
            return { node: view, batchBroadcast: false, transposed: false };
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
    const loops = n.op === "reduce" || MATMULS.has(n.op);
    if (f.size > 1 && (loops || cost(n, realized, isInput) > 8)) {
      realize(n);
      feeds.set(n, new Set([n]));
      continue;
    }
    if (MATMULS.has(n.op)) {
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

  const kernels: PlannedKernel[] = [];
  for (const n of order) {
    if (!realized.has(n)) continue;
    if (
      n.op === "topk" || n.op === "kthLargest" || n.op === "cumsum" || n.op === "scatterAdd" ||
      n.op === "attention" || n.op === "attentionBwdQ" || n.op === "attentionBwdKV"
    ) {
      kernels.push({ kind: n.op, root: n });
      continue;
    }
    if (n.op === "groupedWgrad") {
      kernels.push({
        kind: "wgrad",
        root: n,
        a: rowOperands.get(n)!,
        g: n.src[1],
        offsets: n.src[2],
      });
      continue;
    }
    const mm = MATMULS.has(n.op) ? n : fusedMatmul(n, realized);
    if (mm && mm.op === "groupedMatmul") {
      kernels.push({
        kind: "grouped",
        root: n,
        mm,
        a: rowOperands.get(mm)!,
        b: mm.src[1],
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
    if (MATMULS.has(n.op)) found = n;
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
  else if (n.op === "reduce" || ROUTINES.has(n.op)) c = 0;
  else {
    const own = categoryOf(n.op) === "movement" || IDENTITY.has(n.op)
      ? 0
      : TRANSCENDENTAL.has(n.op)
      ? 4
      : 1;
    c = own;
    for (const s of n.src) c += cost(s, realized, isInput, memo);
  }
  memo.set(n, c);
  return c;
}

export type { OpArgs };
