/** Debugging helpers: `mj.debug.*`. */
import { printGraph } from "./ir/print.ts";
import type { Tensor } from "./tensor.ts";
import { treeTensors } from "./autodiff/tree.ts";

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

/** Prints `graph(t)` to the console and returns the text. */
export function print(t: Tensor | readonly Tensor[] | Record<string, Tensor>): string {
  const text = graph(t);
  console.log(text);
  return text;
}
