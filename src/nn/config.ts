/**
 * The language model's configuration and the layout of its parameter tree. Parameters live in
 * plain nested objects of tensors (a parameter tree): checkpoints, optimizers and exports all
 * walk the same paths (`layers.0.attn.q`, …). Linear weights are `[out, in]` (PyTorch / Hugging
 * Face); stacked experts are `[E, out, in]`.
 *
 * ```
 * {
 *   embed: [V, d],
 *   layers: [{
 *     attnNorm: { weight: [d], bias?: [d] },
 *     attn: { q: [d, d], k: [d, d], v: [d, d], o: [d, d] },   // one attention
 *     attn: { router: [N, d], q: [N, d, d], k: [N, d, d] | [d, d],  // a mixture of N
 *             v: [N, d, d] | [d, d], o: [N, d, d] },             // (kvExperts | sharedKV)
 *     ffnNorm?: { weight: [d], bias?: [d] },          // pre-norm blocks only
 *     moe?: { router: [E, d], routerBias?: [E], gate?: [E, f, d], up: [E, f, d], down: [E, d, f] },
 *     mlp?: { gate?: [f, d], up: [f, d], down: [d, f] },   // dense FFN layers
 *   }],
 *   finalNorm: { weight: [d], bias?: [d] },
 *   lmHead?: [V, d],                                   // absent with tied embeddings
 * }
 * ```
 */
import { fail, formatValue, MoejitError } from "../errors.ts";
import { deprecated } from "../deprecation.ts";
import type { DefaultOptions } from "../moe/estimators/default_moe.ts";
import {
  type BalanceConfig,
  type Balancer,
  balancerFromSpec,
  balancerKinds,
  type BalanceSpec,
  isBalancer,
  parseBalance,
  specOf,
} from "../moe/balancers/index.ts";
import {
  type Estimator,
  estimatorChoices,
  estimatorNamed,
  estimatorOptions,
} from "../moe/estimators/index.ts";

export type { BalanceConfig, BalanceSpec };

/**
 * The balancer a spec describes, for a model run on sequences of `seqLen` tokens (what options
 * that depend on the run default to, e.g. the `seqLen` of an auxLoss with scope "sequence").
 *
 * @example
 * ```ts
 * const b = mj.nn.balancerOf({ kind: "bip", iters: 4, cap: 3 }, 128); // = mj.balance.bip({ iters: 4, cap: 3 })
 * ```
 */
export function balancerOf(spec: BalanceSpec, seqLen: number): Balancer {
  try {
    return balancerFromSpec(spec, { seqLen });
  } catch (e) {
    if (e instanceof MoejitError && e.op === "balance") {
      return fail("modelConfig", e.message.split("\n")[0].replace(/^balance: /, ""));
    }
    throw e;
  }
}

/** True when `balance` is given per layer (a list of balancer lists). */
function perLayer(balance: readonly unknown[]): boolean {
  return balance.length > 0 && balance.every((b) => Array.isArray(b));
}

/**
 * The balancer specs of MoE layer `layer`: the model-wide list, or that layer's own list when
 * `balance` is given per layer.
 *
 * @example
 * ```ts
 * const c = mj.nn.modelConfig({ nLayers: 2, balance: [[{ kind: "auxLoss" }], [{ kind: "bip" }]] });
 * mj.nn.layerBalance(c, 1); // [{ kind: "bip" }]
 * ```
 */
export function layerBalance(config: ModelConfig, layer: number): BalanceSpec[] {
  const b = config.balance;
  if (!perLayer(b)) return b as BalanceSpec[];
  if (!Number.isInteger(layer) || layer < 0 || layer >= b.length) {
    fail("layerBalance", `layer must be an integer in 0..${b.length - 1}, got ${layer}`);
  }
  return (b as BalanceSpec[][])[layer];
}

/**
 * Every balancer spec of a configuration, over all layers (with repeats when given per layer).
 *
 * @example
 * ```ts
 * const usesBip = mj.nn.allBalanceSpecs(config).some((b) => b.kind === "bip");
 * ```
 */
export function allBalanceSpecs(config: ModelConfig): BalanceSpec[] {
  return perLayer(config.balance)
    ? (config.balance as BalanceSpec[][]).flat()
    : config.balance as BalanceSpec[];
}

