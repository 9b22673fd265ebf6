/** `mj.balance`: load balancers for MoE layers, and balance metrics. */
export { auxLoss, bip, findMarked, lossFree, zLoss } from "./passes/balance.ts";
export type {
  AuxLossOptions,
  BalanceContext,
  Balancer,
  BipOptions,
  LossFreeOptions,
  ZLossOptions,
} from "./passes/balance.ts";
export { aggregate, maxVio, metrics } from "./moe/metrics.ts";
export type { LayerMetrics } from "./moe/metrics.ts";
