/**
 * `mj.balance`: load balancers for MoE routers (a registry of kinds; the built-ins auxLoss,
 * zLoss, lossFree, bip), the command-line syntax for them, and balance metrics.
 */
export {
  auxLoss,
  balancerFromSpec,
  balancerKind,
  balancerKinds,
  bip,
  formatBalance,
  lossFree,
  parseBalance,
  registerBalancer,
  specOf,
  zLoss,
} from "./moe/balancers/index.ts";
export type {
  AuxLossOptions,
  BalanceConfig,
  BalanceContext,
  BalanceOutput,
  Balancer,
  BalancerKind,
  BalanceSpec,
  BipOptions,
  LossFreeOptions,
  MegatronPart,
  ZLossOptions,
} from "./moe/balancers/index.ts";
export { findMarked } from "./moe/routing.ts";
export { aggregate, maxVio, metrics } from "./moe/metrics.ts";
export type { LayerMetrics } from "./moe/metrics.ts";
