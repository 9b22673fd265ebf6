/**
 * A compile target: what turns the kernel IR (fused elementwise and row kernels) and template
 * specs into runnable kernels. The WGSL target makes compute shaders for WebGPU; the C target
 * (codegen/c/target.ts) makes C functions for the native backend. Lowering, scheduling, fusion
 * and the memory plan are shared; a target says how each kernel is written and what the
 * scheduler should favour for it.
 */
import type { ScalarType } from "./exp.ts";
import {
  type ElementwiseKernel,
  elementwiseShader,
  type KernelProgram,
  type RowKernel,
  rowShader,
} from "./kernel.ts";
import { matmulShader, type MatmulSpec } from "./templates/matmul.ts";
import {
  groupedMatmulShader,
  type GroupedSpec,
  groupedWgradShader,
  type WgradSpec,
} from "./templates/grouped.ts";
import { topkShader, type TopkSpec } from "./templates/topk.ts";
import {
  attentionBackwardKVShader,
  attentionBackwardQShader,
  type AttentionBackwardSpec,
  attentionForwardShader,
  type AttentionForwardSpec,
} from "./templates/attention.ts";
import {
  radixSelectPrograms,
  selectHistBytes,
  type SelectSpec,
  selectStateBytes,
} from "./templates/select.ts";
import { scanShader, type ScanSpec } from "./templates/scan.ts";
import { fillShader, scatterAddShader, type ScatterSpec } from "./templates/scatter.ts";
import { segmentSumShader, type SegmentSumSpec } from "./templates/segment.ts";
import { finiteCheckShader } from "./templates/finite.ts";
import { MAX_LOOP_ITERATIONS } from "./lower.ts";

export interface Target {
  readonly name: "wgsl" | "c";
  /** Bytes per element of a stored value (WGSL stores bool as u32; C as one byte). */
  itemBytes(t: ScalarType): number;
  /** Scheduling choices for this target (see ScheduleOptions). */
  readonly prologues: boolean;
  readonly transposeCopies: boolean;
  readonly groupedTransposes: boolean;
  /** Grouped kernels read gathered rows through their row index (ScheduleOptions). */
  readonly gatherInPlace: boolean;
  /** Lower fused kernels over (outer, last axis) index pairs (LowerOptions.splitLastAxis). */
  readonly splitLastAxis: boolean;

  elementwise(k: ElementwiseKernel): KernelProgram;
  row(k: RowKernel): KernelProgram;
  matmul(s: MatmulSpec): KernelProgram;
  grouped(s: GroupedSpec): KernelProgram;
  wgrad(s: WgradSpec): KernelProgram;
  topk(s: TopkSpec): KernelProgram;
  attention(s: AttentionForwardSpec): KernelProgram;
  attentionBwdQ(s: AttentionBackwardSpec): KernelProgram;
  attentionBwdKV(s: AttentionBackwardSpec): KernelProgram;
  /** Byte sizes of the scratch buffers kthLargest needs (allocated before its output). */
  selectScratch(n: number, cols: number): number[];
  /** kthLargest's launches; `scratch` are the local slots of selectScratch's buffers. */
  kthLargest(s: Omit<SelectSpec, "state" | "hist">, scratch: number[]): KernelProgram[];
  scan(s: ScanSpec): KernelProgram;
  /** Zeroes `n` elements of `slot` (before a scatter-add). */
  fill(label: string, n: number, slot: number, type: ScalarType): KernelProgram;
  scatterAdd(s: ScatterSpec): KernelProgram;
  segmentSum(s: SegmentSumSpec): KernelProgram;
  /** Tests `n` f32 values of `slot` for NaN/Inf by their bits (mj.debug.checkNumerics). */
  finiteCheck(label: string, n: number, slot: number): KernelProgram;
}

/** The WGSL attention kernels read heads as vec4s. */
function vec4Heads<S extends AttentionForwardSpec | AttentionBackwardSpec>(
  kind: string,
  emit: (s: S) => KernelProgram,
): (s: S) => KernelProgram {
  return (s) => {
    if (s.Dh % 4 !== 0) {
      throw new Error(`${kind}: the fused kernel needs a head size divisible by 4, got ${s.Dh}`);
    }
    return emit(s);
  };
}

/** One invocation loops over a whole top-k row, k times: within the loop cap only. */
function topkInLoopCap(s: TopkSpec): KernelProgram {
  if (s.k * s.n > MAX_LOOP_ITERATIONS) {
    throw new Error(
      `topk: k·n = ${s.k * s.n} per row exceeds what one WebGPU invocation may loop over ` +
        `(${MAX_LOOP_ITERATIONS}); use a smaller k`,
    );
  }
  return topkShader(s);
}

/** WGSL compute shaders for WebGPU. */
export const WGSL_TARGET: Target = {
  name: "wgsl",
  itemBytes: () => 4,
  prologues: true,
  transposeCopies: true,
  // NT reads run at half speed on llvmpipe: a transposing copy first is cheaper.
  groupedTransposes: false,
  gatherInPlace: true,
  splitLastAxis: false,
  elementwise: elementwiseShader,
  row: rowShader,
  matmul: matmulShader,
  grouped: groupedMatmulShader,
  wgrad: groupedWgradShader,
  topk: topkInLoopCap,
  attention: vec4Heads("attention", attentionForwardShader),
  attentionBwdQ: vec4Heads("attentionBwdQ", attentionBackwardQShader),
  attentionBwdKV: vec4Heads("attentionBwdKV", attentionBackwardKVShader),
  selectScratch: (n, cols) => [selectStateBytes(cols), selectHistBytes(n, cols)],
  kthLargest: (s, [state, hist]) => radixSelectPrograms({ ...s, state, hist }),
  scan: scanShader,
  fill: fillShader,
  scatterAdd: scatterAddShader,
  segmentSum: segmentSumShader,
  finiteCheck: finiteCheckShader,
};
