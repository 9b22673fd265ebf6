/**
 * The balancer registry with the built-in kinds registered, in this order (the order errors and
 * --help list them in): auxLoss, zLoss, lossFree, bip. Import the registry from here: the
 * built-ins register through the same `registerBalancer` a user calls.
 */
import { registerBalancer } from "../balancer.ts";
import { auxLossKind } from "./aux_loss.ts";
import { zLossKind } from "./z_loss.ts";
import { lossFreeKind } from "./loss_free.ts";
import { bipKind } from "./bip.ts";

registerBalancer(auxLossKind);
registerBalancer(zLossKind);
registerBalancer(lossFreeKind);
registerBalancer(bipKind);

export {
  balanceContext,
  balancerFromSpec,
  balancerKind,
  balancerKinds,
  balancersOf,
  formatBalance,
  isBalancer,
  parseBalance,
  registerBalancer,
  specOf,
} from "../balancer.ts";
export type {
  BalanceConfig,
  BalanceContext,
  BalanceOutput,
  Balancer,
  BalancerKind,
  BalanceSpec,
  MegatronPart,
} from "../balancer.ts";
export { auxLoss } from "./aux_loss.ts";
export type { AuxLossOptions } from "./aux_loss.ts";
export { zLoss } from "./z_loss.ts";
export type { ZLossOptions } from "./z_loss.ts";
export { lossFree } from "./loss_free.ts";
export type { LossFreeOptions } from "./loss_free.ts";
export { bip } from "./bip.ts";
export type { BipOptions } from "./bip.ts";
