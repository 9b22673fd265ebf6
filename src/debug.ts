/** Debugging helpers: `mj.debug.*`. */
import { printGraph } from "./ir/print.ts";
import { toposort } from "./ir/graph.ts";
import type { OpArgs } from "./ir/ops.ts";
import type { Tensor } from "./tensor.ts";
import { treeTensors } from "./autodiff/tree.ts";
import { type KernelProfile, profileRows, setProfiling } from "./runtime/profile.ts";

export type { KernelProfile };
export { checkNumerics } from "./numerics.ts";

/**
 * The graph behind tensors, as SSA text (one node per line, sources first).
 *
 * @example
 * ```ts
 * console.log(mj.debug.graph(x.mul(2).add(1)));
 * ```
 */
export function graph(t: Tensor | readonly Tensor[] | Record<string, Tensor>): string {
  return printGraph(treeTensors(t).map((x) => x.node));
}

/**
 * The gradient estimators in the graph behind `t`: the names of the custom VJPs registered with
 * `estimator: true` (their backward is deliberately not the forward's gradient) that a gradient
 * of `t` passes through, in graph order. Empty when every gradient of `t` is the true one, so a
 * finite-difference check applies.
 *
 * @example
 * ```ts
 * const r = mj.moe.route(logits, { topK: 2, estimator: "sparsemixer", seed: 1 });
 * mj.debug.estimators(r.weights); // ["moe.sparsemixer.v2"]
 * ```
 */
export function estimators(t: Tensor | readonly Tensor[] | Record<string, Tensor>): string[] {
  const names = new Set<string>();
  for (const n of toposort(treeTensors(t).map((x) => x.node))) {
    if (n.op !== "custom") continue;
    const a = n.arg as OpArgs["custom"];
    if (a.estimator) names.add(a.name);
  }
  return [...names];
}

/** Prints `graph(t)` to the console and returns the text. */
export function print(t: Tensor | readonly Tensor[] | Record<string, Tensor>): string {
  const text = graph(t);
  console.log(text);
  return text;
}

/**
 * Profiles the WebGPU kernels run by `fn`: each kernel is submitted alone and waited for, so the
 * run is much slower than normal, but the table shows where the time goes (milliseconds per
 * kernel label, most expensive first; a host round trip is subtracted from each kernel).
 *
 * @example
 * ```ts
 * const rows = await mj.debug.profile(() => step(state, x, y, lr, i));
 * console.log(mj.debug.formatProfile(rows));
 * ```
 */
export async function profile(fn: () => unknown): Promise<KernelProfile[]> {
  setProfiling(true);
  try {
    await fn();
  } finally {
    setProfiling(false);
  }
  return profileRows();
}

/** A profile as an aligned text table (top `limit` rows and the total). */
export function formatProfile(rows: readonly KernelProfile[], limit = 25): string {
  const total = rows.reduce((a, r) => a + r.ms, 0);
  const lines = rows.slice(0, limit).map((r) =>
    `${r.ms.toFixed(1).padStart(9)} ms ${
      ((100 * r.ms) / Math.max(total, 1e-9)).toFixed(1).padStart(5)
    }% ${String(r.calls).padStart(4)}×  ${r.label}`
  );
  lines.push(
    `${total.toFixed(1).padStart(9)} ms total over ${
      rows.reduce((a, r) => a + r.calls, 0)
    } kernels`,
  );
  return lines.join("\n");
}
