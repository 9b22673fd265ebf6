/**
 * Routing gradient estimators as a registry. An estimator decides which experts a token uses and
 * with which gate weights, and through the backward of those weights (usually a `mj.customVjp`
 * with `estimator: true`) what gradient the router receives; optionally it also changes the
 * layer's output once the experts have run (Default MoE's EMA defaults, the dense estimator).
 *
 * Everything that names estimators — `moe.route`, `moe.layer`, model configurations, the command
 * line, checkpoints, the Hugging Face and Megatron exports — reads this registry, so a new
 * estimator is one object passed to {@link registerEstimator}: the built-ins register through the
 * same call.
 */
import { fail, formatValue } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { withDeprecatedK } from "../deprecation.ts";
import type { Routing, ScoreFunction } from "./routing.ts";
import type { RoutingTable } from "./table.ts";
import type { ExpertActivation, ExtraParam, MoeParams } from "./experts.ts";
import type { LayerState, StateDeclaration } from "./state.ts";

/**
 * What an estimator's `route` (and an estimator function) receives. The sampling inputs of
 * `route`/`layer` (`key`, `seed`, `noise`) are passed through unchanged (undefined when not
 * given), so a sampling estimator can draw its own randomness: fresh per jitted call from `key`,
 * fixed from `seed`, or injected `noise` for tests.
 *
 * @example
 * ```ts
 * // Gumbel-max sampling from the scores, with draws from the step's key.
 * const sampled: mj.moe.EstimatorFn = ({ logits, scores, topK, key, seed }) => {
 *   const u = mj.rand(logits.shape, key !== undefined ? { key } : { seed });
 *   const indices = logits.sub(u.neg().add(1).log().neg().log()).topk(topK).indices;
 *   return { indices, weights: scores.gather(-1, indices) };
 * };
 * mj.moe.route(logits, { topK: 2, estimator: sampled, key: stepKey });
 * ```
 */
export interface EstimatorContext {
  /** [T, N] router logits (differentiable, marked "moe.logits"). */
  logits: Tensor;
  /** [T, N] scores (softmax or sigmoid of the logits, differentiable, marked "moe.scores"). */
  scores: Tensor;
  /** [T, N] scores plus the selection bias, without gradient: what a top-k selection ranks. */
  selection: Tensor;
  /**
   * [N] the selection bias without gradient (the route's `bias` plus balancers' shifts, in score
   * units), if any: for estimators that select from something other than `selection`.
   */
  bias?: Tensor;
  /** How the logits became scores. */
  score: ScoreFunction;
  /** Experts per token. */
  topK: number;
  /** @deprecated the same as `topK` (kept for one release). */
  readonly k: number;
  /** Tokens and experts. */
  T: number;
  N: number;
  /** Training routing (sampling, state updates), or inference. */
  training: boolean;
  /** The random key tensor given to route/layer (fresh draws per jitted call), if any. */
  key?: Tensor;
  /** The fixed seed given to route/layer, if any. */
  seed?: number;
  /** Injected draws given to route/layer, if any (their meaning is the estimator's). */
  noise?: Record<string, Tensor>;
  /** For an estimator function: the `jitterEps` given to route/layer, if any. */
  jitterEps?: number;
}

/** What an estimator's `route` returns. */
export interface EstimatorRouting {
  /** [T, topK] i32 selected experts. */
  indices: Tensor;
  /** [T, topK] f32 gate weights; their backward is the estimator. */
  weights: Tensor;
  /** [T, topK] f32 gate multipliers in the weights (SparseMixer's c); ones when absent. */
  scale?: Tensor;
}

/**
 * A routing estimator as a function: returns the selected experts and the gate weights, whose
 * backward (usually a mj.customVjp with `estimator: true`) defines the estimator.
 */
export type EstimatorFn = (ctx: EstimatorContext) => { indices: Tensor; weights: Tensor };

