/**
 * Routing: router logits → scores → balancers' selection shifts → the estimator's selection and
 * gate weights → balancers' losses, state and metrics. The estimator (registered by name, given
 * as a spec, an estimator object or a function) decides the selection and the router's
 * gradient; the balancers act on the scores and the selection, so any estimator composes with
 * any balancer, in `moe.route` as in `moe.layer` and every router built on them.
 */
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { mark, stopGradient } from "../ops/meta.ts";
import { checkIndex } from "../ops/indexing.ts";
import { constant, describe } from "../ops/prim.ts";
import { renamed } from "../deprecation.ts";
import { checkChoice, checkKeys } from "./options.ts";
import {
  type Estimator,
  estimatorContext,
  type EstimatorFn,
  estimators,
  type EstimatorSpec,
  type ResolvedEstimator,
  resolveEstimator,
  shorthandKeys,
} from "./estimators/index.ts";
import {
  type BalanceContext,
  balanceContext,
  type Balancer,
  balancerKinds,
  balancersOf,
  type BalanceSpec,
} from "./balancers/index.ts";
import { expertCounts, routerScores, type Routing, type ScoreFunction } from "./routing.ts";
import {
  checkStateOwners,
  filledState,
  type LayerState,
  orderedState,
  type StateOwner,
} from "./state.ts";

export { expertCounts, routerScores };
export type { Routing };

export interface RouteOptions {
  /** Experts per token (required; `k` is its deprecated name). */
  topK?: number;
  /** @deprecated the old name of `topK` (kept for one release, with a warning). */
  k?: number;
  /** How logits become scores (default softmax). */
  score?: ScoreFunction;
  /**
   * Renormalise the k gate weights to sum to 1 (default false), after any estimator (for
   * SparseMixer the weights c·p_D; with k = 1 every weight becomes 1). Default MoE's default
   * term and EMA keep the raw scores π.
   */
  normalizeTopK?: boolean;
  /** @deprecated the old name of `normalizeTopK` (kept for one release, with a warning). */
  normalize?: boolean;
  /**
   * [N], added for selection only: never to the weights, no gradient. Top-k, "dense" and
   * "default" add it to the scores they rank; the SparseMixer estimators add it to the logits
   * their drop rule, sampling and argmax see (their gates stay the unbiased masked scores).
   */
  bias?: Tensor;
  /**
   * The routing gradient estimator (default "topk"): a registered name (see
   * `mj.moe.estimators()`), a spec `{ kind, ...options }`, an estimator object, or a function.
   */
  estimator?: EstimatorSpec | Estimator | EstimatorFn;
  /**
   * Load balancers, in any combination: balancer objects (`mj.balance.auxLoss()`), specs
   * (`{ kind: "bip", iters: 4 }`) or strings (`"aux:0.01,bip:4"`).
   */
  balance?: readonly (Balancer | BalanceSpec | string)[] | string;
  /** State from the previous step (balancers' and the estimator's, by name). */
  state?: LayerState;
  /** Training behaviour (sampling, state updates); false gives eval routing (default true). */
  training?: boolean;
  /** SparseMixer: ε of the drop rule (default 0.01 for v2, 0.1 for v1). */
  jitterEps?: number;
  /** Injected draws for a sampling estimator (SparseMixer: exponential [k, T, N], uniform [k, T]). */
  noise?: Record<string, Tensor>;
  /**
   * Random key tensor (fresh draws per jitted call) or a fixed seed, for sampling estimators
   * (also handed to a custom estimator, with `noise` and `jitterEps`).
   */
  key?: Tensor;
  seed?: number;
}

/** What `moe.route` returns: the routing, and what its balancers added. */
export interface RouteResult extends Routing {
  /** Loss terms added by balancers (e.g. load_balancing_loss, z_loss). */
  losses: Record<string, Tensor>;
  /** State for the next step (balancers' and the estimator's). */
  state: LayerState;
  /** Scalar metrics reported by balancers. */
  metrics: Record<string, Tensor>;
}

/** Options every router takes. */
export const ROUTE_KEYS = [
  "topK",
  "k",
  "score",
  "normalizeTopK",
  "normalize",
  "bias",
  "estimator",
  "balance",
  "state",
  "training",
  "noise",
  "key",
  "seed",
] as const;

/** The keys route and layer accept: their own plus every registered estimator's shorthands. */
export function routeKeys(own: readonly string[]): string[] {
  return [...new Set([...own, ...shorthandKeys()])];
}

export function checkLogits(op: string, logits: Tensor): [number, number] {
  if (!(logits instanceof Tensor)) {
    fail(op, `expected router logits as a Tensor, got ${typeof logits}`);
  }
  if (logits.ndim !== 2 || logits.dtype !== "f32") {
    fail(op, `expected router logits f32[T, N], got ${describe(logits)}`);
  }
  return [logits.shape[0], logits.shape[1]];
}

export function checkTopK(op: string, k: unknown, N: number): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > N) {
    fail(
      op,
      `topK must be an integer in 1..${N} (the number of experts), got ${JSON.stringify(k)}`,
    );
  }
  return k;
}