/**
 * One balancer as a spec: a spec is checked (a known kind, only options its constructor takes,
 * values it accepts), a balancer object becomes its spec. `where` names it in errors, e.g.
 * "balance[1]" or "balance[0][2]".
 */
function balanceSpecOf(given: unknown, where: string): BalanceSpec {
  let b = given;
  if (isBalancer(given)) {
    if (!balancerKinds().some((k) => k.kind === given.kind)) {
      fail(
        "modelConfig",
        `${where}: a balancer of kind ${
          formatValue(given.kind)
        }, which is not registered: a configuration holds specs, so register its kind with mj.balance.registerBalancer`,
      );
    }
    b = specOf(given);
  }
  const kinds = balancerKinds().map((k) => k.kind);
  if (
    !b || typeof b !== "object" || Array.isArray(b) ||
    !kinds.includes((b as BalanceSpec).kind)
  ) {
    fail(
      "modelConfig",
      `unknown balancer ${formatValue(b)} at ${where}; expected kind ${
        kinds.slice(0, -1).join(", ")
      } or ${
        kinds[kinds.length - 1]
      } (other kinds must be registered first: mj.balance.registerBalancer, or --import the module that registers them)`,
    );
  }
  // The constructor checks the option names (and lists the allowed ones) and their values;
  // seqLen 1 stands in for the model's sequence length, which is known only at run time.
  try {
    balancerFromSpec(b as BalanceSpec, { seqLen: 1 });
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    const msg = e.message.split("\n")[0].replace(`${e.op}: `, "");
    fail(
      "modelConfig",
      `${where} (${(b as BalanceSpec).kind}): ${
        msg.replace("expected one of ", "expected one of kind, ")
      }`,
    );
  }
  return { ...(b as BalanceSpec) };
}

/** The balance setting as specs: a --balance string is parsed, balancer objects become specs. */
function balanceConfigOf(balance: unknown): BalanceConfig {
  if (typeof balance === "string") {
    try {
      return parseBalance(balance, "modelConfig");
    } catch (e) {
      if (!(e instanceof MoejitError)) throw e;
      return fail(
        "modelConfig",
        `balance must be an array of balancer specs (e.g. [{ kind: "auxLoss", alpha: 0.01 }]), one such array per layer, or a string as --balance takes it (e.g. "aux:0.01"); ${
          e.message.split("\n")[0].replace(/^modelConfig: /, "")
        }`,
      );
    }
  }
  if (!Array.isArray(balance)) {
    fail(
      "modelConfig",
      `balance must be an array of balancer specs (e.g. [{ kind: "auxLoss", alpha: 0.01 }]), one such array per layer, or a string as --balance takes it (e.g. "aux:0.01"), got ${
        formatValue(balance)
      }`,
    );
  }
  if (perLayer(balance)) {
    return (balance as unknown[][]).map((list, l) =>
      list.map((b, i) => balanceSpecOf(b, `balance[${l}][${i}]`))
    );
  }
  const list = balance.findIndex((b) => Array.isArray(b));
  if (list >= 0) {
    fail(
      "modelConfig",
      `balance mixes per-layer lists and balancer specs (balance[${list}] is a list, balance[${
        balance.findIndex((b) => !Array.isArray(b))
      }] is not); give one list of specs for every layer, or one list per layer`,
    );
  }
  return balance.map((b, i) => balanceSpecOf(b, `balance[${i}]`));
}

/** The estimator whose options the deprecated field `defaultMoe` holds. */
const DEFAULT_MOE = "default";

/**
 * The deprecated `defaultMoe` field (Default MoE's options; configs saved for a while carried it
 * filled in for every estimator): checked as that estimator's options, moved to
 * `estimatorOptions` when the estimator is Default MoE, dropped otherwise. A warning when it
 * says anything.
 */
