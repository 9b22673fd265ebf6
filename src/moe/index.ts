/** `mj.moe`: routing, dropless dispatch, grouped expert matmuls, combine, and the MoE layer. */
export { expertCounts, route } from "./route.ts";
export type { EstimatorName, RouteOptions, Routing } from "./route.ts";
export { routingTable } from "./table.ts";
export type { RoutingTable } from "./table.ts";
export { combine, dispatch, groupedMatmul } from "./dispatch.ts";
export { allExperts, expertForward, layer } from "./layer.ts";
export type { LayerOptions, LayerResult, MoeParams } from "./layer.ts";
