/**
 * Lowering a planned kernel, by its template: one function per kind (each in the file of its
 * template family), so adding a template is a file here, a method of codegen's Target, and the
 * op table's `kernel` entry.
 */
import { resetLowerCaches } from "../../../codegen/lower.ts";
import type { Target } from "../../../codegen/target.ts";
import type { KernelKind } from "../../ir/ops.ts";
import type { Node } from "../../ir/node.ts";
import { labelOf, LocalSlots } from "../bindings.ts";
import type { KernelOf, PlannedKernel } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import type { KernelContext } from "./context.ts";
import { lowerAttention } from "./attention.ts";
import { lowerFused } from "./fused.ts";
import { lowerGrouped, lowerWgrad } from "./grouped.ts";
import { lowerMatmul } from "./matmul.ts";
import { lowerCumsum } from "./scan.ts";
import { lowerScatterAdd, lowerSegmentSum } from "./scatter.ts";
import { lowerKthLargest } from "./select.ts";
import { lowerTopk } from "./topk.ts";

type Lowering<K extends KernelKind> = (k: KernelOf<K>, ctx: KernelContext) => Launch[];

const LOWERINGS: { [K in KernelKind]: Lowering<K> } = {
  fused: lowerFused,
  matmul: lowerMatmul,
  grouped: lowerGrouped,
  wgrad: lowerWgrad,
  segmentSum: lowerSegmentSum,
  topk: lowerTopk,
  kthLargest: lowerKthLargest,
  cumsum: lowerCumsum,
  scatterAdd: lowerScatterAdd,
  attention: lowerAttention,
  attentionBwdQ: lowerAttention,
  attentionBwdKV: lowerAttention,
};

/** The launches of one planned kernel, written by `target`. */
export function lowerKernel(
  k: PlannedKernel,
  target: Target,
  isRealized: (n: Node) => boolean,
  globalSlot: (n: Node) => number | undefined,
  maxBindings: number,
): Launch[] {
  resetLowerCaches();
  const ctx: KernelContext = {
    target,
    isRealized,
    globalSlot,
    local: new LocalSlots(globalSlot, isRealized),
    label: labelOf(k),
    maxBindings,
  };
  return (LOWERINGS[k.kind] as Lowering<KernelKind>)(k as never, ctx);
}