function moveDefaultMoe(c: ModelConfig, given: unknown): void {
  const e = estimatorNamed(DEFAULT_MOE)!;
  if (!given || typeof given !== "object" || Array.isArray(given)) {
    fail("modelConfig", `defaultMoe must be an object of options, got ${formatValue(given)}`);
  }
  let full: Record<string, unknown>;
  try {
    full = estimatorOptions("modelConfig", e, given as Record<string, unknown>);
  } catch (err) {
    if (!(err instanceof MoejitError)) throw err;
    return fail("modelConfig", `defaultMoe: ${err.message.split("\n")[0].replace(/^[^:]*: /, "")}`);
  }
  const defaults = estimatorOptions("modelConfig", e, {});
  const informative = c.estimator === DEFAULT_MOE ||
    Object.entries(full).some(([k, v]) => defaults[k] !== v);
  if (informative) {
    deprecated(
      "modelConfig",
      "field defaultMoe",
      `estimatorOptions (with estimator "${DEFAULT_MOE}")`,
    );
  }
  if (c.estimator !== DEFAULT_MOE) return;
  if (Object.keys(c.estimatorOptions).length) {
    fail(
      "modelConfig",
      "give Default MoE's options once, as estimatorOptions (defaultMoe is its deprecated name)",
    );
  }
  c.estimatorOptions = { ...(given as Record<string, unknown>) };
}

/**
 * Configuration fields that are also estimator options: an estimator declaring one of these
 * options takes the field's value (SparseMixer's ε is `jitterEps`, exported as PhiMoE's
 * router_jitter_noise).
 */
export const ESTIMATOR_FIELDS = ["jitterEps"] as const;

/**
 * The registered estimator a configuration names.
 *
 * @example
 * ```ts
 * mj.nn.estimatorOf(mj.nn.modelConfig()).name; // "sparsemixer"
 * ```
 */
export function estimatorOf(config: ModelConfig): Estimator {
  return estimatorNamed(config.estimator) ?? fail(
    "modelConfig",
    `estimator must be one of ${estimatorChoices()}, got ${
      formatValue(config.estimator)
    } (other estimators must be registered first: mj.moe.registerEstimator, or --import the module that registers them)`,
  );
}

/**
 * The options a configuration's estimator runs with, defaults filled in: `estimatorOptions`
 * plus the fields of ESTIMATOR_FIELDS the estimator declares.
 *
 * @example
 * ```ts
 * mj.nn.estimatorSettings(mj.nn.modelConfig({ estimator: "sparsemixer" })); // { jitterEps: 0.01, expertGrad: "code" }
 * ```
 */
export function estimatorSettings(config: ModelConfig): Record<string, unknown> {
  const e = estimatorOf(config);
  const given: Record<string, unknown> = { ...config.estimatorOptions };
  for (const f of ESTIMATOR_FIELDS) if (f in (e.options ?? {})) given[f] = config[f];
  return estimatorOptions("modelConfig", e, given, (n) => `estimatorOptions.${n}`);
}

