/** `mj.nn`: layers, the MoE language model, its configuration and parameter layout. */
export {
  attention,
  crossEntropy,
  embedding,
  layerNorm,
  linear,
  mlp,
  norm,
  rmsNorm,
  rope,
  selfAttention,
} from "./layers.ts";
export { balancersOf, forward, initialLayerState, initParams, setPath } from "./model.ts";
export type { ForwardOptions, ForwardResult, Params } from "./model.ts";
export type { AttentionOptions, RopeKind, SelfAttentionOptions } from "./layers.ts";
export {
  allBalanceSpecs,
  balancerOf,
  DEFAULT_CONFIG,
  ESTIMATOR_FIELDS,
  estimatorOf,
  estimatorSettings,
  layerBalance,
  modelConfig,
  parameterCount,
  parameterShapes,
} from "./config.ts";
export { mixtureOfAttention } from "./moa.ts";
export type { MoaOptions, MoaParams, MoaResult } from "./moa.ts";
export type {
  BalanceConfig,
  BalanceInput,
  BalanceSpec,
  ModelConfig,
  ModelConfigInput,
  ParameterCount,
} from "./config.ts";
export { generate } from "./generate.ts";
export type { GenerateOptions } from "./generate.ts";
