/**
 * The C target: kernels as C functions for the native backend (codegen/c/step.ts puts a step's
 * functions into one file). Buffers are host arrays in the host's layout (bool as one byte), so
 * nothing is converted at the boundary.
 */
import type { Target } from "../target.ts";
import { elementwiseC, rowC } from "./kernels.ts";
import {
  attentionBwdKVC,
  attentionBwdQC,
  attentionC,
  fillC,
  finiteCheckC,
  groupedC,
  kthLargestC,
  matmulC,
  scanC,
  scatterAddC,
  segmentSumC,
  topkC,
  wgradC,
} from "./templates.ts";

export const C_TARGET: Target = {
  name: "c",
  itemBytes: (t) => (t === "bool" ? 1 : 4),
  // BLAS takes operands as they are stored, in any layout, and no read hooks.
  prologues: false,
  transposeCopies: false,
  groupedTransposes: true,
  gatherInPlace: false,
  // Loop nests over rows whose indices GCC sees as affine: the inner loops vectorize.
  splitLastAxis: true,
  elementwise: elementwiseC,
  row: rowC,
  matmul: matmulC,
  grouped: groupedC,
  wgrad: wgradC,
  topk: topkC,
  attention: attentionC,
  attentionBwdQ: attentionBwdQC,
  attentionBwdKV: attentionBwdKVC,
  selectScratch: () => [],
  kthLargest: (s) => kthLargestC(s),
  scan: scanC,
  fill: fillC,
  scatterAdd: scatterAddC,
  segmentSum: segmentSumC,
  finiteCheck: finiteCheckC,
};
