/**
 * Grouped (per-expert) kernels over expert-contiguous rows, with the segment offsets on the
 * device: the grouped matmul (with its epilogue, and the dispatch gather read in place through a
 * row index) and the per-expert weight gradient.
 */
import { type Exp, variable } from "../../../codegen/exp.ts";
import { groupReductions, LoweringConflict } from "../../../codegen/lower.ts";
import type { Node } from "../../ir/node.ts";
import type { OpArgs } from "../../ir/ops.ts";
import { registerOut } from "../bindings.ts";
import type { KernelOf } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";
import { lowerEpilogue } from "./matmul.ts";

export function lowerGrouped(
  k: KernelOf<"grouped">,
  ctx: KernelContext,
): Launch[] {
  const { local, label } = ctx;
  const isRealized = (n: Node) => ctx.isRealized(n);
  const { mm, root } = k;
  if (groupReductions(root, isRealized).length) {
    throw new LoweringConflict(mm, "a reduction follows in the same kernel");
  }
  // The template writes one f32 per product element: an epilogue must keep both.
  if (root !== mm && (root.dtype !== "f32" || root.shape.join() !== mm.shape.join())) {
    throw new LoweringConflict(mm, "the epilogue changes the product's shape or dtype");
  }
  const [R, N] = mm.shape;
  const K = mm.src[0].shape[1];
  const E = k.offsets.shape[0] - 1;
  const a = local.of(k.a.node)!, b = local.of(k.b)!, offsets = local.of(k.offsets)!;
  const rowIndex = k.a.rowIndex ? local.of(k.a.rowIndex)! : undefined;
  let epilogue: Exp | null = null;
  if (root !== mm) {
    const coords = [
      variable("mm_m", "i32", 0, Math.max(0, R - 1)),
      variable("mm_n", "i32", 0, Math.max(0, N - 1)),
    ];
    epilogue = lowerEpilogue(mm, root, local, coords, [a, b], "grouped-matmul");
  }
  const out = registerOut(local, root);
  const program = ctx.target.grouped({
    label,
    R,
    K,
    N,
    E,
    a,
    b,
    offsets,
    out,
    rowIndex,
    transB: k.bTransposed,
    epilogue,
  });
  return [launch(ctx, program, mm.size, root)];
}

export function lowerWgrad(
  k: KernelOf<"wgrad">,
  ctx: KernelContext,
): Launch[] {
  const { local, label } = ctx;
  const root = k.root;
  const [R, K] = k.a.rowIndex ? [k.a.rowIndex.shape[0], k.a.node.shape[1]] : k.a.node.shape;
  const a = local.of(k.a.node)!, g = local.of(k.g)!, offsets = local.of(k.offsets)!;
  const rowIndex = k.a.rowIndex ? local.of(k.a.rowIndex)! : undefined;
  const out = registerOut(local, root);
  const program = ctx.target.wgrad({
    label,
    R,
    K,
    N: k.g.shape[1],
    E: k.offsets.shape[0] - 1,
    rows: (k.wgrad.arg as OpArgs["groupedWgrad"]).rows,
    a,
    g,
    offsets,
    out,
    rowIndex,
    transOut: k.transposed,
  });
  return [launch(ctx, program, root.size, root)];
}
