/** The router z-loss (ST-MoE; docs/methods.md §4.2): a penalty on large router logits. */
import { checkOptions, nonNegative } from "../options.ts";
import { findMarked } from "../routing.ts";
import type { Balancer, BalancerKind } from "../balancer.ts";

export interface ZLossOptions {
  /** Coefficient β (default 1e-3). */
  beta?: number;
}

/**
 * The router z-loss: β·mean_t (logsumexp_j z_{t,j})² (ST-MoE), discouraging large logits, as
 * `losses.z_loss`.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.zLoss({ beta: 1e-3 })] });
 * loss = loss.add(r.losses.z_loss);
 * ```
 */
export function zLoss(opts: ZLossOptions = {}): Balancer {
  const o = checkOptions("balance.zLoss", opts, ["beta"]);
  const beta = nonNegative("balance.zLoss", "beta", o.beta, 0.001);
  return {
    kind: "zLoss",
    config: { beta },
    finish(ctx) {
      const logits = findMarked([ctx.routing.scores, ctx.routing.weights], "moe.logits");
      return { losses: { z_loss: logits.logsumexp(-1).square().mean().mul(beta) } };
    },
  };
}

/** `{ kind: "zLoss" }`; `z` on the command line. */
export const zLossKind: BalancerKind<ZLossOptions> = {
  kind: "zLoss",
  description: "router z-loss β·mean (logsumexp z)² (ST-MoE)",
  create: zLoss,
  cli: { name: "z", main: "beta" },
  megatron: (o) => ({ flags: [["moe-z-loss-coeff", String(o.beta ?? 0.001)]] }),
};