export interface ModelConfig {
  vocabSize: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  /** Longest sequence (RoPE tables and causal masks are built for it). */
  maxSeqLen: number;
  /** "prenorm": x + attn(norm(x)), then + ffn(norm(·)); "parallel": x + attn(h) + ffn(h), h = norm(x). */
  block: "prenorm" | "parallel";
  norm: "rmsnorm" | "layernorm";
  normEps: number;
  /**
   * Position encoding: rotary embeddings in the rotate-half form of Hugging Face's
   * Llama/Mixtral ("rotateHalf", default), or none ("none": attention sees no positions but
   * the causal mask).
   */
  rope: "rotateHalf" | "none";
  /** RoPE's base θ (a positive number). */
  ropeTheta: number;
  tiedEmbeddings: boolean;
  /** The FFN of every layer: a mixture of experts or a dense MLP. */
  ffn: "moe" | "dense";
  /** Expert (or dense) hidden size. */
  dFf: number;
  activation: "swiglu" | "gelu" | "relu";
  /** MoE only. */
  experts: number;
  /** Experts per token. */
  topK: number;
  /** The router of each MoE layer adds a learned bias [experts] to its logits. */
  routerBias: boolean;
  /**
   * The routing gradient estimator, by its registered name (`mj.moe.estimators()`; built in:
   * topk, dense, default, sparsemixer, sparsemixer-v1).
   */
  estimator: string;
  /** The estimator's options (e.g. `{ beta: 0.99 }` for "default"); unknown names are errors. */
  estimatorOptions: Record<string, unknown>;
  /** SparseMixer's ε (also written as router_jitter_noise for phimoe). */
  jitterEps: number;
  /**
   * @deprecated Default MoE's options: give them as `estimatorOptions` with estimator "default"
   * (read for one more release, with a warning; `modelConfig` moves them there).
   */
  defaultMoe?: DefaultOptions;
  /**
   * Load balancers of the MoE layers: one list for every layer, or one list per layer (an array
   * of `nLayers` lists; `[]` for a layer without balancers). Each spec is `{ kind, ...options }`
   * with a registered kind and the options of its constructor (`mj.balance.auxLoss/zLoss/
   * lossFree/bip` for the built-ins); unknown options are errors. `modelConfig` also takes
   * balancer objects (made through the registry) and a string as --balance takes it, and stores
   * specs.
   *
   * ```ts
   * { balance: [{ kind: "auxLoss", alpha: 0.01 }, { kind: "zLoss" }] }     // every layer
   * { nLayers: 2, balance: [[{ kind: "auxLoss" }], [{ kind: "bip", iters: 4, cap: "floor" }]] }
   * { balance: "aux:0.01,z" }                                              // as on the command line
   * ```
   */
  balance: BalanceConfig;
  /**
   * Renormalise the top-k FFN gate weights to sum to 1 (Mixtral's convention). Default false:
   * the selected softmax probabilities are used as they are (Megatron, Default MoE, BAM).
   */
  normalizeTopK: boolean;
  /**
   * Attention experts per layer (BAM's mixture of attention, MoA); 1 is ordinary attention.
   * Every token goes to every attention expert, weighted by a softmax attention router.
   */
  attnExperts: number;
  /** MoA variant: every projection per expert ("kvExperts"), or per-expert Q/O with one shared K/V. */
  attention: "kvExperts" | "sharedKV";
  /** MoA routing: 0 = soft (every expert, the default), k = only the top-k gates (ablation). */
  attnTopK: number;
  /** Std of the normal initialisation of weights (output projections are scaled by 1/√(2L)). */
  initStd: number;
}

/** Defaults of a small byte-level MoE LM. */
export const DEFAULT_CONFIG: ModelConfig = {
  vocabSize: 256,
  dModel: 128,
  nLayers: 2,
  nHeads: 4,
  maxSeqLen: 128,
  block: "prenorm",
  norm: "rmsnorm",
  normEps: 1e-5,
  rope: "rotateHalf",
  ropeTheta: 10000,
  tiedEmbeddings: true,
  ffn: "moe",
  dFf: 256,
  activation: "swiglu",
  experts: 8,
  topK: 2,
  routerBias: false,
  estimator: "sparsemixer",
  estimatorOptions: {},
  jitterEps: 0.01,
  balance: [{ kind: "auxLoss", alpha: 0.01 }],
  normalizeTopK: false,
  attnExperts: 1,
  attention: "kvExperts",
  attnTopK: 0,
  initStd: 0.02,
};

const CONFIG_KEYS = [...Object.keys(DEFAULT_CONFIG), "defaultMoe"] as (keyof ModelConfig)[];

/** Balancers as `modelConfig` takes them: specs, balancer objects or a --balance string. */
export type BalanceInput =
  | BalanceConfig
  | string
  | readonly (BalanceSpec | Balancer)[]
  | readonly (readonly (BalanceSpec | Balancer)[])[];

/** What `modelConfig` takes: any fields of a ModelConfig, balancers in any of their forms. */
export type ModelConfigInput = Partial<Omit<ModelConfig, "balance">> & { balance?: BalanceInput };

/**
 * Fills defaults and checks a model configuration, with errors naming the field. Balancers may
 * be given as specs, balancer objects or a --balance string, and are stored as specs; an
 * estimator option that is a field of its own (ESTIMATOR_FIELDS) moves to that field.
 *
 * @example
 * ```ts
 * const c = mj.nn.modelConfig({ estimator: "default", estimatorOptions: { beta: 0.99 }, balance: "aux:0.01" });
 * ```
 */