/** Old option names moved to the new ones (a warning the first time each is used). */
export function currentNames<T extends object>(op: string, opts: T): T {
  if (!opts || typeof opts !== "object") fail(op, `expected an options object, got ${typeof opts}`);
  return renamed(op, renamed(op, opts, "k", "topK"), "normalize", "normalizeTopK");
}

/** The estimator in options, checked against the routing it must do. */
export function estimatorFor(
  op: string,
  opts: RouteOptions,
  topK: number,
  resolved?: ResolvedEstimator,
): ResolvedEstimator {
  const r = resolved ??
    resolveEstimator(op, opts.estimator, opts as unknown as Record<string, unknown>);
  const problem = r.estimator.checkTopK?.(topK);
  if (problem) fail(op, `estimator ${JSON.stringify(r.name)} ${problem}`);
  if (!r.estimator.sampling) {
    for (const key of ["noise", "key", "seed"] as const) {
      if (opts[key] !== undefined) {
        const sampling = estimators().filter((e) => e.sampling).map((e) => e.name);
        fail(
          op,
          `option ${key} applies to sampling estimators (${
            sampling.join(", ")
          }, or a function), not ${formatValue(r.name)}`,
        );
      }
    }
  }
  return r;
}

/** Every state name a registered estimator or balancer kind declares. */
function declaredStateNames(): Set<string> {
  const names = new Set<string>();
  for (const e of estimators()) for (const n of Object.keys(e.state ?? {})) names.add(n);
  for (const k of balancerKinds()) {
    // A kind's state is that of the balancers it makes: probe with default options.
    try {
      for (const n of Object.keys(k.create({}).state ?? {})) names.add(n);
    } catch {
      // A kind whose defaults are incomplete declares what its balancers declare when used.
    }
  }
  return names;
}

/** The state passed in, checked: tensors under names some estimator or balancer declares. */
export function checkState(op: string, state: unknown, owners: readonly StateOwner[]): void {
  if (state === undefined) return;
  if (!state || typeof state !== "object" || Array.isArray(state)) {
    fail(op, `state must be an object of tensors, got ${formatValue(state)}`);
  }
  const known = declaredStateNames();
  for (const o of owners) for (const n of Object.keys(o.state ?? {})) known.add(n);
  for (const [name, t] of Object.entries(state as Record<string, unknown>)) {
    if (!known.has(name)) {
      fail(
        `${op} state`,
        `unknown option ${JSON.stringify(name)}; expected one of ${[...known].join(", ")}`,
      );
    }
    if (t !== undefined && !(t instanceof Tensor)) {
      fail(op, `state.${name} must be a Tensor, got ${formatValue(t)}`);
    }
  }
}

/** Fails when a hook returned state its owner does not declare. */
export function checkDeclared(op: string, owner: StateOwner, out: LayerState | undefined): void {
  for (const name of Object.keys(out ?? {})) {
    if (!(name in (owner.state ?? {}))) {
      fail(
        op,
        `${owner.who} returned state ${name}, which it does not declare; list it in its \`state\``,
      );
    }
  }
}

/** What routing hands to `moe.layer`, besides the result. */
export interface RoutingInternals {
  result: RouteResult;
  estimator: ResolvedEstimator;
  balancers: Balancer[];
  owners: StateOwner[];
  /** The incoming state with every declared name filled in. */
  filled: LayerState;
  /** State updates so far (balancers'). */
  updates: LayerState;
}

/**
 * Routing as `moe.route` does it, for `moe.route` and `moe.layer` (`op` names the caller in
 * errors; `d` sizes declared state).
 */
