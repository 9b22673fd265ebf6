/**
 * `mj.moe`: routing with a registry of gradient estimators, dropless dispatch, grouped expert
 * matmuls, combine, the MoE layer, and upcycling.
 */
export { expertCounts, route, routerScores } from "./route.ts";
export type { RouteOptions, RouteResult, Routing } from "./route.ts";
export type { ScoreFunction } from "./routing.ts";
export {
  estimatorNamed,
  estimatorOptions,
  estimators,
  registerEstimator,
} from "./estimators/index.ts";
export type {
  Estimator,
  EstimatorContext,
  EstimatorFn,
  EstimatorLayerContext,
  EstimatorOption,
  EstimatorRouting,
  EstimatorShorthand,
  EstimatorSpec,
} from "./estimators/index.ts";
export { sparseMixerV1, sparseMixerV2 } from "./estimators/sparsemixer.ts";
export type {
  SparseMixerNoise,
  SparseMixerOptions,
  SparseMixerRouting,
  SparseMixerSettings,
} from "./estimators/sparsemixer.ts";
export { defaultMoe } from "./estimators/default_moe.ts";
export type { DefaultConfig, DefaultInputs, DefaultOptions } from "./estimators/default_moe.ts";
export { topKRouting } from "./estimators/topk.ts";
export { routingTable } from "./table.ts";
export type { RoutingTable } from "./table.ts";
export { combine, dispatch, groupedMatmul } from "./dispatch.ts";
export { allExperts, expertForward, layer } from "./layer.ts";
export type { LayerOptions, LayerResult, LayerState, MoeParams } from "./layer.ts";
export type { ExpertActivation, ExtraParam } from "./experts.ts";
export { registerBalancer } from "./balancers/index.ts";
export { initialState } from "./state.ts";
export type { StateDeclaration, StateOwner, StateSizes } from "./state.ts";
