/**
 * Scatter-adds: integer ones with atomics after a zero fill (exact in any order), and the
 * segment sums that f32 scatter-adds are legalized into (src/passes/scatter.ts).
 */
import { scalarType } from "../../../codegen/lower.ts";
import type { OpArgs } from "../../ir/ops.ts";
import { prod } from "../../shape.ts";
import { launchOf, registerOut } from "../bindings.ts";
import { type KernelOf, throughIdentity } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { freshSlots, type KernelContext, launch } from "./context.ts";

export function lowerScatterAdd(
  k: KernelOf<"scatterAdd">,
  ctx: KernelContext,
): Launch[] {
  const { local, label, target } = ctx;
  const root = k.root;
  const a = root.arg as OpArgs["scatterAdd"];
  const [upd, idx] = root.src.map(throughIdentity);
  const u = local.of(upd)!, ix = local.of(idx)!;
  const out = registerOut(local, root);
  const fillLocal = freshSlots(ctx);
  const fo = registerOut(fillLocal, root);
  const fill = target.fill(`zero ${label}`, root.size, fo, scalarType(root.dtype));
  const program = target.scatterAdd({
    label,
    outer: prod(upd.shape.slice(0, a.axis)),
    m: upd.shape[a.axis],
    inner: prod(upd.shape.slice(a.axis + 1)),
    n: root.shape[a.axis],
    type: scalarType(root.dtype),
    upd: u,
    idx: ix,
    out,
  });
  return [
    launchOf(fill, fillLocal, root.size, ctx.maxBindings, root),
    launch(ctx, program, upd.size, root),
  ];
}

export function lowerSegmentSum(
  k: KernelOf<"segmentSum">,
  ctx: KernelContext,
): Launch[] {
  const { local } = ctx;
  const root = k.root;
  const [x, order, offsets] = root.src.map(throughIdentity);
  const slots = { x: local.of(x)!, order: local.of(order)!, offsets: local.of(offsets)! };
  const out = registerOut(local, root);
  const [S, L] = root.shape;
  const program = ctx.target.segmentSum({
    label: ctx.label,
    S,
    L,
    rows: (root.arg as OpArgs["segmentSum"]).rows,
    ...slots,
    out,
  });
  return [launch(ctx, program, root.size, root)];
}