export function routeWith(
  op: string,
  logits: Tensor,
  opts: RouteOptions,
  d: number,
  extraOwners: (r: ResolvedEstimator) => StateOwner[] = () => [],
  resolved?: ResolvedEstimator,
): RoutingInternals {
  const [T, N] = checkLogits(op, logits);
  const topK = checkTopK(op, opts.topK, N);
  const score = checkChoice(op, "score", opts.score, ["softmax", "sigmoid"], "softmax");
  const est = estimatorFor(op, opts, topK, resolved);
  for (const key of ["normalizeTopK", "training"] as const) {
    if (opts[key] !== undefined && typeof opts[key] !== "boolean") {
      fail(op, `${key} must be a boolean, got ${formatValue(opts[key])}`);
    }
  }
  if (opts.bias !== undefined) {
    if (
      !(opts.bias instanceof Tensor) || opts.bias.dtype !== "f32" || opts.bias.ndim !== 1 ||
      opts.bias.shape[0] !== N
    ) {
      fail(
        op,
        `bias must be f32[${N}] (one per expert), got ${
          opts.bias instanceof Tensor ? describe(opts.bias) : typeof opts.bias
        }`,
      );
    }
  }
  const balancers = balancersOf(op, opts.balance);
  const owners: StateOwner[] = [
    ...balancers.map((b) => ({ who: `balancer ${b.kind}`, state: b.state })),
    ...extraOwners(est),
  ];
  checkStateOwners(op, owners);
  checkState(op, opts.state, owners);
  const training = opts.training ?? true;
  const filled = filledState(opts.state, owners, { N, d, topK });
  const updates: LayerState = {};

  const marked = mark(logits, "moe.logits");
  const scores = routerScores(logits, score);
  // Balancers that move the selection (loss-free bias, BIP prices) see the selection scores so
  // far: the scores, the route's bias and earlier balancers' shifts.
  let bias = opts.bias;
  for (const b of balancers) {
    if (!b.selectionShift) continue;
    const s = stopGradient(scores);
    const ctx = balanceContext({ T, N, topK, state: filled, training });
    const out = b.selectionShift(bias ? s.add(bias) : s, ctx as Omit<BalanceContext, "routing">);
    checkDeclared(op, { who: `balancer ${b.kind}`, state: b.state }, out.state);
    bias = bias ? bias.add(out.shift) : out.shift;
    Object.assign(updates, out.state ?? {});
  }

  const selection = stopGradient(bias ? scores.add(stopGradient(bias)) : scores);
  const ctx = estimatorContext({
    logits: marked,
    scores,
    selection,
    ...(bias ? { bias } : {}),
    score,
    topK,
    T,
    N,
    training,
    key: opts.key,
    seed: opts.seed,
    noise: opts.noise,
    ...(est.fn ? { jitterEps: opts.jitterEps } : {}),
  });
  const r = est.estimator.route(ctx, est.options as never);
  const who = est.fn ? "the custom estimator" : `estimator ${JSON.stringify(est.name)}`;
  if (!r || !(r.indices instanceof Tensor) || !(r.weights instanceof Tensor)) {
    fail(op, `${est.fn ? "a custom estimator" : who} must return { indices, weights } tensors`);
  }
  for (
    const [name, t, dtype] of [["indices", r.indices, "i32"], [
      "weights",
      r.weights,
      "f32",
    ]] as const
  ) {
    if (t.dtype !== dtype || t.shape.join() !== [T, topK].join()) {
      fail(op, `${who}'s ${name} must be ${dtype}[${T}, ${topK}], got ${describe(t)}`);
    }
  }
  // The indices enter at the routing op, whoever called it (moe.layer routes through it).
  const indices = est.estimator.trustedIndices
    ? r.indices
    : checkIndex("moe.route", r.indices, N, `${who}'s experts`);
  let weights = r.weights;
  const scale = r.scale ?? constant(1, [T, topK], "f32");
  if (opts.normalizeTopK) weights = weights.div(weights.sum(-1, true));
  const routing: Routing = { indices, weights, scores, counts: expertCounts(indices, N), scale };

  const losses: Record<string, Tensor> = {};
  const metrics: Record<string, Tensor> = {};
  for (const b of balancers) {
    if (!b.finish) continue;
    const f = b.finish(
      balanceContext({ routing, T, N, topK, state: filled, training }) as BalanceContext,
    );
    checkDeclared(op, { who: `balancer ${b.kind}`, state: b.state }, f.state);
    for (const [name, v] of Object.entries(f.losses ?? {})) {
      losses[name] = losses[name] ? losses[name].add(v) : v;
    }
    for (const [name, v] of Object.entries(f.metrics ?? {})) {
      if (!(b.metrics ?? []).includes(name)) {
        fail(
          op,
          `balancer ${b.kind} reported metric ${name}, which it does not declare; list it in its \`metrics\``,
        );
      }
      if (!(v instanceof Tensor) || v.size !== 1) {
        fail(op, `balancer ${b.kind}'s metric ${name} must be a scalar tensor`);
      }
      metrics[name] = v;
    }
    for (const name of b.metrics ?? []) {
      if (!(name in (f.metrics ?? {}))) {
        fail(op, `balancer ${b.kind} declares metric ${name} but did not report it`);
      }
    }
    Object.assign(updates, f.state ?? {});
  }
  // Inference leaves the state as it found it (no EMA or balancer updates from eval batches).
  const state = training ? orderedState(updates, filled, owners) : { ...(opts.state ?? {}) };
  return {
    result: { ...routing, losses, state, metrics },
    estimator: est,
    balancers,
    owners,
    filled,
    updates,
  };
}

/**
 * Routes tokens to experts, applying the balancers given.
 *
 * @example
 * ```ts
 * const { indices, weights, counts } = mj.moe.route(x.matmul(wRouter.transpose()), { topK: 2 });
 * const grin = mj.moe.route(logits, { topK: 2, estimator: "sparsemixer", key: stepKey });
 * const lf = mj.moe.route(logits, { topK: 2, balance: "lossfree:0.001", state });
 * state = lf.state; // { lossFreeBias }
 * ```
 */
export function route(logits: Tensor, options: RouteOptions): RouteResult {
  // The experts are not known here: an estimator's own layer step and state belong to moe.layer
  // (routing with "dense" or "default" is top-k routing).
  const opts = currentNames("moe.route", options);
  checkKeys("moe.route", opts, routeKeys(ROUTE_KEYS));
  return routeWith("moe.route", logits, opts, 0).result;
}