/** What an estimator's `layer` step receives, after the experts ran. */
export interface EstimatorLayerContext {
  /** [T, d] the layer's input. */
  x: Tensor;
  /** The layer's parameters. */
  params: MoeParams;
  /** The routing (after balancers and `normalizeTopK`). */
  routing: Routing;
  /** The routing table the experts ran through. */
  table: RoutingTable;
  /** [T·k, d] expert outputs in expert-contiguous order (row `table.destRow[t·k + j]`). */
  expertOutputs: Tensor;
  /** [T, d] the combined output Σ_j weights[t, j]·E_{indices[t, j]}(x_t). */
  y: Tensor;
  /** Activation of ungated experts. */
  activation: ExpertActivation;
  training: boolean;
  /** The incoming state, with the estimator's declared state filled with initial values. */
  state: LayerState;
}

/** One option of an estimator. */
export interface EstimatorOption {
  /** Its value when not given. */
  default: unknown;
  /** What it is (for --help, model cards and errors). */
  doc: string;
  /** The problem with a value, as "must be …, got …"; undefined when the value is fine. */
  check?(value: unknown): string | undefined;
}

/**
 * A top-level option of `moe.route`/`moe.layer` that sets the estimator's options (the
 * built-ins' `jitterEps`, `expertGrad` and `default`). Giving it with another estimator is an
 * error that says `option <name> <appliesTo>`.
 */
export interface EstimatorShorthand {
  /** Who takes it, for errors: e.g. "applies to the sparsemixer estimators". */
  appliesTo: string;
  /** The one option it sets; absent: its value is an object of options. */
  option?: string;
}

/**
 * A routing gradient estimator. `O` is the type of its options once defaults are filled in.
 *
 * @example
 * ```ts
 * // Top-k routing whose gates are the selected scores raised to a power (a toy variant).
 * mj.moe.registerEstimator<{ power: number }>({
 *   name: "topk-power",
 *   description: "top-k with gates π^p",
 *   options: { power: { default: 2, doc: "exponent p", check: (v) => typeof v === "number" ? undefined : `must be a number, got ${v}` } },
 *   route: ({ selection, scores, topK }, { power }) => {
 *     const indices = selection.topk(topK).indices;
 *     return { indices, weights: scores.gather(-1, indices).pow(power) };
 *   },
 * });
 * mj.moe.route(logits, { topK: 2, estimator: { kind: "topk-power", power: 3 } });
 * ```
 */
export interface Estimator<O extends object = Record<string, unknown>> {
  /** The name configs and the command line use (lowercase letters, digits and dashes). */
  readonly name: string;
  /** One line: what it is and where it comes from. */
  readonly description: string;
  /** Its options, by name, with defaults and checks. */
  readonly options?: Readonly<Record<string, EstimatorOption>>;
  /** Top-level route/layer options that set its options (see {@link EstimatorShorthand}). */
  readonly shorthands?: Readonly<Record<string, EstimatorShorthand>>;
  /** It draws randomness: it accepts the `key`, `seed` and `noise` of route/layer. */
  readonly sampling?: boolean;
  /** Its gate weights are its own rather than the selected scores: `normalizeTopK` does not apply. */
  readonly ownGates?: boolean;
  /** Its indices are in [0, N) by construction (the route then adds no index check). */
  readonly trustedIndices?: boolean;
  /** Why it cannot route `topK` experts per token ("supports topK 1 or 2, got 3"), if it cannot. */
  checkTopK?(topK: number): string | undefined;
  /** Parameters it adds to the layer (e.g. SparseMixer-v1's `omega`). */
  readonly params?: Readonly<Record<string, ExtraParam>>;
  /** State it carries between steps, with initial values. */
  readonly state?: StateDeclaration;
  /** Selection and gate weights. */
  route(ctx: EstimatorContext, options: O): EstimatorRouting;
  /** After the experts ran: the layer's output (and state updates), if it changes them. */
  layer?(ctx: EstimatorLayerContext, options: O): { y: Tensor; state?: LayerState };
  /**
   * The Hugging Face family whose inference routing equals this estimator's (so a checkpoint
   * can carry that family's label): "mixtral" (softmax → top-k), "phimoe" (SparseMixer-v2).
   */
  readonly hfFamily?: "mixtral" | "phimoe";
  /**
   * Why these options make inference differ from `hfFamily`'s routing (undefined: they do not),
   * e.g. Default MoE with `evalDefaults`, which adds default outputs at inference too.
   */
  leavesHfFamily?(options: O): string | undefined;
  /** How it routes at inference, in words (for the reasons a family does not match). */
  readonly inference?: string;
  /** What Megatron-Core makes of it: a note when Megatron trains the same way, else what is missing. */
  megatron?(options: O): { same: string } | { missing: string; detail: string };
  /** Rows for a model card: its settings in words. */
  card?(options: O): [string, string][];
}

