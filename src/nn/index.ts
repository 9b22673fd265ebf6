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
export { balancersOf, forward, initParams, setPath } from "./model.ts";
export type { ForwardOptions, ForwardResult, Params } from "./model.ts";
export type { AttentionOptions } from "./layers.ts";
export { DEFAULT_CONFIG, modelConfig, parameterShapes } from "./config.ts";
export type { BalanceSpec, ModelConfig } from "./config.ts";
export { generate } from "./generate.ts";
export type { GenerateOptions } from "./generate.ts";
