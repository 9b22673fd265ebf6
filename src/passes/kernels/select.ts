/** kthLargest: the rank-th largest of each column (a radix select on WebGPU). */
import type { OpArgs } from "../../ir/ops.ts";
import { registerOut } from "../bindings.ts";
import { type KernelOf, throughIdentity } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";

export function lowerKthLargest(
  k: KernelOf<"kthLargest">,
  ctx: KernelContext,
): Launch[] {
  const root = k.root;
  const src = throughIdentity(root.src[0]);
  const [n, cols] = src.shape;
  const x = ctx.local.of(src)!;
  const scratch = ctx.target.selectScratch(n, cols).map((bytes) => ctx.local.scratch(bytes));
  const out = registerOut(ctx.local, root);
  const programs = ctx.target.kthLargest({
    label: ctx.label,
    n,
    cols,
    rank: (root.arg as OpArgs["kthLargest"]).rank,
    x,
    out,
  }, scratch);
  return programs.map((p) => launch(ctx, p, n === 0 ? 0 : p.grid[0] * p.grid[1], root));
}
