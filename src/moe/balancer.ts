/**
 * Load balancers as a registry, applied at the routing op (the methods: docs/methods.md §4). A balancer is a pass over one router's
 * scores and selection: before the selection it may shift the scores the selection ranks (never
 * the gates, no gradient: loss-free's bias, BIP's prices); after it, it may add losses (the
 * auxiliary loss, the z-loss), update the state it declares and report metrics. `moe.route`
 * applies the balancers it is given, so every router built on it — `moe.layer`, the model, a
 * router a user writes — balances the same way, whatever the estimator.
 *
 * Balancers are plain values (`{ kind, config, … }`): the chosen set and its settings are part of
 * the traced graph, hence of a compiled step's signature. The three forms a balancer is given in
 * — a balancer object, a spec `{ kind, ...options }` (configurations, checkpoints) and a string
 * `aux:0.01,bip:4` (the command line) — all become balancer objects through the registry.
 */
import { fail, formatValue, MoejitError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { withDeprecatedK } from "../deprecation.ts";
import type { LayerState, StateDeclaration } from "./state.ts";

/** What a balancer sees of one router. */
export interface BalanceContext {
  /** Tensors of the routing; balancers find the marked router nodes in their graph. */
  routing: { scores: Tensor; weights: Tensor; indices: Tensor; counts: Tensor };
  /** Tokens, experts and experts per token. */
  T: number;
  N: number;
  topK: number;
  /** @deprecated the same as `topK` (kept for one release). */
  readonly k: number;
  /** The incoming state, with every declared name filled with its initial value. */
  state: LayerState;
  /**
   * Training (default) or inference. At inference balancers must not look across tokens of the
   * batch (that would break causality: a token's routing would depend on later tokens), so they
   * route with the state learned in training and update nothing.
   */
  training?: boolean;
}

/** What a balancer's `finish` returns. */
export interface BalanceOutput {
  /** Loss terms to add to the training loss (summed over layers by name). */
  losses?: Record<string, Tensor>;
  /** Updated state (only names the balancer declares). */
  state?: LayerState;
  /** Scalar metrics (per layer, by name), e.g. for logging. */
  metrics?: Record<string, Tensor>;
}

/**
 * A balancer: its kind and settings (they shape the graph, hence the compiled step), the state
 * it carries, and its two hooks.
 *
 * @example
 * ```ts
 * // A balancer that reports the largest load share and changes nothing.
 * const watch: mj.balance.Balancer = {
 *   kind: "watch",
 *   config: {},
 *   metrics: ["max_share"],
 *   finish: ({ routing, T, topK }) => ({
 *     metrics: { max_share: routing.counts.max().cast("f32").div(T * topK) },
 *   }),
 * };
 * mj.moe.route(logits, { topK: 2, balance: [watch] }).metrics.max_share;
 * ```
 */
export interface Balancer {
  /** The balancer's kind (its registered name, for balancers made through the registry). */
  readonly kind: string;
  /** Its settings: `{ kind, ...config }` is a spec that makes the same balancer again. */
  readonly config: Readonly<Record<string, unknown>>;
  /** State it carries between steps, with initial values. */
  readonly state?: StateDeclaration;
  /**
   * Names of the scalar metrics its `finish` reports (a training run logs them per layer in
   * metrics.jsonl, beside max_vio and the others).
   */
  readonly metrics?: readonly string[];
  /** A shift [N] of the selection scores, computed from the selection scores so far [T, N]. */
  selectionShift?(
    scores: Tensor,
    ctx: Omit<BalanceContext, "routing">,
  ): { shift: Tensor; state?: LayerState };
  /** After routing: loss terms, state updates and metrics. */
  finish?(ctx: BalanceContext): BalanceOutput;
}

/** A balancer in serializable form: its kind plus options of the kind's constructor. */
export type BalanceSpec = { kind: string } & Record<string, unknown>;

/**
 * A model's balancers: one list for every MoE layer, or one list per layer (`nLayers` lists;
 * an empty list leaves that layer unbalanced).
 */
export type BalanceConfig = BalanceSpec[] | BalanceSpec[][];

/** Flags and notes a balancer contributes to `megatron_args.txt`. */
export interface MegatronPart {
  /** Flags: name, value (none for a switch), and why, if it needs saying. */
  flags?: [name: string, value?: string | number, why?: string][];
  /** Methods Megatron-Core lacks: what, and the detail. */
  missing?: [what: string, detail: string][];
}

/**
 * A kind of balancer, registered under its name: its constructor and how the command line, the
 * model and the exports name and read it.
 */
export interface BalancerKind<O extends object = Record<string, unknown>> {
  /** The kind, as specs and `Balancer.kind` carry it ("auxLoss"). */
  readonly kind: string;
  /** One line: what it is and where it comes from. */
  readonly description: string;
  /** Makes the balancer from its options, checking them (unknown options are errors). */
  create(options: O): Balancer;
  /** Its command-line name and shorthands. */
  readonly cli: {
    /** `name[:number][:option=value]…` on the command line ("aux"). */
    name: string;
    /** The option the bare number sets ("alpha"). */
    main?: string;
    /** What the bare number is, when it must be an integer ("an integer iteration count"). */
    integer?: string;
    /** Other names with preset options, e.g. `{ "aux-seq": { scope: "sequence" } }`. */
    presets?: Readonly<Record<string, Partial<O>>>;
  };
  /** Options that depend on the run a model is trained on (auxLoss's per-sequence length). */
  forRun?(options: O, run: { seqLen: number }): O;
  /** The share of Hugging Face's `router_aux_loss_coef` this balancer stands for, if any. */
  hfRouterAuxLossCoef?(options: O, topK: number): number;
  /** Its Megatron-Core flags, or what Megatron-Core lacks. */
  megatron?(options: O, model: { topK: number }): MegatronPart;
}

const registry = new Map<string, BalancerKind>();

/**
 * Registers a kind of balancer: specs `{ kind, ...options }` in model configurations, strings on
 * the command line (`--balance <cli.name>[:number][:option=value]`) and `moe.route`/`moe.layer`
 * then make it by name. Registering the same object again does nothing.
 *
 * @example
 * ```ts
 * mj.balance.registerBalancer({
 *   kind: "watch",
 *   description: "reports the largest load share",
 *   cli: { name: "watch" },
 *   create: () => ({ kind: "watch", config: {}, metrics: ["max_share"], finish: ({ routing, T, topK }) => ({
 *     metrics: { max_share: routing.counts.max().cast("f32").div(T * topK) },
 *   }) }),
 * });
 * mj.nn.modelConfig({ balance: [{ kind: "auxLoss" }, { kind: "watch" }] });
 * ```
 */
export function registerBalancer<O extends object>(kind: BalancerKind<O>): void {
  const op = "balance.registerBalancer";
  const k = kind as unknown as BalancerKind;
  if (!k || typeof k !== "object") fail(op, `expected a balancer kind object, got ${typeof k}`);
  if (typeof k.kind !== "string" || !/^[A-Za-z][A-Za-z0-9]*$/.test(k.kind)) {
    fail(op, `kind must be letters and digits, starting with a letter, got ${formatValue(k.kind)}`);
  }
  if (typeof k.description !== "string" || !k.description) {
    fail(op, `${k.kind}: expected a one-line description`);
  }
  if (typeof k.create !== "function") fail(op, `${k.kind}: create must be a function`);
  const names = [k.cli?.name, ...Object.keys(k.cli?.presets ?? {})];
  for (const n of names) {
    if (typeof n !== "string" || !/^[a-z][a-z0-9-]*$/.test(n)) {
      fail(
        op,
        `${k.kind}: command-line names must be lowercase letters, digits and dashes, got ${
          formatValue(n)
        }`,
      );
    }
    const taken = cliNames().get(n);
    if (taken && taken.kind.kind !== k.kind) {
      fail(op, `${k.kind}: the command-line name ${n} is taken by ${taken.kind.kind}`);
    }
  }
  const prev = registry.get(k.kind);
  if (prev && prev !== k) {
    fail(op, `a balancer kind ${JSON.stringify(k.kind)} is already registered`);
  }
  registry.set(k.kind, k);
}

/**
 * The registered kinds of balancer, in registration order.
 *
 * @example
 * ```ts
 * for (const b of mj.balance.balancerKinds()) console.log(b.cli.name, b.description);
 * ```
 */
export function balancerKinds(): readonly BalancerKind[] {
  return [...registry.values()];
}

/**
 * The kind registered as `kind`, or undefined.
 *
 * @example
 * ```ts
 * mj.balance.balancerKind("bip")?.cli.name; // "bip"
 * ```
 */
export function balancerKind(kind: string): BalancerKind | undefined {
  return registry.get(kind);
}

/** Every command-line name with its kind and preset options. */
function cliNames(): Map<string, { kind: BalancerKind; preset: Record<string, unknown> }> {
  const out = new Map<string, { kind: BalancerKind; preset: Record<string, unknown> }>();
  for (const k of registry.values()) {
    out.set(k.cli.name, { kind: k, preset: {} });
    for (const [n, p] of Object.entries(k.cli.presets ?? {})) out.set(n, { kind: k, preset: p });
  }
  return out;
}

/** The option object of a spec (everything but its kind). */
function optionsOf(spec: BalanceSpec): Record<string, unknown> {
  const { kind: _, ...o } = spec;
  return o;
}

/**
 * The balancer a spec describes. `run.seqLen`, when given, fills options that depend on the
 * sequences a model is run on (an auxLoss with scope "sequence" defaults to it). Errors are the
 * kind's constructor's, or name the unknown kind.
 *
 * @example
 * ```ts
 * const b = mj.balance.balancerFromSpec({ kind: "bip", iters: 4, cap: 3 }); // = mj.balance.bip({ iters: 4, cap: 3 })
 * ```
 */
export function balancerFromSpec(spec: BalanceSpec, run?: { seqLen: number }): Balancer {
  const k = spec && typeof spec === "object" ? registry.get(spec.kind) : undefined;
  if (!k) {
    return fail(
      "balance",
      `unknown balancer ${formatValue(spec)}; expected kind ${[...registry.keys()].join(", ")}`,
    );
  }
  const o = optionsOf(spec);
  return k.create(run && k.forRun ? k.forRun(o, run) : o);
}

/**
 * The spec of a balancer made through the registry: `{ kind, ...config }` without unset
 * options. It makes an equal balancer again.
 *
 * @example
 * ```ts
 * mj.balance.specOf(mj.balance.zLoss({ beta: 0.01 })); // { kind: "zLoss", beta: 0.01 }
 * ```
 */
export function specOf(b: Balancer): BalanceSpec {
  const spec: BalanceSpec = { kind: b.kind };
  for (const [k, v] of Object.entries(b.config ?? {})) if (v !== undefined) spec[k] = v;
  return spec;
}

/** True for a balancer object (as opposed to a spec or a string). */
export function isBalancer(b: unknown): b is Balancer {
  return !!b && typeof b === "object" && typeof (b as Balancer).kind === "string" &&
    typeof (b as Balancer).config === "object" &&
    (typeof (b as Balancer).finish === "function" ||
      typeof (b as Balancer).selectionShift === "function");
}

/**
 * The balancers `balance` gives (a list of balancer objects, specs or strings, or one string of
 * comma-separated balancers), checked: each is a balancer, no kind twice. `op` names the caller
 * in errors.
 */
export function balancersOf(op: string, balance: unknown): Balancer[] {
  if (balance === undefined) return [];
  if (typeof balance === "string") {
    const parsed = parseBalance(balance, op);
    if (parsed.length && Array.isArray(parsed[0])) {
      fail(op, `balance gives one list per layer (";"); a single router takes one list`);
    }
    return balancersOf(op, parsed);
  }
  if (!Array.isArray(balance)) {
    fail(
      op,
      `balance must be an array of balancers, e.g. [mj.balance.auxLoss()], [{ kind: "auxLoss" }] or "aux:0.01", got ${
        formatValue(balance)
      }`,
    );
  }
  const list = balance.map((b, i): Balancer => {
    if (isBalancer(b)) return b;
    if (typeof b === "string") {
      const one = balancersOf(op, b);
      if (one.length !== 1) fail(op, `balance[${i}] must name one balancer, got ${formatValue(b)}`);
      return one[0];
    }
    if (
      b && typeof b === "object" && !Array.isArray(b) && typeof (b as BalanceSpec).kind === "string"
    ) {
      return rethrow(op, `balance[${i}]`, () => balancerFromSpec(b as BalanceSpec));
    }
    return fail(
      op,
      `balance[${i}] is not a balancer; make one with mj.balance.auxLoss/zLoss/lossFree/bip, or give a spec { kind, ...options } (kinds ${
        [...registry.keys()].join(", ")
      })`,
    );
  });
  const kinds = list.map((b) => b.kind);
  if (new Set(kinds).size !== kinds.length) {
    fail(op, `balance lists a balancer twice: ${kinds.join(", ")}`);
  }
  return list;
}

/** Runs `f`, turning a MoejitError into one of `op` about `where`. */
function rethrow<T>(op: string, where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    return fail(op, `${where}: ${e.message.split("\n")[0].replace(`${e.op}: `, "")}`);
  }
}

