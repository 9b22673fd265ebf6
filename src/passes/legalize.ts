/**
 * Device legalization: rewrites that keep every kernel's per-invocation loops short. llvmpipe
 * silently stops any shader loop after 65,535 iterations (docs/architecture.md §3), so long reductions,
 * long-K matmuls, long scans and wide top-k become two-level computations here, at graph level,
 * where the interpreter can check them against the original.
 */
import type { Node } from "../ir/node.ts";
import type { OpArgs } from "../ir/ops.ts";
import { rewriteGraph } from "../ir/rewrite.ts";
import { prod } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add, mul } from "../ops/elementwise.ts";
import { prim } from "../ops/prim.ts";
import { iotaAlong } from "../ops/meta.ts";
import { sortedScatterAdd } from "./scatter.ts";

export interface LegalizeLimits {
  /** Longest reduction done in one loop. */
  reduce: number;
  /** Longest K of one matmul. */
  matmulK: number;
  /** Longest scan done in one loop. */
  scan: number;
  /** Largest k·n of one top-k row. */
  topk: number;
}

export const DEFAULT_LIMITS: LegalizeLimits = {
  reduce: 4096,
  matmulK: 32768,
  scan: 8192,
  topk: 16384,
};

const T = (n: Node) => new Tensor(n);

function identityOf(kind: "sum" | "max" | "min", dtype: string): number {
  if (kind === "sum") return 0;
  if (dtype === "f32") return kind === "max" ? -Infinity : Infinity;
  if (dtype === "i32") return kind === "max" ? -2147483648 : 2147483647;
  return kind === "max" ? 0 : 4294967295;
}

function reshape(t: Tensor, shape: number[]): Tensor {
  return t.shape.join() === shape.join() ? t : prim("reshape", [t], { shape });
}

function permute(t: Tensor, perm: number[]): Tensor {
  return perm.every((p, i) => p === i) ? t : prim("permute", [t], { perm });
}

/** Moves `axes` to the end and flattens them: [kept..., R]. */
function flattenAxes(x: Tensor, axes: number[]): { t: Tensor; kept: number[]; R: number } {
  const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const R = axes.reduce((p, a) => p * x.shape[a], 1);
  const keptShape = kept.map((i) => x.shape[i]);
  const t = reshape(permute(x, [...kept, ...axes]), [...keptShape, R]);
  return { t, kept: keptShape, R };
}

function chunkFor(R: number, limit: number): number {
  return Math.min(limit, Math.max(256, Math.ceil(Math.sqrt(R))));
}

function legalizeReduce(n: Node<"reduce">, lim: LegalizeLimits): Node | undefined {
  const { op, axes } = n.arg;
  const x = T(n.src[0]);
  const R = axes.reduce((p, a) => p * x.shape[a], 1);
  if (R <= lim.reduce) return undefined;
  const { t, kept } = flattenAxes(x, axes);
  const C = chunkFor(R, lim.reduce);
  const S = Math.ceil(R / C);
  const rank = kept.length;
  let y = t;
  if (S * C !== R) {
    const pads = [
      ...kept.map(() => [0, 0] as [number, number]),
      [0, S * C - R] as [number, number],
    ];
    y = prim("pad", [y], { pads, value: identityOf(op, x.dtype) });
  }
  y = reshape(y, [...kept, S, C]);
  y = prim("reduce", [y], { op, axes: [rank + 1] });
  y = reshape(y, [...kept, S]);
  // The second level may itself be long; legalize it too.
  const second = prim("reduce", [y], { op, axes: [rank] }).node as Node<"reduce">;
  const r2 = legalizeReduce(second, lim) ?? second;
  return reshape(T(r2), [...n.shape]).node;
}

