/**
 * k-th largest along an axis without sorting. On WebGPU it is a radix select over the float
 * bits (codegen/templates/select.ts): four passes of per-chunk 256-bin histograms and a walk
 * down the bins, O(n) per column and no loop longer than 8,192 rows, so it scales to columns of
 * 65,536 tokens (BIP's per-expert threshold). The interpreter sorts.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { constant, describe, normAxis, prim } from "./prim.ts";

/**
 * The `rank`-th largest value (1 = the maximum) along `axis`, for every other position; -inf
 * where the axis has fewer than `rank` elements. Equal values count separately (the 2nd largest
 * of [5, 5, 1] is 5); NaN counts as larger than +Infinity, as in topk.
 *
 * @example
 * ```ts
 * const thresholds = mj.kthLargest(scores, 129, 0); // per column of [T, N]: the 129th largest
 * ```
 */
export function kthLargest(x: Tensor, rank: number, axis = 0): Tensor {
  if (!(x instanceof Tensor) || x.dtype !== "f32" || x.ndim < 1) {
    fail(
      "kthLargest",
      `expected an f32 tensor with at least one axis, got ${
        x instanceof Tensor ? describe(x) : typeof x
      }`,
    );
  }
  if (!Number.isInteger(rank) || rank < 1) {
    fail("kthLargest", `rank must be an integer ≥ 1, got ${rank}`);
  }
  const a = normAxis("kthLargest", axis, x.ndim, x.shape);
  // Work on [n, cols] with the selected axis first.
  const perm = [a, ...x.shape.map((_, i) => i).filter((i) => i !== a)];
  const rest = perm.slice(1).map((i) => x.shape[i]);
  const n = x.shape[a];
  const cols = rest.reduce((p, d) => p * d, 1);
  if (rank > n) return constant(-Infinity, rest, "f32");
  return prim("kthLargest", [x.permute(perm).reshape([n, cols])], { rank }).reshape(rest);
}