/** A number in a balancer string, or the text itself. */
function valueOf(text: string): unknown {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : text;
}

/** One balancer: `name[:number][:option=value]…`. */
function parseOne(part: string, op: string): BalanceSpec {
  const [name, ...args] = part.trim().split(":");
  const entry = cliNames().get(name);
  if (!entry) {
    const names = [...cliNames().keys()];
    fail(
      op,
      `unknown balancer ${JSON.stringify(name)}; expected ${names.join(", ")} or none`,
    );
  }
  const { kind, preset } = entry!;
  const spec: BalanceSpec = { kind: kind.kind, ...preset };
  args.forEach((arg, i) => {
    const eq = arg.indexOf("=");
    if (eq < 0) {
      const n = Number(arg);
      if (i > 0 || arg.trim() === "" || !(Number.isFinite(n) && n >= 0) || !kind.cli.main) {
        fail(
          op,
          `cannot read ${
            JSON.stringify(part)
          }; expected name[:number][:option=value]…, e.g. aux:0.01 or bip:4:cap=floor`,
        );
      }
      if (kind.cli.integer && !Number.isInteger(n)) {
        fail(op, `${name} takes ${kind.cli.integer}, got ${arg}`);
      }
      spec[kind.cli.main!] = n;
    } else {
      const key = arg.slice(0, eq), v = arg.slice(eq + 1);
      if (!key || key === "kind") {
        fail(op, `cannot read option ${JSON.stringify(arg)} in ${part}`);
      }
      spec[key] = valueOf(v);
    }
  });
  // The constructor's own check: option names and values as it takes them (seqLen 1 stands in
  // for the run's sequence length, known only when the model runs).
  try {
    balancerFromSpec(spec, { seqLen: 1 });
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    const msg = e.message.split("\n")[0].replace(`${e.op}: `, "");
    fail(
      op,
      `${JSON.stringify(part)}: ${msg.replace("expected one of ", "expected one of kind, ")}`,
    );
  }
  return spec;
}

