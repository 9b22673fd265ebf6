/** Realizing many tensors at once and cutting their graph history. */
import { realizeNodes } from "./backend.ts";
import { flatten } from "./autodiff/tree.ts";
import { fromHost } from "./ops/creation.ts";
import { Tensor } from "./tensor.ts";

/**
 * Computes every tensor in a tree in one batch and returns the same tree with tensors that hold
 * their values directly (no graph history). Use it to keep an eager training loop's graph from
 * growing step after step; `mj.jit` steps do this for you.
 *
 * @example
 * ```ts
 * params = await mj.realize(updated); // same structure, values computed once
 * ```
 */
export async function realize<T>(tree: T): Promise<T> {
  const { leaves, rebuild } = flatten(tree);
  const tensors = leaves.filter((l): l is Tensor => l instanceof Tensor);
  const values = await realizeNodes(tensors.map((t) => t.node));
  const byTensor = new Map(tensors.map((t, i) => [t, values[i]]));
  return rebuild(leaves.map((l) => {
    if (!(l instanceof Tensor)) return l;
    if (l.node.op === "buffer" || l.node.op === "const") return l;
    return fromHost(byTensor.get(l)!, l.shape, l.dtype);
  })) as T;
}
