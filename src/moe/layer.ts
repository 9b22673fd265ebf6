/**
 * The dropless MoE FFN: route → routing table → dispatch → grouped expert MLP → weighted
 * combine. SwiGLU experts (`down(silu(gate·x) ⊙ up·x)`) when params have `gate`, otherwise
 * `down(act(up·x))` with act = gelu or relu.
 */
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { stopGradient } from "../ops/meta.ts";
import { constant, describe } from "../ops/prim.ts";
import { checkChoice, checkKeys } from "./options.ts";
import {
  checkK,
  estimatorOf,
  route,
  ROUTE_KEYS,
  type RouteOptions,
  routerScores,
  type Routing,
} from "./route.ts";
import type { Balancer } from "../passes/balance.ts";
import { defaultConfig, defaultMoe, type DefaultOptions } from "./estimators/default_moe.ts";
import { takeRowsTrusted } from "../ops/indexing.ts";
import { type RoutingTable, routingTable } from "./table.ts";
import { combine, dispatch, groupedMatmul } from "./dispatch.ts";

/**
 * Expert parameters: `router` [N, d]; `up` [N, f, d]; `down` [N, d, f]; SwiGLU adds `gate`;
 * SparseMixer-v1 may add its per-channel gate scale `omega` [d] (init ones).
 */
export interface MoeParams {
  router: Tensor;
  up: Tensor;
  down: Tensor;
  gate?: Tensor;
  omega?: Tensor;
}

/** State a layer carries between steps (functional: pass it in, take the new one out). */
export interface LayerState {
  /** Default MoE: one default vector per expert, [N, d] (zeros when absent). */
  ehat?: Tensor;
  /** Loss-free balancing's selection bias [N]. */
  lossFreeBias?: Tensor;
  /** BIP balancing's dual prices q [N]. */
  bipQ?: Tensor;
}

