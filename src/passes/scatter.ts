/**
 * Deterministic f32 scatter-add. Adding many updates into one target with float atomics gives
 * results that depend on thread timing (float addition is not associative), so two identical
 * runs would differ. Instead the updates are sorted stably by target (a counting sort with
 * integer histograms, whose results are exact in any order) and each target sums its segment in
 * the original update order: the same bits every run, on every adapter that runs the same
 * kernels. All of it is graph-level, so the interpreter checks the rewrite like any other.
 */
import type { Node } from "../ir/node.ts";
import { prod } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add, eq, lt, mul } from "../ops/elementwise.ts";
import { prim } from "../ops/prim.ts";
import { iotaAlong } from "../ops/meta.ts";

const T = (n: Node) => new Tensor(n);

/** Entries of the per-chunk digit histogram, which bounds the digit width of each pass. */
const HIST_BUDGET = 1 << 21;

/**
 * The chunk length and digit width of the sort of R keys of `bitsNeeded` bits. A pass costs
 * about R·(C + 12) (each position's in-chunk rank loops over its chunk; a dozen small kernels
 * touch every position), and smaller chunks mean more of them, so narrower digits and more
 * passes: the cheapest total wins.
 */
function sortPlan(R: number, bitsNeeded: number): { C: number; bits: number } {
  let best = { C: 1, bits: 1, cost: Infinity };
  for (const C0 of [8, 16, 32, 64, 128, 256]) {
    const C = Math.min(C0, R);
    const S = Math.ceil(R / C);
    const bits = Math.max(1, Math.min(bitsNeeded, Math.floor(Math.log2(HIST_BUDGET / S))));
    const cost = Math.ceil(bitsNeeded / bits) * R * (C + 12);
    if (cost < best.cost) best = { C, bits, cost };
  }
  return best;
}

function i32Const(v: number, shape: readonly number[]): Tensor {
  return prim("const", [], { value: v, shape: [...shape], dtype: "i32" });
}

function reshape(t: Tensor, shape: number[]): Tensor {
  return t.shape.join() === shape.join() ? t : prim("reshape", [t], { shape });
}

/** An integer scatter-add (exact whatever the order, so atomics are fine). */
function scatterInt(upd: Tensor, axis: number, idx: Tensor, shape: number[]): Tensor {
  return prim("scatterAdd", [upd, idx], { axis, shape });
}

function cumsumExclusive(t: Tensor, axis: number): Tensor {
  return prim("cumsum", [t], { axis, reverse: false, exclusive: true });
}

/**
 * The original positions of `keys` ([R] i32 in [0, K)) sorted stably by key, and the exclusive
 * scan of the key counts ([K + 1]): key k's positions are order[offsets[k] .. offsets[k+1]).
 * An LSD radix sort: each pass is a stable counting sort by one digit, with per-chunk
 * histograms, their scans, and each position's rank among equal digits earlier in its chunk.
 */
