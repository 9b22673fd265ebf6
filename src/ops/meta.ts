/** Identity-like ops that carry meaning for autodiff and passes, and index helpers. */
import type { DType } from "../dtype.ts";
import { fail } from "../errors.ts";
import type { Shape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { prim, requireTensor } from "./prim.ts";
import { makeNode } from "../ir/node.ts";

/**
 * Identity in the forward pass; no gradient flows through it.
 *
 * @example
 * ```ts
 * const y = x.mul(mj.stopGradient(w)); // w is treated as a constant by mj.grad
 * ```
 */
export function stopGradient(x: Tensor): Tensor {
  requireTensor("stopGradient", x);
  return prim("stopgrad", [x], null);
}

/**
 * Labels a value so that graph passes can find it (e.g. router scores for balancers). The mark
 * is part of the node's key and is the identity everywhere else.
 */
export function mark(x: Tensor, label: string): Tensor {
  requireTensor("mark", x);
  if (typeof label !== "string" || !label) fail("mark", "expected a non-empty string label");
  return prim("mark", [x], { label });
}

/** 0, 1, 2, … along `axis` of `shape`, broadcast over the other axes. */
export function iotaAlong(shape: Shape, axis: number, dtype: DType = "i32"): Tensor {
  return new Tensor(makeNode("iota", [], { axis, shape: [...shape], dtype }));
}