export interface LayerOptions extends RouteOptions {
  /** Expert activation when params have no `gate` (default gelu). */
  activation?: "gelu" | "relu";
  /** Default MoE options (estimator "default"). */
  default?: DefaultOptions;
  /** State from the previous step (Default MoE's `ehat`). */
  state?: LayerState;
  /**
   * SparseMixer: the expert-weight gradient carries the gate multiplier c like the released
   * code ("code", default), or not, like the paper's Algorithm 1 ("paper").
   */
  expertGrad?: "code" | "paper";
  /** Load balancers (mj.balance.auxLoss, zLoss, lossFree, bip), in any combination. */
  balance?: Balancer[];
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

export const LAYER_KEYS = [
  ...ROUTE_KEYS,
  "activation",
  "default",
  "state",
  "expertGrad",
  "balance",
] as const;

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
  const known = ["router", "up", "down", "gate", "omega"];
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
  if (params.omega !== undefined) checkParam("omega", params.omega, [d]);
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
  const estimator = estimatorOf("moe.layer", opts.estimator);
  const expertGrad = checkChoice(
    "moe.layer",
    "expertGrad",
    opts.expertGrad,
    ["code", "paper"],
    "code",
  );
  if (params.omega && estimator !== "sparsemixer-v1") {
    fail(
      "moe.layer",
      `params.omega is SparseMixer-v1's per-channel gate scale; the estimator is ${
        formatValue(estimator)
      }`,
    );
  }
  if (opts.default !== undefined && estimator !== "default") {
    fail(
      "moe.layer",
      `option default configures estimator "default", not ${formatValue(estimator)}`,
    );
  }
  const { activation: _a, default: defaultOpts, state, expertGrad: _g, balance, ...routeOpts } =
    opts;
  if (state !== undefined) checkKeys("moe.layer state", state, ["ehat", "lossFreeBias", "bipQ"]);
  const balancers = checkBalancers(balance);
  const training = opts.training ?? true;
  const [T] = x.shape;
  const k = opts.k;
  const inState = (state ?? {}) as Record<string, Tensor>;
  const logits = x.matmul(params.router.transpose());
  // Balancers that move the selection (loss-free bias, BIP prices) see the scores first.
  const newState: Record<string, Tensor> = {};
  // Each sees the selection scores so far (scores + the user's bias + earlier shifts).
  let bias = routeOpts.bias;
  for (const b of balancers) {
    if (!b.selectionShift) continue;
    const scores = stopGradient(routerScores(logits, routeOpts.score ?? "softmax"));
    const s = b.selectionShift(bias ? scores.add(bias) : scores, {
      T,
      N,
      k,
      state: inState,
      training,
    });
    bias = bias ? bias.add(s.shift) : s.shift;
    Object.assign(newState, s.state ?? {});
  }
  const r = route(logits, { ...routeOpts, ...(bias ? { bias } : {}) });
  const table = routingTable(r.indices, N);
  const ys = expertForward(dispatch(x, table), params, table, act);
  let y: Tensor;
  if (expertGrad === "paper" && (estimator === "sparsemixer" || estimator === "sparsemixer-v1")) {
    // Forward c·p_D·E; experts see p_D (no c), the router sees ⟨g, E⟩ as in the code.
    const unscaled = stopGradient(r.weights.div(r.scale));
    const toExperts = combine(ys, table, unscaled);
    const toRouter = combine(stopGradient(ys), table, r.weights);
    y = toExperts.add(stopGradient(combine(ys, table, r.weights).sub(toExperts)))
      .add(toRouter.sub(stopGradient(toRouter)));
  } else {
    y = combine(ys, table, r.weights);
  }
  if (params.omega) y = y.mul(params.omega);
  const losses: Record<string, Tensor> = {};
  for (const b of balancers) {
    if (!b.finish) continue;
    const f = b.finish({ routing: r, T, N, k, state: inState, training });
    for (const [name, v] of Object.entries(f.losses ?? {}) as [string, Tensor][]) {
      losses[name] = losses[name] ? losses[name].add(v) : v;
    }
    Object.assign(newState, f.state ?? {});
  }
  if (estimator === "dense") {
    // Forward equals top-k; the gradient is that of the dense mixture Σ_i π_i E_i(x) (§2.3).
    const all = allExperts(x, params, act); // [N, T, d]
    const dense = all.mul(r.scores.transpose().unsqueeze(2)).sum(0);
    y = dense.sub(stopGradient(dense)).add(stopGradient(y));
  } else if (estimator === "default") {
    const d = x.shape[1];
    const ehat = state?.ehat ?? constant(0, [N, d], "f32");
    const outputs = takeRowsTrusted(ys, table.destRow).reshape([T, r.indices.shape[1], d]);
    const dm = defaultMoe({
      scores: r.scores,
      indices: r.indices,
      outputs,
      ehat,
      training,
      config: defaultConfig(defaultOpts),
    });
    if (dm.term) y = y.add(dm.term);
    newState.ehat = dm.ehat;
  }
  // Inference leaves the state as it found it (no EMA or balancer updates from eval batches).
  return { ...r, y, table, losses, state: training ? newState : { ...inState } };
}

function checkBalancers(balance: unknown): Balancer[] {
  if (balance === undefined) return [];
  if (!Array.isArray(balance)) {
    fail("moe.layer", "balance must be an array of balancers, e.g. [mj.balance.auxLoss()]");
  }
  balance.forEach((b, i) => {
    if (!b || typeof b !== "object" || typeof (b as Balancer).kind !== "string") {
      fail(
        "moe.layer",
        `balance[${i}] is not a balancer; make one with mj.balance.auxLoss/zLoss/lossFree/bip`,
      );
    }
  });
  const kinds = balance.map((b) => (b as Balancer).kind);
  if (new Set(kinds).size !== kinds.length) {
    fail("moe.layer", `balance lists a balancer twice: ${kinds.join(", ")}`);
  }
  return balance as Balancer[];
}