export function stableOrder(keys: Tensor, K: number): { order: Tensor; offsets: Tensor } {
  const R = keys.shape[0];
  const counts = scatterInt(i32Const(1, [R]), 0, keys, [K]);
  const scan = cumsumExclusive(prim("pad", [counts], { pads: [[0, 1]], value: 0 }), 0);
  if (R === 0) return { order: keys, offsets: scan };
  const bitsNeeded = Math.max(1, Math.ceil(Math.log2(K + 1)));
  const { C, bits } = sortPlan(R, bitsNeeded);
  const S = Math.ceil(R / C);
  const Rp = S * C;
  // Pads get the key K, past every real one, so they sort last and are cut off.
  let cur = Rp === R ? keys : prim("pad", [keys], { pads: [[0, Rp - R]], value: K });
  let pos = iotaAlong([Rp], 0, "i32");
  const inChunk = iotaAlong([S, C, C], 1, "i32");
  const other = iotaAlong([S, C, C], 2, "i32");
  const earlier = lt(other, inChunk); // [s, c, c']: c' < c
  for (let shift = 0; shift < bitsNeeded; shift += bits) {
    const width = Math.min(bits, bitsNeeded - shift);
    const B = 2 ** width;
    let digit = cur;
    if (shift > 0) digit = prim("div", [digit, i32Const(2 ** shift, [Rp])], null);
    if (shift + width < 31) digit = prim("mod", [digit, i32Const(B, [Rp])], null);
    const d2 = reshape(digit, [S, C]);
    const hist = scatterInt(i32Const(1, [S, C]), 1, d2, [S, B]);
    const digitStart = cumsumExclusive(prim("reduce", [hist], { op: "sum", axes: [0] }), 1);
    const base = add(prim("expand", [digitStart], { shape: [S, B] }), cumsumExclusive(hist, 0));
    const same = eq(
      prim("expand", [reshape(d2, [S, C, 1])], { shape: [S, C, C] }),
      prim("expand", [reshape(d2, [S, 1, C])], { shape: [S, C, C] }),
    );
    const hit = prim("and", [same, earlier], null);
    const hits = prim("where", [hit, i32Const(1, [S, C, C]), i32Const(0, [S, C, C])], null);
    const rank = reshape(prim("reduce", [hits], { op: "sum", axes: [2] }), [S, C]);
    const dest = reshape(add(prim("gather", [base, d2], { axis: 1 }), rank), [Rp]);
    // dest is a permutation: every target receives exactly one value, so the sum is a move.
    pos = scatterInt(pos, 0, dest, [Rp]);
    cur = scatterInt(cur, 0, dest, [Rp]);
  }
  const order = Rp === R ? pos : prim("slice", [pos], { starts: [0], ends: [R] });
  return { order, offsets: scan };
}

/**
 * The row index of a scatter whose index is constant along the axes after `axis` (a row
 * scatter, like takeRows' gradient): [outer · m] i32, or null.
 */
function rowIndexOf(idx: Node, axis: number): Tensor | null {
  if (idx.op !== "expand") return null;
  const src = idx.src[0];
  const r = idx.shape.length;
  for (let i = 0; i < r; i++) {
    if (i <= axis ? src.shape[i] !== idx.shape[i] : src.shape[i] !== 1) return null;
  }
  return reshape(T(src), [prod(idx.shape.slice(0, axis + 1))]);
}

/**
 * The scatter-add `n` (f32) as a sort by target plus segment sums over at most `maxRows`
 * positions per kernel (pieces are added in order).
 */
export function sortedScatterAdd(n: Node<"scatterAdd">, maxRows: number): Node {
  const { axis, shape } = n.arg;
  const upd = T(n.src[0]);
  const outer = prod(upd.shape.slice(0, axis)), m = upd.shape[axis];
  const inner = prod(upd.shape.slice(axis + 1));
  const width = shape[axis];
  const rows = rowIndexOf(n.src[1], axis);
  let keys: Tensor, x: Tensor, K: number;
  if (rows) {
    // One row of `inner` values per (o, a), bound for row o·width + index.
    const o = iotaAlong([outer, m], 0, "i32");
    keys = reshape(add(reshape(rows, [outer, m]), mul(o, width)), [outer * m]);
    x = reshape(upd, [outer * m, inner]);
    K = outer * width;
  } else {
    // Every element on its own, bound for (o·width + index)·inner + i.
    const sh = [outer, m, inner];
    const o = iotaAlong(sh, 0, "i32"), i = iotaAlong(sh, 2, "i32");
    const idx = reshape(T(n.src[1]), sh);
    keys = reshape(add(mul(add(mul(o, width), idx), inner), i), [outer * m * inner]);
    x = reshape(upd, [outer * m * inner, 1]);
    K = outer * width * inner;
  }
  const { order, offsets } = stableOrder(keys, K);
  const P = keys.shape[0];
  let total: Tensor | null = null;
  for (let r0 = 0; r0 < P || total === null; r0 += maxRows) {
    const part = prim("segmentSum", [x, order, offsets], {
      rows: [Math.min(r0, P), Math.min(r0 + maxRows, P)],
    });
    total = total ? add(total, part) : part;
  }
  return reshape(total, [...shape]).node;
}
