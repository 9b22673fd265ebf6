/** Top-k indices along the last axis, one row per invocation. */
import { scalarType } from "../../../codegen/lower.ts";
import type { OpArgs } from "../../ir/ops.ts";
import { registerOut } from "../bindings.ts";
import { type KernelOf, throughIdentity } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";

export function lowerTopk(
  k: KernelOf<"topk">,
  ctx: KernelContext,
): Launch[] {
  const root = k.root;
  const src = throughIdentity(root.src[0]);
  const n = src.shape[src.shape.length - 1];
  const x = ctx.local.of(src)!;
  const out = registerOut(ctx.local, root);
  const rows = n === 0 ? 0 : src.size / n;
  const program = ctx.target.topk({
    label: ctx.label,
    rows,
    n,
    k: (root.arg as OpArgs["topk"]).k,
    type: scalarType(src.dtype),
    x,
    out,
  });
  return [launch(ctx, program, rows, root)];
}