function legalizeMatmul(n: Node<"matmul">, lim: LegalizeLimits): Node | undefined {
  const a = T(n.src[0]), b = T(n.src[1]);
  const r = a.ndim;
  const K = a.shape[r - 1];
  if (K <= lim.matmulK) return undefined;
  const Kc = Math.min(lim.matmulK, 16384);
  const S = Math.ceil(K / Kc);
  const batch = a.shape.slice(0, r - 2);
  const M = a.shape[r - 2], N = b.shape[r - 1];
  const zeros = batch.map(() => [0, 0] as [number, number]);
  let A = a, B = b;
  if (S * Kc !== K) {
    A = prim("pad", [A], { pads: [...zeros, [0, 0], [0, S * Kc - K]], value: 0 });
    B = prim("pad", [B], { pads: [...zeros, [0, S * Kc - K], [0, 0]], value: 0 });
  }
  const nb = batch.length;
  const bIdx = batch.map((_, i) => i);
  A = permute(reshape(A, [...batch, M, S, Kc]), [...bIdx, nb + 1, nb, nb + 2]);
  B = reshape(B, [...batch, S, Kc, N]);
  const partial = prim("matmul", [A, B], null);
  const summed = prim("reduce", [partial], { op: "sum", axes: [nb] });
  return reshape(summed, [...n.shape]).node;
}

function legalizeCumsum(n: Node<"cumsum">, lim: LegalizeLimits): Node | undefined {
  const { axis, reverse, exclusive } = n.arg;
  const x = T(n.src[0]);
  const L = x.shape[axis];
  if (L <= lim.scan) return undefined;
  const { t, kept } = flattenAxes(x, [axis]);
  const rows = prod(kept);
  const C = chunkFor(L, lim.scan);
  const S = Math.ceil(L / C);
  let y = reshape(t, [rows, L]);
  if (S * C !== L) y = prim("pad", [y], { pads: [[0, 0], [0, S * C - L]], value: 0 });
  y = reshape(y, [rows, S, C]);
  const inner = prim("cumsum", [y], { axis: 2, reverse, exclusive });
  const totals = reshape(prim("reduce", [y], { op: "sum", axes: [2] }), [rows, S]);
  const offNode = prim("cumsum", [totals], { axis: 1, reverse, exclusive: true }).node as Node<
    "cumsum"
  >;
  const offs = T(legalizeCumsum(offNode, lim) ?? offNode);
  const out = add(inner, prim("expand", [reshape(offs, [rows, S, 1])], { shape: [rows, S, C] }));
  let z = reshape(out, [rows, S * C]);
  if (S * C !== L) z = prim("slice", [z], { starts: [0, 0], ends: [rows, L] });
  z = reshape(z, [...kept, L]);
  // Undo the move of `axis` to the end.
  const r = x.ndim;
  const perm = new Array<number>(r);
  const order = [...x.shape.map((_, i) => i).filter((i) => i !== axis), axis];
  order.forEach((src, pos) => (perm[src] = pos));
  return permute(z, perm).node;
}

function legalizeTopk(n: Node<"topk">, lim: LegalizeLimits): Node | undefined {
  const x = T(n.src[0]);
  const { k } = n.arg;
  const r = x.ndim;
  const nLast = x.shape[r - 1];
  if (k * nLast <= lim.topk) return undefined;
  const C = Math.max(k, Math.floor(lim.topk / k));
  const S = Math.ceil(nLast / C);
  // Chunking must shrink the candidate set; with a large k it cannot (checked at kernel build).
  if (C >= nLast || S * k >= nLast) return undefined;
  const lead = x.shape.slice(0, r - 1);
  const zeros = lead.map(() => [0, 0] as [number, number]);
  let y = x;
  if (S * C !== nLast) {
    // Pads must rank after every real element: a float row pads with -inf, an integer row
    // with the dtype's minimum; ties go to the lower index, so real elements equal to the pad
    // still come first.
    y = prim("pad", [y], {
      pads: [...zeros, [0, S * C - nLast]],
      value: identityOf("max", x.dtype),
    });
  }
  y = reshape(y, [...lead, S, C]);
  const local = prim("topk", [y], { k });
  const vals = prim("gather", [y, local], { axis: r });
  const base = mul(iotaAlong([...lead, S, k], r - 1, "i32"), C);
  const globalIdx = add(local, base);
  const flatVals = reshape(vals, [...lead, S * k]);
  const flatIdx = reshape(globalIdx, [...lead, S * k]);
  const selNode = prim("topk", [flatVals], { k }).node as Node<"topk">;
  const sel = T(legalizeTopk(selNode, lim) ?? selNode);
  return prim("gather", [flatIdx, sel], { axis: r - 1 }).node;
}

