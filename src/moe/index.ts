/** `mj.moe`: routing, dropless dispatch, grouped expert matmuls, combine, and the MoE layer. */
export { expertCounts, route } from "./route.ts";
export { ESTIMATORS } from "./route.ts";
export type {
  EstimatorContext,
  EstimatorFn,
  EstimatorName,
  RouteOptions,
  Routing,
} from "./route.ts";
export { sparseMixerV1, sparseMixerV2 } from "./estimators/sparsemixer.ts";
export type {
  SparseMixerNoise,
  SparseMixerOptions,
  SparseMixerRouting,
} from "./estimators/sparsemixer.ts";
export { defaultMoe } from "./estimators/default_moe.ts";
export type { DefaultOptions } from "./estimators/default_moe.ts";
export { routingTable } from "./table.ts";
export type { RoutingTable } from "./table.ts";
export { combine, dispatch, groupedMatmul } from "./dispatch.ts";
export { allExperts, expertForward, layer } from "./layer.ts";
export type { LayerOptions, LayerResult, LayerState, MoeParams } from "./layer.ts";
