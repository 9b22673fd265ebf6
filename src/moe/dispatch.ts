/**
 * Moving token rows into expert order and back. Both directions are gathers; their backward
 * passes are gathers too (the gradient of a permutation is the inverse permutation), so nothing
 * needs float atomics and results are deterministic.
 *
 * Fusion on WebGPU: the dispatch gather is read inside the grouped matmul (a row-index prologue),
 * the activation runs in its epilogue, and the weighted un-permute (× routing weight, summed over
 * the k slots) is one gather kernel over the down matmul's rows. Writing that sum from the matmul
 * itself would need float atomics, which WGSL lacks (docs/architecture.md §3).
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { customVjp } from "../autodiff/custom.ts";
import { takeRowsTrusted as takeRows } from "../ops/indexing.ts";
import { prim } from "../ops/prim.ts";
import { describe } from "../ops/prim.ts";
import type { RoutingTable } from "./table.ts";

const dispatchRows = customVjp({
  name: "moe.dispatch",
  fwd: (x: Tensor, tokenOfRow: Tensor, _destRow: Tensor, _k: number) => takeRows(x, tokenOfRow),
  bwd: (_saved, g, [x, _tok, destRow, k]) => {
    const [T, d] = (x as Tensor).shape;
    // dx[t] = Σ_j g[destRow[t·k + j]]
    const dx = takeRows(g as Tensor, destRow as Tensor).reshape([T, k as number, d]).sum(1);
    return [dx, null, null, null];
  },
});

/**
 * Permutes token rows into expert-contiguous order: row r of the result is `x[tokenOfRow[r]]`
 * ([T, d] → [T·k, d]). Its backward gathers each token's k rows and sums them.
 *
 * @example
 * ```ts
 * const xs = mj.moe.dispatch(x, table); // [T·k, d], expert e's rows at offsets[e]..offsets[e+1]
 * ```
 */
export function dispatch(x: Tensor, table: RoutingTable): Tensor {
  if (!(x instanceof Tensor) || x.ndim !== 2 || x.dtype !== "f32") {
    fail(
      "moe.dispatch",
      `expected x f32[T, d], got ${x instanceof Tensor ? describe(x) : typeof x}`,
    );
  }
  const P = table.destRow.shape[0];
  if (x.shape[0] * table.k !== P) {
    fail(
      "moe.dispatch",
      `x has ${x.shape[0]} tokens but the routing table was built for ${P / table.k}`,
    );
  }
  return dispatchRows(x, table.tokenOfRow, table.destRow, table.k) as Tensor;
}

const combineRows = customVjp({
  name: "moe.combine",
  fwd: (ys: Tensor, weights: Tensor, destRow: Tensor, _srcEntry: Tensor, _tok: Tensor) => {
    const [T, k] = weights.shape;
    const d = ys.shape[1];
    return takeRows(ys, destRow).reshape([T, k, d]).mul(weights.reshape([T, k, 1])).sum(1);
  },
  bwd: (_saved, g, [ys, weights, destRow, srcEntry, tok]) => {
    const gy = g as Tensor, w = weights as Tensor, Y = ys as Tensor;
    const [T, k] = w.shape;
    const d = Y.shape[1];
    // dys[r] = weights[entry(r)] · g[token(r)]; dweights[t, j] = ⟨g[t], ys[destRow[t·k + j]]⟩.
    const wOfRow = takeRows(w.reshape([T * k, 1]), srcEntry as Tensor);
    const dys = takeRows(gy, tok as Tensor).mul(wOfRow);
    const dw = takeRows(Y, destRow as Tensor).reshape([T, k, d]).mul(gy.reshape([T, 1, d])).sum(-1);
    return [dys, dw, null, null, null];
  },
});

/**
 * The weighted un-permute: `y[t] = Σ_j weights[t, j] · ys[destRow[t·k + j]]` ([T·k, d] → [T, d]).
 * Gradients flow to the expert outputs and to the weights (hence the router).
 */
export function combine(ys: Tensor, table: RoutingTable, weights: Tensor): Tensor {
  if (!(ys instanceof Tensor) || ys.ndim !== 2 || ys.dtype !== "f32") {
    fail(
      "moe.combine",
      `expected expert outputs f32[T·k, d], got ${ys instanceof Tensor ? describe(ys) : typeof ys}`,
    );
  }
  const P = table.destRow.shape[0];
  if (
    !(weights instanceof Tensor) || weights.ndim !== 2 ||
    weights.shape[0] * weights.shape[1] !== P ||
    weights.shape[1] !== table.k
  ) {
    fail(
      "moe.combine",
      `expected weights f32[T, ${table.k}] for ${P} rows, got ${
        weights instanceof Tensor ? describe(weights) : typeof weights
      }`,
    );
  }
  if (ys.shape[0] !== P) {
    fail("moe.combine", `expected ${P} expert-output rows, got ${describe(ys)}`);
  }
  return combineRows(ys, weights, table.destRow, table.srcEntry, table.tokenOfRow) as Tensor;
}

/**
 * Per-expert matmul over expert-contiguous rows: row r of segment e gives `xs[r] @ w[e]ᵀ`
 * (`xs` [T·k, in], stacked weights `w` [E, out, in] in PyTorch's [out, in] layout).
 *
 * @example
 * ```ts
 * const h = mj.moe.groupedMatmul(xs, up, table).gelu(); // [T·k, f]
 * ```
 */
export function groupedMatmul(xs: Tensor, w: Tensor, table: RoutingTable): Tensor {
  if (!(xs instanceof Tensor) || xs.ndim !== 2 || xs.dtype !== "f32") {
    fail(
      "moe.groupedMatmul",
      `expected rows f32[R, in], got ${xs instanceof Tensor ? describe(xs) : typeof xs}`,
    );
  }
  if (!(w instanceof Tensor) || w.ndim !== 3 || w.dtype !== "f32" || w.shape[2] !== xs.shape[1]) {
    fail(
      "moe.groupedMatmul",
      `expected stacked weights f32[E, out, ${xs.shape[1]}], got ${
        w instanceof Tensor ? describe(w) : typeof w
      }`,
    );
  }
  if (w.shape[0] !== table.numExperts) {
    fail(
      "moe.groupedMatmul",
      `weights stack ${w.shape[0]} experts but the routing table has ${table.numExperts}`,
    );
  }
  return prim("groupedMatmul", [xs, w.swapAxes(1, 2), table.offsets], null);
}
