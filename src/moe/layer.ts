/**
 * The dropless MoE FFN: route (with its balancers) → routing table → dispatch → grouped expert
 * MLP → weighted combine → the estimator's own layer step, if it has one (Default MoE's EMA
 * defaults, the dense gradient, SparseMixer's paper-form expert gradient and v1's ω).
 */
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { checkChoice, checkKeys } from "./options.ts";
import {
  checkDeclared,
  checkTopK,
  currentNames,
  ROUTE_KEYS,
  routeKeys,
  type RouteOptions,
  type RouteResult,
  routeWith,
} from "./route.ts";
import { type Estimator, estimators, resolveEstimator } from "./estimators/index.ts";
import { type RoutingTable, routingTable } from "./table.ts";
import { combine, dispatch } from "./dispatch.ts";
import {
  allExperts,
  BASE_PARAMS,
  checkMoeParams,
  type ExpertActivation,
  expertForward,
  type MoeParams,
} from "./experts.ts";
import { type LayerState, orderedState } from "./state.ts";
import type { DefaultOptions } from "./estimators/default_moe.ts";

export { allExperts, expertForward };
export type { LayerState, MoeParams };

export interface LayerOptions extends RouteOptions {
  /** Expert activation when params have no `gate` (default gelu). */
  activation?: ExpertActivation;
  /** Default MoE options (estimator "default"; the same as `{ kind: "default", ...options }`). */
  default?: DefaultOptions;
  /**
   * SparseMixer: the expert-weight gradient carries the gate multiplier c like the released
   * code ("code", default), or not, like the paper's Algorithm 1 ("paper").
   */
  expertGrad?: "code" | "paper";
}

export interface LayerResult extends RouteResult {
  /** [T, d] output. */
  y: Tensor;
  /** The routing table used (destination rows, offsets, …). */
  table: RoutingTable;
}

export const LAYER_KEYS = [...ROUTE_KEYS, "activation"] as const;

/**
 * The whole dropless MoE FFN on `x` [T, d]: logits x·routerᵀ (+ routerBias), routing with the
 * estimator and balancers given, the experts, and the estimator's layer step.
 *
 * @example
 * ```ts
 * const { y, counts } = mj.moe.layer(x, { router, up, down }, { topK: 2, activation: "gelu" });
 * const r = mj.moe.layer(x, params, { topK: 2, estimator: "default", balance: "aux:0.01", state });
 * state = r.state; // { ehat }
 * ```
 */
export function layer(x: Tensor, params: MoeParams, options: LayerOptions): LayerResult {
  const op = "moe.layer";
  const opts = currentNames(op, options);
  checkKeys(op, opts, routeKeys(LAYER_KEYS));
  const est = resolveEstimator(op, opts.estimator, opts as unknown as Record<string, unknown>);
  checkExtraParams(op, params, est.estimator, est.name);
  const [N, d] = checkMoeParams(x, params, est.estimator.params);
  checkTopK(op, opts.topK, N);
  const act = checkChoice(op, "activation", opts.activation, ["gelu", "relu"], "gelu");
  if (params.gate && opts.activation !== undefined) {
    fail(op, "activation applies to gelu/relu experts; params with `gate` are SwiGLU experts");
  }
  const { activation: _a, ...routeOpts } = opts;
  let logits = x.matmul(params.router.transpose());
  if (params.routerBias) logits = logits.add(params.routerBias);
  const { result: r, owners, filled, updates } = routeWith(
    op,
    logits,
    routeOpts,
    d,
    () => [{ who: `estimator ${est.name}`, state: est.estimator.state }],
    est,
  );
  const training = opts.training ?? true;
  const table = routingTable(r.indices, N);
  const ys = expertForward(dispatch(x, table), params, table, act);
  let y = combine(ys, table, r.weights);
  if (est.estimator.layer) {
    const out = est.estimator.layer({
      x,
      params,
      routing: r,
      table,
      expertOutputs: ys,
      y,
      activation: act,
      training,
      state: filled,
    }, est.options as never);
    if (!out || !(out.y instanceof Tensor) || out.y.shape.join() !== y.shape.join()) {
      fail(
        op,
        `estimator ${
          JSON.stringify(est.name)
        }'s layer step must return { y } of shape [${y.shape}]`,
      );
    }
    checkDeclared(op, { who: `estimator ${est.name}`, state: est.estimator.state }, out.state);
    y = out.y;
    Object.assign(updates, out.state ?? {});
  }
  // Inference leaves the state as it found it (no EMA or balancer updates from eval batches).
  const state = training ? orderedState(updates, filled, owners) : { ...(opts.state ?? {}) };
  return { ...r, y, table, state };
}

/** Parameters beyond the base ones must be the estimator's own. */
function checkExtraParams(op: string, params: MoeParams, e: Estimator, name: string): void {
  if (!params || typeof params !== "object") return;
  for (const key of Object.keys(params)) {
    if ((BASE_PARAMS as readonly string[]).includes(key) || key in (e.params ?? {})) continue;
    const owner = estimators().find((x) => key in (x.params ?? {}));
    if (owner) {
      fail(
        op,
        `params.${key} is the ${owner.params![key].doc} of estimator ${
          JSON.stringify(owner.name)
        }; the estimator is ${formatValue(name)}`,
      );
    }
  }
}