export function modelConfig(partial: ModelConfigInput = {}): ModelConfig {
  for (const k of Object.keys(partial)) {
    if (!CONFIG_KEYS.includes(k as keyof ModelConfig)) {
      fail(
        "modelConfig",
        `unknown field ${JSON.stringify(k)}; expected one of ${CONFIG_KEYS.join(", ")}`,
      );
    }
  }
  // A private copy: callers may edit the lists of the result.
  const balance = balanceConfigOf(partial.balance ?? DEFAULT_CONFIG.balance);
  const c: ModelConfig = {
    ...DEFAULT_CONFIG,
    ...partial,
    balance,
    estimatorOptions: { ...(partial.estimatorOptions ?? DEFAULT_CONFIG.estimatorOptions) },
  };
  delete c.defaultMoe;
  if (partial.defaultMoe !== undefined) moveDefaultMoe(c, partial.defaultMoe);
  const posInt = (k: keyof ModelConfig) => {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      fail("modelConfig", `${k} must be a positive integer, got ${formatValue(v)}`);
    }
  };
  for (
    const k of [
      "vocabSize",
      "dModel",
      "nLayers",
      "nHeads",
      "maxSeqLen",
      "dFf",
      "experts",
      "topK",
      "attnExperts",
    ] as const
  ) posInt(k);
  if (!Number.isInteger(c.attnTopK) || c.attnTopK < 0 || c.attnTopK > c.attnExperts) {
    fail(
      "modelConfig",
      `attnTopK must be 0 (soft routing) or an integer in 1..attnExperts (${c.attnExperts}), got ${
        formatValue(c.attnTopK)
      }`,
    );
  }
  for (const k of ["normalizeTopK", "routerBias", "tiedEmbeddings"] as const) {
    if (typeof c[k] !== "boolean") {
      fail("modelConfig", `${k} must be a boolean, got ${formatValue(c[k])}`);
    }
  }
  if (c.dModel % c.nHeads !== 0) {
    fail("modelConfig", `dModel (${c.dModel}) must be divisible by nHeads (${c.nHeads})`);
  }
  if (c.rope !== "none" && (c.dModel / c.nHeads) % 2 !== 0) {
    fail(
      "modelConfig",
      `the head size dModel/nHeads (${c.dModel / c.nHeads}) must be even for RoPE`,
    );
  }
  if (c.topK > c.experts) {
    fail("modelConfig", `topK (${c.topK}) must not exceed experts (${c.experts})`);
  }
  const oneOf = <T>(k: keyof ModelConfig, vals: readonly T[]) => {
    if (!vals.includes(c[k] as T)) {
      fail(
        "modelConfig",
        `${k} must be one of ${vals.map((v) => formatValue(v)).join(", ")}, got ${
          formatValue(c[k])
        }`,
      );
    }
  };
  oneOf("block", ["prenorm", "parallel"]);
  oneOf("norm", ["rmsnorm", "layernorm"]);
  oneOf("rope", ["rotateHalf", "none"]);
  oneOf("ffn", ["moe", "dense"]);
  oneOf("activation", ["swiglu", "gelu", "relu"]);
  oneOf("attention", ["kvExperts", "sharedKV"]);
  const est = estimatorOf(c);
  if (c.normalizeTopK && est.ownGates) {
    fail(
      "modelConfig",
      `normalizeTopK does not apply to estimator ${
        formatValue(c.estimator)
      }: it computes its own gate weights`,
    );
  }
  const topKProblem = est.checkTopK?.(c.topK);
  if (topKProblem) fail("modelConfig", `estimator ${formatValue(c.estimator)} ${topKProblem}`);
  for (const k of ["normEps", "initStd", "jitterEps"] as const) {
    if (typeof c[k] !== "number" || !(c[k] >= 0)) {
      fail("modelConfig", `${k} must be a non-negative number, got ${formatValue(c[k])}`);
    }
  }
  if (typeof c.ropeTheta !== "number" || !(c.ropeTheta > 0) || !Number.isFinite(c.ropeTheta)) {
    fail(
      "modelConfig",
      `ropeTheta must be a positive finite number (RoPE's base; rope: "none" for no rotary embedding), got ${
        formatValue(c.ropeTheta)
      }`,
    );
  }
  if (!c.estimatorOptions || typeof c.estimatorOptions !== "object") {
    fail(
      "modelConfig",
      `estimatorOptions must be an object, got ${formatValue(c.estimatorOptions)}`,
    );
  }
  // An option that is a field of its own lives in the field (one place for one setting).
  for (const f of ESTIMATOR_FIELDS) {
    if (c.estimatorOptions[f] === undefined) continue;
    if (partial[f] !== undefined && partial[f] !== c.estimatorOptions[f]) {
      fail(
        "modelConfig",
        `${f} is given twice, as ${formatValue(partial[f])} and as estimatorOptions.${f} ${
          formatValue(c.estimatorOptions[f])
        }; give the field ${f} only`,
      );
    }
    (c as unknown as Record<string, unknown>)[f] = c.estimatorOptions[f];
    delete c.estimatorOptions[f];
  }
  if (c.jitterEps < 0 || typeof c.jitterEps !== "number") {
    fail("modelConfig", `jitterEps must be a non-negative number, got ${formatValue(c.jitterEps)}`);
  }
  estimatorSettings(c);
  if (perLayer(c.balance) && c.balance.length !== c.nLayers) {
    fail(
      "modelConfig",
      `balance given per layer must have one list per layer (nLayers = ${c.nLayers}), got ${c.balance.length}`,
    );
  }
  return c;
}

