/** Matrix products. */
import { fail } from "../errors.ts";
import { broadcastShapes, fmtShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { reshape } from "./movement.ts";
import { broadcastTo, describe, prim, requireTensor } from "./prim.ts";

/**
 * Batched matrix product with NumPy semantics: `[..., M, K] @ [..., K, N] → [..., M, N]`, batch
 * dims broadcast; a 1-D operand is a row (left) or column (right) vector and its dim is dropped.
 *
 * @example
 * ```ts
 * const y = x.matmul(w.transpose()); // [T, in] @ [in, out]
 * ```
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  requireTensor("matmul", a, "the left operand");
  requireTensor("matmul", b, "the right operand");
  if (a.ndim === 0 || b.ndim === 0) {
    fail(
      "matmul",
      `expected operands with at least one axis, got ${describe(a)} and ${describe(b)}`,
    );
  }
  if (a.dtype !== "f32" || b.dtype !== "f32") {
    fail("matmul", `expected f32 operands, got ${describe(a)} and ${describe(b)}`);
  }
  const aVec = a.ndim === 1, bVec = b.ndim === 1;
  const A = aVec ? reshape(a, [1, a.shape[0]]) : a;
  const B = bVec ? reshape(b, [b.shape[0], 1]) : b;
  const K = A.shape[A.ndim - 1];
  if (B.shape[B.ndim - 2] !== K) {
    fail(
      "matmul",
      `inner dimensions differ: ${describe(a)} @ ${
        describe(b)
      }; expected the left operand's last ` +
        `dim (${K}) to equal the right operand's ${bVec ? "only" : "second-to-last"} dim (${
          B.shape[B.ndim - 2]
        })`,
    );
  }
  const batch = broadcastShapes(A.shape.slice(0, -2), B.shape.slice(0, -2));
  if (!batch) {
    fail(
      "matmul",
      `batch dims ${fmtShape(A.shape.slice(0, -2))} and ${
        fmtShape(B.shape.slice(0, -2))
      } cannot broadcast`,
    );
  }
  const M = A.shape[A.ndim - 2], N = B.shape[B.ndim - 1];
  const out = prim("matmul", [
    broadcastTo(A, [...batch, M, K]),
    broadcastTo(B, [...batch, K, N]),
  ], null);
  let shape = out.shape;
  if (aVec) shape = [...shape.slice(0, -2), shape[shape.length - 1]];
  if (bVec) shape = shape.slice(0, -1);
  return reshape(out, shape);
}
