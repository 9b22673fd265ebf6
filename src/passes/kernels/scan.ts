/** Cumulative sums along one axis: one sequential line per invocation. */
import { scalarType } from "../../../codegen/lower.ts";
import type { OpArgs } from "../../ir/ops.ts";
import { prod } from "../../shape.ts";
import { registerOut } from "../bindings.ts";
import { type KernelOf, throughIdentity } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";

export function lowerCumsum(
  k: KernelOf<"cumsum">,
  ctx: KernelContext,
): Launch[] {
  const root = k.root;
  const a = root.arg as OpArgs["cumsum"];
  const src = throughIdentity(root.src[0]);
  const x = ctx.local.of(src)!;
  const out = registerOut(ctx.local, root);
  const outer = prod(src.shape.slice(0, a.axis)), inner = prod(src.shape.slice(a.axis + 1));
  const program = ctx.target.scan({
    label: ctx.label,
    outer,
    length: src.shape[a.axis],
    inner,
    reverse: a.reverse,
    exclusive: a.exclusive,
    type: scalarType(src.dtype),
    x,
    out,
  });
  return [launch(ctx, program, outer * inner, root)];
}