/** Every parameter path with its shape, in the tree's order. */
export function parameterShapes(c: ModelConfig): [string, number[]][] {
  const d = c.dModel, f = c.dFf, E = c.experts, V = c.vocabSize;
  const out: [string, number[]][] = [["embed", [V, d]]];
  const norm = (p: string) => {
    out.push([`${p}.weight`, [d]]);
    if (c.norm === "layernorm") out.push([`${p}.bias`, [d]]);
  };
  for (let i = 0; i < c.nLayers; i++) {
    const L = `layers.${i}`;
    norm(`${L}.attnNorm`);
    if (c.attnExperts > 1) {
      const N = c.attnExperts;
      out.push([`${L}.attn.router`, [N, d]]);
      for (const w of ["q", "k", "v", "o"]) {
        const shared = c.attention === "sharedKV" && (w === "k" || w === "v");
        out.push([`${L}.attn.${w}`, shared ? [d, d] : [N, d, d]]);
      }
    } else {
      for (const w of ["q", "k", "v", "o"]) out.push([`${L}.attn.${w}`, [d, d]]);
    }
    if (c.block === "prenorm") norm(`${L}.ffnNorm`);
    if (c.ffn === "moe") {
      out.push([`${L}.moe.router`, [E, d]]);
      if (c.routerBias) out.push([`${L}.moe.routerBias`, [E]]);
      if (c.activation === "swiglu") out.push([`${L}.moe.gate`, [E, f, d]]);
      out.push([`${L}.moe.up`, [E, f, d]], [`${L}.moe.down`, [E, d, f]]);
    } else {
      if (c.activation === "swiglu") out.push([`${L}.mlp.gate`, [f, d]]);
      out.push([`${L}.mlp.up`, [f, d]], [`${L}.mlp.down`, [d, f]]);
    }
  }
  norm("finalNorm");
  if (!c.tiedEmbeddings) out.push(["lmHead", [V, d]]);
  return out;
}

/** Parameter counts of a configuration (what BAM's Table 9 reports). */
export interface ParameterCount {
  /** Every parameter. */
  total: number;
  /**
   * Parameters one token uses: every attention expert under soft routing (attnTopK of them
   * otherwise, with shared K/V counted once), the topK FFN experts, the routers, norms and
   * embeddings (input and output).
   */
  active: number;
}

/**
 * Total and active parameters of a configuration.
 *
 * @example
 * ```ts
 * mj.nn.parameterCount(mj.nn.modelConfig({ experts: 8, topK: 2 })); // { total, active }
 * ```
 */
export function parameterCount(config: ModelConfig): ParameterCount {
  const c = config;
  let total = 0, active = 0;
  const attnUsed = c.attnTopK > 0 ? c.attnTopK : c.attnExperts;
  for (const [path, shape] of parameterShapes(c)) {
    const size = shape.reduce((a, b) => a * b, 1);
    total += size;
    const leaf = path.split(".").slice(2).join(".");
    if (/^moe\.(gate|up|down)$/.test(leaf)) active += (size / c.experts) * c.topK;
    else if (/^attn\.[qkvo]$/.test(leaf) && shape.length === 3) {
      active += (size / c.attnExperts) * attnUsed;
    } else active += size;
  }
  // A tied model's output projection is the embedding: counted once in both.
  return { total, active };
}
