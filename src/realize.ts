/** Realizing many tensors at once and cutting their graph history. */
import { getBackend } from "./backend.ts";
import { flatten } from "./autodiff/tree.ts";
import { Tensor } from "./tensor.ts";

/**
 * Computes every tensor in a tree in one batch and returns the same tree with tensors that hold
 * their values directly (no graph history; on WebGPU the values stay on the device). Use it to
 * keep an eager training loop's graph from growing step after step; `mj.jit` steps do this for
 * you.
 *
 * @example
 * ```ts
 * params = await mj.realize(updated); // same structure, values computed once
 * ```
 */
export async function realize<T>(tree: T): Promise<T> {
  const { leaves, rebuild } = flatten(tree);
  const tensors = leaves.filter((l): l is Tensor => l instanceof Tensor && l.node.op !== "const");
  const values = await (await getBackend()).materialize(tensors.map((t) => t.node));
  const byTensor = new Map(tensors.map((t, i) => [t, values[i]]));
  return rebuild(leaves.map((l) => {
    const v = l instanceof Tensor ? byTensor.get(l) : undefined;
    return v ? new Tensor(v) : l;
  })) as T;
}
