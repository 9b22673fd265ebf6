/** Fused elementwise and row-reduction kernels: a root and its non-realized ancestors. */
import { lowerGroup } from "../../../codegen/lower.ts";
import { registerOut } from "../bindings.ts";
import type { Launch } from "../step_program.ts";
import type { KernelOf } from "../schedule.ts";
import { type KernelContext, launch } from "./context.ts";

export function lowerFused(
  k: KernelOf<"fused">,
  ctx: KernelContext,
): Launch[] {
  const { local, target } = ctx;
  const kernel = lowerGroup(
    k.root,
    (n) => ctx.isRealized(n),
    (n) => local.of(n),
    -1,
    ctx.label,
    local.checks,
    { splitLastAxis: target.splitLastAxis },
  );
  kernel.out.slot = registerOut(local, k.root);
  const program = kernel.kind === "elementwise" ? target.elementwise(kernel) : target.row(kernel);
  return [launch(ctx, program, k.root.size, k.root)];
}
