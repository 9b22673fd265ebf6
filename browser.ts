/**
 * moejit in a web page or a Web Worker (the npm bundle's entry point): everything of mod.ts that
 * needs no file system — tensors, autodiff, jit, the WebGPU runtime, `mj.moe`, `mj.balance`,
 * `mj.nn`, `mj.optim` — with `mj.data` for text in memory, `mj.io` for safetensors as bytes, the
 * Hugging Face layout and SVG plots, and `mj.train` for the compiled training step. Files, npm
 * corpora, BPE tokenizers, progress bars and the training loop are mod.ts's only.
 *
 * @example
 * ```ts
 * import * as mj from "moejit"; // or "./browser.ts" from Deno
 * const x = mj.tensor([[1, 2], [3, 4]]);
 * const [dx] = mj.grad((x: mj.Tensor) => x.square().sum())(x);
 * console.log(await dx.data()); // Float32Array [2, 4, 6, 8]
 * ```
 * @module
 */
import "./src/ops/install.ts";
export { Tensor } from "./src/tensor.ts";
export type { Axis, TensorLike } from "./src/tensor.ts";
export type { DType, TypedArray } from "./src/dtype.ts";
export { MoejitError } from "./src/errors.ts";

export {
  arange,
  full,
  fullLike,
  ones,
  onesLike,
  rand,
  randn,
  tensor,
  zeros,
  zerosLike,
} from "./src/ops/creation.ts";
export type { TensorData } from "./src/ops/creation.ts";
export { seed } from "./src/rng.ts";
export {
  abs,
  add,
  bitcast,
  cast,
  clip,
  cos,
  div,
  eq,
  erf,
  exp,
  floor,
  ge,
  gelu,
  gt,
  isnan,
  le,
  log,
  logicalAnd,
  logicalNot,
  logicalOr,
  logicalXor,
  lt,
  maximum,
  minimum,
  mod,
  mul,
  ne,
  neg,
  pow,
  reciprocal,
  relu,
  rsqrt,
  sigmoid,
  sign,
  silu,
  sin,
  softplus,
  sqrt,
  sub,
  tanh,
  where,
} from "./src/ops/elementwise.ts";
export {
  argmax,
  argmin,
  logSoftmax,
  logsumexp,
  max,
  mean,
  min,
  softmax,
  sum,
  variance,
} from "./src/ops/reduce.ts";
export {
  broadcastTo,
  concat,
  narrow,
  pad,
  permute,
  reshape,
  slice,
  squeeze,
  stack,
  swapAxes,
  transpose,
  unsqueeze,
} from "./src/ops/movement.ts";
export {
  cumsum,
  gather,
  oneHot,
  scatterAdd,
  scatterAddRows,
  takeRows,
  topk,
} from "./src/ops/indexing.ts";
export { matmul } from "./src/ops/linalg.ts";
export { kthLargest } from "./src/ops/select.ts";
export { mark, stopGradient } from "./src/ops/meta.ts";

export { backward, grad, valueAndGrad } from "./src/autodiff/grad.ts";
export type { GradOf, GradOptions, Grads } from "./src/autodiff/grad.ts";
export { customVjp } from "./src/autodiff/custom.ts";
export type { CustomVjpSpec } from "./src/autodiff/custom.ts";
export { flatten as treeFlatten, mapTensors, treeTensors } from "./src/autodiff/tree.ts";

export { backendName, getBackend, setBackend, setFusion } from "./src/backend.ts";
export type { Backend, BackendName, Prepared } from "./src/backend.ts";
export { backendInfo } from "./src/runtime/webgpu.ts";
export type { DeviceInfo } from "./src/runtime/device.ts";
export { snapshot as stats } from "./src/stats.ts";
export type { Stats } from "./src/stats.ts";
export { jit } from "./src/jit.ts";
export type { JitOptions } from "./src/jit.ts";
export { realize } from "./src/realize.ts";
export * as debug from "./src/debug.ts";
export * as moe from "./src/api/moe.ts";
export * as balance from "./src/balance.ts";
export * as nn from "./src/nn/index.ts";
export * as optim from "./src/nn/optim.ts";
export * as data from "./src/data/portable.ts";
export * as io from "./src/io/portable.ts";
export * as train from "./src/train/portable.ts";