/** A weight gradient over more rows than one loop may visit: sum of row-range pieces. */
function legalizeWgrad(n: Node<"groupedWgrad">, lim: LegalizeLimits): Node | undefined {
  const [r0, r1] = n.arg.rows;
  const step = lim.matmulK;
  if (r1 - r0 <= step) return undefined;
  const srcs = n.src.map(T);
  let total: Tensor | null = null;
  for (let c = r0; c < r1; c += step) {
    const part = prim("groupedWgrad", srcs, { rows: [c, Math.min(c + step, r1)] });
    total = total ? add(total, part) : part;
  }
  return total!.node;
}

/** A grouped matmul with a K longer than one loop may run: a sum over K slices. */
function legalizeGrouped(n: Node<"groupedMatmul">, lim: LegalizeLimits): Node | undefined {
  const [a, b, off] = n.src.map(T);
  const K = a.shape[1];
  if (K <= lim.matmulK) return undefined;
  let total: Tensor | null = null;
  for (let c = 0; c < K; c += lim.matmulK) {
    const e = Math.min(c + lim.matmulK, K);
    const as = prim("slice", [a], { starts: [0, c], ends: [a.shape[0], e] });
    const bs = prim("slice", [b], { starts: [0, c, 0], ends: [b.shape[0], e, b.shape[2]] });
    const part = prim("groupedMatmul", [as, bs, off], null);
    total = total ? add(total, part) : part;
  }
  return total!.node;
}

/** Below this many updates per target line, a scatter-add is a fused reduction (no atomics). */
const SMALL_SCATTER = 32;

/**
 * scatterAdd with few updates per line (e.g. the gradient of picking k of N router scores):
 * out[o, j, i] = Σ_a upd[o, a, i] · [idx[o, a, i] = j] as one deterministic fused reduction,
 * instead of a zero fill plus float atomics.
 */
function legalizeScatter(n: Node<"scatterAdd">, lim: LegalizeLimits): Node | undefined {
  const { axis, shape } = n.arg;
  const [upd, idx] = n.src.map(T);
  const m = upd.shape[axis], width = shape[axis];
  if (upd.dtype === "bool") return undefined;
  if (m > SMALL_SCATTER) {
    // Integer sums are exact in any order (atomics are fine); f32 ones are sorted by target.
    if (upd.dtype !== "f32") return undefined;
    const sorted = sortedScatterAdd(n, lim.matmulK);
    // The sort's own reductions and scans may be long: legalize them too.
    return legalize([sorted], lim, (s) => s === n.src[0] || s === n.src[1]).roots[0];
  }
  const outer = prod(upd.shape.slice(0, axis)), inner = prod(upd.shape.slice(axis + 1));
  const full = [outer, m, width, inner];
  const spread = (t: Tensor) => prim("expand", [reshape(t, [outer, m, 1, inner])], { shape: full });
  const j = iotaAlong(full, 2, "i32");
  const hit = prim("eq", [spread(idx), j], null);
  const zero = prim("const", [], { value: 0, shape: full, dtype: upd.dtype });
  const picked = prim("where", [hit, spread(upd), zero], null);
  const summed = prim("reduce", [picked], { op: "sum", axes: [1] });
  return reshape(summed, [...shape]).node;
}

/** Rewrites `roots` so that every loop a kernel runs stays within `limits`. */
export function legalize(
  roots: readonly Node[],
  limits: LegalizeLimits = DEFAULT_LIMITS,
  stop?: (n: Node) => boolean,
): { roots: Node[]; map: Map<Node, Node> } {
  return rewriteGraph(roots, (n) => {
    switch (n.op) {
      case "reduce":
        return legalizeReduce(n as Node<"reduce">, limits);
      case "matmul":
        return legalizeMatmul(n as Node<"matmul">, limits);
      case "cumsum":
        return legalizeCumsum(n as Node<"cumsum">, limits);
      case "topk":
        return legalizeTopk(n as Node<"topk">, limits);
      case "scatterAdd":
        return legalizeScatter(n as Node<"scatterAdd">, limits);
      case "groupedWgrad":
        return legalizeWgrad(n as Node<"groupedWgrad">, limits);
      case "groupedMatmul":
        return legalizeGrouped(n as Node<"groupedMatmul">, limits);
    }
    return undefined;
  }, stop);
}

export type { OpArgs };
