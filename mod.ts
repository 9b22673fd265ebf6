/**
 * moejit: a lazy tensor DSL for Mixture-of-Experts research, with autodiff, custom VJPs for
 * gradient estimators, and generated WGSL kernels run through WebGPU.
 *
 * @example
 * ```ts
 * import * as mj from "./mod.ts";
 * const x = mj.tensor([[1, 2], [3, 4]]);
 * const [dx] = mj.grad((x: mj.Tensor) => x.square().sum())(x);
 * console.log(await dx.data()); // Float32Array [2, 4, 6, 8]
 * ```
 * @module
 */
import "./src/ops/install.ts";
import "./src/runtime/all.ts";
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
export { nativeInfo } from "./src/runtime/native/backend.ts";
export type { NativeInfo } from "./src/runtime/native/backend.ts";
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
export * as data from "./src/data/index.ts";
export * as io from "./src/io/index.ts";
export * as train from "./src/train/index.ts";