/** One layer's list: comma-separated balancers, or `none`. */
function parseList(text: string, op: string): BalanceSpec[] {
  if (text.trim() === "none" || text.trim() === "") return [];
  return text.split(",").map((p) => parseOne(p, op));
}

/**
 * Parses balancers written as on the command line: comma-separated `name[:number][:option=value]…`
 * where `name` is a registered kind's command-line name or one of its presets (built in: `aux`,
 * `aux-seq`, `aux-hf`, `z`, `lossfree`, `bip`), the number sets the kind's main option (α, β,
 * the rate, the iteration count), and options are any others of its constructor; `none` for no
 * balancers. `;` separates per-layer lists (`aux;bip:4`: layer 0 the aux loss, layer 1 BIP).
 *
 * @example
 * ```ts
 * mj.balance.parseBalance("aux:0.01,bip:4:cap=floor"); // [{ kind: "auxLoss", alpha: 0.01 }, { kind: "bip", iters: 4, cap: "floor" }]
 * mj.balance.parseBalance("aux;none");                 // [[{ kind: "auxLoss" }], []]
 * ```
 */
export function parseBalance(text: string, op = "balance.parseBalance"): BalanceConfig {
  if (typeof text !== "string") fail(op, `expected a string, got ${formatValue(text)}`);
  if (text.includes(";")) return text.split(";").map((l) => parseList(l, op));
  return parseList(text, op);
}

