/**
 * The routing table of dropless MoE: from top-k indices, a histogram of per-expert counts, an
 * exclusive scan of offsets, and a stable rank within each expert give every (token, slot) its
 * destination row in expert-contiguous order (algorithms of MegaBlocks and tinygrad's MoE
 * routing, without a sort over all T·k entries and without host readback). Rows of one expert
 * keep token order, so runs are deterministic.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { arange, zeros } from "../ops/creation.ts";
import { concat } from "../ops/movement.ts";
import {
  checkIndex,
  cumsum,
  gatherTrusted,
  oneHot,
  scatterAddTrusted,
  takeRowsTrusted,
} from "../ops/indexing.ts";
import { describe } from "../ops/prim.ts";
import { stopGradient } from "../ops/meta.ts";

export interface RoutingTable {
  /** Experts (N) and slots per token (k). */
  numExperts: number;
  k: number;
  /** [N] i32 (token, slot) pairs per expert. */
  counts: Tensor;
  /** [N+1] i32 exclusive scan of counts: expert e owns rows offsets[e] ≤ r < offsets[e+1]. */
  offsets: Tensor;
  /** [T·k] i32: the row of entry t·k + j (token t, slot j). */
  destRow: Tensor;
  /** [T·k] i32: the inverse: which entry each row holds. */
  srcEntry: Tensor;
  /** [T·k] i32: the token each row holds (srcEntry / k). */
  tokenOfRow: Tensor;
}

/**
 * Builds the routing table for `indices` ([T, k] i32 experts per token).
 *
 * @example
 * ```ts
 * const table = mj.moe.routingTable(indices, 8);
 * await table.destRow.data(); // a permutation of 0..T·k-1
 * ```
 */
export function routingTable(indices: Tensor, numExperts: number): RoutingTable {
  if (!(indices instanceof Tensor) || indices.dtype !== "i32" || indices.ndim !== 2) {
    fail(
      "moe.routingTable",
      `expected indices i32[T, k], got ${
        indices instanceof Tensor ? describe(indices) : typeof indices
      }`,
    );
  }
  if (!Number.isInteger(numExperts) || numExperts < 1) {
    fail("moe.routingTable", `numExperts must be a positive integer, got ${numExperts}`);
  }
  const [T, k] = indices.shape;
  const P = T * k;
  // Every later index is computed from these: one check here guards them all (top-k indices
  // over at most numExperts scores are in range by construction).
  let flat = stopGradient(indices).reshape([P]);
  const src = indices.node.op === "topk" ? indices.node.src[0] : null;
  if (!src || src.shape[src.shape.length - 1] > numExperts) {
    flat = checkIndex("moe.routingTable", flat, numExperts, "the experts");
  }
  const hot = oneHot(flat, numExperts, "i32"); // [P, N]
  const counts = hot.sum(0);
  const offsets = concat([zeros([1], { dtype: "i32" }), cumsum(counts, 0)], 0);
  // Stable rank: how many earlier entries chose the same expert.
  const before = cumsum(hot, 0, { exclusive: true }); // [P, N]
  const rank = gatherTrusted(before, 1, flat.reshape([P, 1])).reshape([P]);
  const destRow = takeRowsTrusted(offsets, flat).add(rank);
  // The inverse permutation: every row receives exactly one entry, so the integer scatter is exact.
  const srcEntry = scatterAddTrusted(arange(P), 0, destRow, [P]);
  const tokenOfRow = k === 1 ? srcEntry : srcEntry.div(k);
  return { numExperts, k, counts, offsets, destRow, srcEntry, tokenOfRow };
}