/** An estimator in serializable form: its name, or `{ kind: name, ...options }`. */
export type EstimatorSpec = string | ({ kind: string } & Record<string, unknown>);

const registry = new Map<string, Estimator>();

/**
 * Registers an estimator under its name, for `moe.route`, `moe.layer`, model configurations and
 * the command line (`--estimator <name>`). Registering the same object again does nothing;
 * another estimator under a taken name is an error.
 *
 * @example
 * ```ts
 * mj.moe.registerEstimator({
 *   name: "topk-sqrt",
 *   description: "top-k routing with gates √π (a toy variant)",
 *   route: ({ selection, scores, topK }) => {
 *     const indices = selection.topk(topK).indices;
 *     return { indices, weights: scores.gather(-1, indices).sqrt() };
 *   },
 * });
 * ```
 */
export function registerEstimator<O extends object>(estimator: Estimator<O>): void {
  const op = "moe.registerEstimator";
  const e = estimator as unknown as Estimator;
  if (!e || typeof e !== "object") fail(op, `expected an estimator object, got ${typeof e}`);
  if (typeof e.name !== "string" || !/^[a-z][a-z0-9-]*$/.test(e.name)) {
    fail(
      op,
      `name must be lowercase letters, digits and dashes, starting with a letter, got ${
        formatValue(e.name)
      }`,
    );
  }
  if (typeof e.description !== "string" || !e.description) {
    fail(op, `${e.name}: expected a one-line description`);
  }
  if (typeof e.route !== "function") fail(op, `${e.name}: route must be a function`);
  if (e.layer !== undefined && typeof e.layer !== "function") {
    fail(op, `${e.name}: layer must be a function`);
  }
  for (const [name, o] of Object.entries(e.options ?? {})) {
    if (!o || typeof o !== "object" || !("default" in o) || typeof o.doc !== "string") {
      fail(op, `${e.name}: option ${name} must be { default, doc, check? }`);
    }
    const problem = o.check?.(o.default);
    if (problem) fail(op, `${e.name}: the default of option ${name} ${problem}`);
  }
  for (const [key, s] of Object.entries(e.shorthands ?? {})) {
    if (s.option !== undefined && !(s.option in (e.options ?? {}))) {
      fail(op, `${e.name}: shorthand ${key} sets option ${s.option}, which it does not declare`);
    }
  }
  const prev = registry.get(e.name);
  if (prev && prev !== e) {
    fail(op, `an estimator named ${JSON.stringify(e.name)} is already registered`);
  }
  registry.set(e.name, e);
}

/**
 * The registered estimators, in registration order.
 *
 * @example
 * ```ts
 * for (const e of mj.moe.estimators()) console.log(`${e.name}: ${e.description}`);
 * ```
 */
export function estimators(): readonly Estimator[] {
  return [...registry.values()];
}

/**
 * The estimator registered under `name`, or undefined.
 *
 * @example
 * ```ts
 * mj.moe.estimatorNamed("sparsemixer")?.hfFamily; // "phimoe"
 * ```
 */
export function estimatorNamed(name: string): Estimator | undefined {
  return registry.get(name);
}

/** Every shorthand key some registered estimator declares. */
export function shorthandKeys(): string[] {
  const keys = new Set<string>();
  for (const e of registry.values()) for (const k of Object.keys(e.shorthands ?? {})) keys.add(k);
  return [...keys];
}

/** An estimator with its options checked and defaults filled. */
export interface ResolvedEstimator {
  estimator: Estimator;
  options: Record<string, unknown>;
  /** The name errors and exports use ("custom" for an unnamed function). */
  name: string;
  /** True for an estimator function (its context carries `jitterEps`). */
  fn: boolean;
}

/**
 * Options of `e` from `given` (name → value): unknown names are errors, missing ones take their
 * defaults. `label(name)` names an option in errors, e.g. "default.beta".
 *
 * @example
 * ```ts
 * estimatorOptions("moe.layer", estimatorNamed("default")!, { beta: 0.5 }); // { beta: 0.5, ema: "mean", … }
 * ```
 */