/** One spec in command-line syntax. */
function formatOne(b: BalanceSpec): string {
  const k = registry.get(b.kind);
  if (!k) fail("balance.formatBalance", `unknown balancer kind ${formatValue(b.kind)}`);
  const o = optionsOf(b);
  let name = k!.cli.name;
  for (const [n, preset] of Object.entries(k!.cli.presets ?? {})) {
    const entries = Object.entries(preset as Record<string, unknown>);
    if (entries.length && entries.every(([key, v]) => o[key] === v)) {
      name = n;
      for (const [key] of entries) delete o[key];
      break;
    }
  }
  let text = name;
  const main = k!.cli.main;
  if (main !== undefined && o[main] !== undefined) {
    text += `:${o[main]}`;
    delete o[main];
  }
  for (const [key, v] of Object.entries(o)) if (v !== undefined) text += `:${key}=${v}`;
  return text;
}

/**
 * Balancer specs in command-line syntax: {@link parseBalance} reads the text back to equal specs.
 *
 * @example
 * ```ts
 * mj.balance.formatBalance([{ kind: "bip", iters: 4, cap: 3 }]); // "bip:4:cap=3"
 * mj.balance.formatBalance([[{ kind: "auxLoss" }], []]);         // "aux;none"
 * ```
 */
export function formatBalance(specs: BalanceConfig): string {
  const list = (l: readonly BalanceSpec[]) => (l.length ? l.map(formatOne).join(",") : "none");
  if (specs.length && specs.every((l) => Array.isArray(l))) {
    return (specs as BalanceSpec[][]).map(list).join(";");
  }
  return list(specs as BalanceSpec[]);
}

/** The balance context, with `k` as a deprecated alias of `topK`. */
export function balanceContext<T extends Omit<BalanceContext, "k" | "routing">>(
  ctx: T,
): T & { k: number } {
  return withDeprecatedK("balance context", ctx);
}
