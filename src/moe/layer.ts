/**
 * The dropless MoE FFN: route → routing table → dispatch → grouped expert MLP → weighted
 * combine. SwiGLU experts (`down(silu(gate·x) ⊙ up·x)`) when params have `gate`, otherwise
 * `down(act(up·x))` with act = gelu or relu.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { stopGradient } from "../ops/meta.ts";
import { describe } from "../ops/prim.ts";
import { checkChoice, checkKeys } from "./options.ts";
import { checkK, route, ROUTE_KEYS, type RouteOptions, type Routing } from "./route.ts";
import { type RoutingTable, routingTable } from "./table.ts";
import { combine, dispatch, groupedMatmul } from "./dispatch.ts";

/** Expert parameters: `router` [N, d]; `up` [N, f, d]; `down` [N, d, f]; SwiGLU adds `gate`. */
export interface MoeParams {
  router: Tensor;
  up: Tensor;
  down: Tensor;
  gate?: Tensor;
}

export interface LayerOptions extends RouteOptions {
  /** Expert activation when params have no `gate` (default gelu). */
  activation?: "gelu" | "relu";
}

export interface LayerResult extends Routing {
  /** [T, d] output. */
  y: Tensor;
  /** The routing table used (destination rows, offsets, …). */
  table: RoutingTable;
  /** Loss terms added by balancers (filled by later features). */
  losses: Record<string, Tensor>;
  /** State carried between steps (e.g. EMA defaults, balancer state). */
  state: Record<string, Tensor>;
}

export const LAYER_KEYS = [...ROUTE_KEYS, "activation"] as const;

function checkParam(name: string, t: unknown, shape: number[]): Tensor {
  if (!(t instanceof Tensor) || t.dtype !== "f32" || t.shape.join() !== shape.join()) {
    fail(
      "moe.layer",
      `params.${name} must be f32[${shape.join(", ")}], got ${
        t instanceof Tensor ? describe(t) : typeof t
      }`,
    );
  }
  return t;
}

/** Shapes of the expert parameters, checked: [N, d, f, swiglu]. */
export function checkMoeParams(x: Tensor, params: MoeParams): [number, number, number, boolean] {
  if (!params || typeof params !== "object") fail("moe.layer", "expected a params object");
  const known = ["router", "up", "down", "gate"];
  for (const k of Object.keys(params)) {
    if (!known.includes(k)) {
      fail("moe.layer", `unknown parameter ${JSON.stringify(k)}; expected ${known.join(", ")}`);
    }
  }
  if (!(x instanceof Tensor) || x.ndim !== 2 || x.dtype !== "f32") {
    fail("moe.layer", `expected x f32[T, d], got ${x instanceof Tensor ? describe(x) : typeof x}`);
  }
  const d = x.shape[1];
  if (!(params.router instanceof Tensor) || params.router.ndim !== 2) {
    fail("moe.layer", `params.router must be f32[N, ${d}]`);
  }
  const N = params.router.shape[0];
  checkParam("router", params.router, [N, d]);
  if (!(params.up instanceof Tensor) || params.up.ndim !== 3) {
    fail("moe.layer", `params.up must be f32[${N}, f, ${d}]`);
  }
  const f = params.up.shape[1];
  checkParam("up", params.up, [N, f, d]);
  checkParam("down", params.down, [N, d, f]);
  if (params.gate !== undefined) checkParam("gate", params.gate, [N, f, d]);
  return [N, d, f, params.gate !== undefined];
}

function activate(h: Tensor, act: "gelu" | "relu"): Tensor {
  return act === "gelu" ? h.gelu() : h.relu();
}

/** Expert outputs for expert-ordered rows `xs` ([T·k, d] → [T·k, d]). */
export function expertForward(
  xs: Tensor,
  params: MoeParams,
  table: RoutingTable,
  act: "gelu" | "relu",
): Tensor {
  const h = params.gate
    ? groupedMatmul(xs, params.gate, table).silu().mul(groupedMatmul(xs, params.up, table))
    : activate(groupedMatmul(xs, params.up, table), act);
  return groupedMatmul(h, params.down, table);
}

/** Every expert on every token: [N, T, d] (for the dense estimator). */
export function allExperts(x: Tensor, params: MoeParams, act: "gelu" | "relu"): Tensor {
  const xb = x.unsqueeze(0); // [1, T, d], broadcast over experts
  const proj = (w: Tensor) => xb.matmul(w.swapAxes(1, 2)); // [N, T, f]
  const h = params.gate
    ? proj(params.gate).silu().mul(proj(params.up))
    : activate(proj(params.up), act);
  return h.matmul(params.down.swapAxes(1, 2)); // [N, T, d]
}

/**
 * The whole dropless MoE FFN on `x` [T, d].
 *
 * @example
 * ```ts
 * const { y, counts } = mj.moe.layer(x, { router, up, down }, { k: 2, activation: "gelu" });
 * ```
 */
export function layer(x: Tensor, params: MoeParams, opts: LayerOptions): LayerResult {
  checkKeys("moe.layer", opts, LAYER_KEYS);
  const [N] = checkMoeParams(x, params);
  checkK("moe.layer", opts.k, N);
  const act = checkChoice("moe.layer", "activation", opts.activation, ["gelu", "relu"], "gelu");
  if (params.gate && opts.activation !== undefined) {
    fail(
      "moe.layer",
      "activation applies to gelu/relu experts; params with `gate` are SwiGLU experts",
    );
  }
  const { activation: _a, ...routeOpts } = opts;
  const logits = x.matmul(params.router.transpose());
  const r = route(logits, routeOpts);
  const table = routingTable(r.indices, N);
  const ys = expertForward(dispatch(x, table), params, table, act);
  let y = combine(ys, table, r.weights);
  if (opts.estimator === "dense") {
    // Forward equals top-k; the gradient is that of the dense mixture Σ_i π_i E_i(x) (§2.3).
    const all = allExperts(x, params, act); // [N, T, d]
    const dense = all.mul(r.scores.transpose().unsqueeze(2)).sum(0);
    y = dense.sub(stopGradient(dense)).add(stopGradient(y));
  }
  return { ...r, y, table, losses: {}, state: {} };
}