export function estimatorOptions(
  op: string,
  e: Estimator,
  given: Record<string, unknown>,
  label: (name: string) => string = (n) => n,
): Record<string, unknown> {
  const declared = e.options ?? {};
  for (const name of Object.keys(given)) {
    if (!(name in declared)) {
      const known = Object.keys(declared);
      fail(
        op,
        `unknown option ${JSON.stringify(label(name))} of estimator ${JSON.stringify(e.name)}; ${
          known.length ? `expected one of ${known.map(label).join(", ")}` : "it takes no options"
        }`,
      );
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(declared)) {
    const v = given[name] === undefined ? o.default : given[name];
    const problem = o.check?.(v);
    if (problem) fail(op, `${label(name)} ${problem}`);
    out[name] = v;
  }
  return out;
}

/** The names of the registered estimators, quoted, for "must be one of" errors. */
export function estimatorChoices(): string {
  return [...registry.keys()].map((n) => formatValue(n)).join(", ");
}

/**
 * The estimator `value` names (a registered name, a spec `{ kind, ...options }`, an estimator
 * object or an estimator function; default "topk"), with its options from the spec and from the
 * shorthand options found in `opts`. `op` names the caller in errors.
 */
export function resolveEstimator(
  op: string,
  value: unknown,
  opts: Record<string, unknown> = {},
): ResolvedEstimator {
  let e: Estimator;
  let given: Record<string, unknown> = {};
  let fn = false;
  if (value === undefined) value = "topk";
  if (typeof value === "function") {
    e = functionEstimator(value as EstimatorFn);
    fn = true;
  } else if (typeof value === "string") {
    e = registry.get(value) ?? fail(
      op,
      `estimator must be one of ${estimatorChoices()}, got ${formatValue(value)}`,
    );
  } else if (
    value && typeof value === "object" && typeof (value as Estimator).route === "function"
  ) {
    e = value as Estimator;
  } else if (
    value && typeof value === "object" && typeof (value as { kind: unknown }).kind === "string"
  ) {
    const { kind, ...rest } = value as { kind: string };
    e = registry.get(kind) ?? fail(
      op,
      `estimator must be one of ${estimatorChoices()}, got ${formatValue(kind)}`,
    );
    given = rest;
  } else {
    return fail(
      op,
      `estimator must be a registered name (${estimatorChoices()}), a spec { kind, ...options }, an estimator or a function, got ${
        formatValue(value)
      }`,
    );
  }
  const labels = new Map<string, string>();
  for (const key of shorthandKeys()) {
    if (opts[key] === undefined) continue;
    const mine = e.shorthands?.[key];
    if (fn && key in FN_CONTEXT) continue;
    if (!mine) {
      const owner = estimators().find((x) => x.shorthands?.[key])!;
      fail(
        op,
        `option ${key} ${owner.shorthands![key].appliesTo}, not ${
          formatValue(fn ? "a custom estimator" : e.name)
        }`,
      );
    }
    if (mine.option !== undefined) {
      given = { ...given, [mine.option]: opts[key] };
      labels.set(mine.option, key);
    } else {
      const v = opts[key];
      if (!v || typeof v !== "object" || Array.isArray(v)) {
        fail(op, `${key} must be an options object, got ${formatValue(v)}`);
      }
      for (const [name, x] of Object.entries(v as Record<string, unknown>)) {
        given = { ...given, [name]: x };
        labels.set(name, `${key}.${name}`);
      }
    }
  }
  const options = estimatorOptions(op, e, given, (n) => labels.get(n) ?? n);
  return { estimator: e, options, name: e.name, fn };
}

/** Context fields of the function form that shorthand options fill. */
const FN_CONTEXT: Readonly<Record<string, true>> = { jitterEps: true };

/** An estimator function as an estimator: it samples if it wants to, and sets no options. */
function functionEstimator(f: EstimatorFn): Estimator {
  return {
    name: "custom",
    description: "an estimator function",
    sampling: true,
    route: (ctx) => f(ctx),
  };
}

/**
 * The estimator context, with `k` as a deprecated alias of `topK` (a warning on first use).
 */
export function estimatorContext(ctx: Omit<EstimatorContext, "k">): EstimatorContext {
  return withDeprecatedK("estimator context", ctx) as EstimatorContext;
}
