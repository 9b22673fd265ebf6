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
 *     moe?: { router: [E, d], gate?: [E, f, d], up: [E, f, d], down: [E, d, f] },
 *     mlp?: { gate?: [f, d], up: [f, d], down: [d, f] },   // dense FFN layers
 *   }],
 *   finalNorm: { weight: [d], bias?: [d] },
 *   lmHead?: [V, d],                                   // absent with tied embeddings
 * }
 * ```
 */
import { fail, formatValue, MoejitError } from "../errors.ts";
import {
  auxLoss,
  type AuxLossOptions,
  type Balancer,
  bip,
  type BipOptions,
  lossFree,
  type LossFreeOptions,
  zLoss,
  type ZLossOptions,
} from "../passes/balance.ts";
import { defaultConfig, type DefaultOptions } from "../moe/estimators/default_moe.ts";

/**
 * A balancer in serializable form (config.json, CLI): its `kind` plus any option of the matching
 * constructor of `mj.balance` (auxLoss, zLoss, lossFree, bip). For an auxLoss with scope
 * "sequence", `seqLen` defaults to the length of the sequences the model is run on.
 *
 * @example
 * ```ts
 * const specs: mj.nn.BalanceSpec[] = [
 *   { kind: "auxLoss", alpha: 0.01, score: "softmax" },
 *   { kind: "bip", iters: 4, cap: "floor" },
 * ];
 * ```
 */
export type BalanceSpec =
  | ({ kind: "auxLoss" } & AuxLossOptions)
  | ({ kind: "zLoss" } & ZLossOptions)
  | ({ kind: "lossFree" } & LossFreeOptions)
  | ({ kind: "bip" } & BipOptions);

/**
 * A model's balancers: one list for every MoE layer, or one list per layer (`nLayers` lists;
 * an empty list leaves that layer unbalanced).
 */
export type BalanceConfig = BalanceSpec[] | BalanceSpec[][];

const BALANCER_KINDS = ["auxLoss", "zLoss", "lossFree", "bip"] as const;

/**
 * The balancer a spec describes, for a model run on sequences of `seqLen` tokens (the default
 * `seqLen` of an auxLoss with scope "sequence").
 *
 * @example
 * ```ts
 * const b = mj.nn.balancerOf({ kind: "bip", iters: 4, cap: 3 }, 128); // = mj.balance.bip({ iters: 4, cap: 3 })
 * ```
 */
export function balancerOf(spec: BalanceSpec, seqLen: number): Balancer {
  // The constructors reject unknown options: everything but `kind` goes to them unchanged.
  const opts = <T>(s: T) => {
    const { kind: _, ...o } = s as T & { kind: string };
    return o;
  };
  switch (spec.kind) {
    case "auxLoss": {
      const o = opts(spec);
      return auxLoss(o.scope === "sequence" ? { ...o, seqLen: o.seqLen ?? seqLen } : o);
    }
    case "zLoss":
      return zLoss(opts(spec));
    case "lossFree":
      return lossFree(opts(spec));
    case "bip":
      return bip(opts(spec));
    default:
      return fail(
        "modelConfig",
        `unknown balancer ${formatValue(spec)}; expected kind ${BALANCER_KINDS.join(", ")}`,
      );
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
 * Checks one balancer spec: a known kind, only options its constructor takes, values it accepts.
 * `where` names the spec in errors, e.g. "balance[1]" or "balance[0][2]".
 */
function checkBalanceSpec(b: unknown, where: string): void {
  if (
    !b || typeof b !== "object" || Array.isArray(b) ||
    !BALANCER_KINDS.includes((b as BalanceSpec).kind)
  ) {
    fail(
      "modelConfig",
      `unknown balancer ${
        formatValue(b)
      } at ${where}; expected kind auxLoss, zLoss, lossFree or bip`,
    );
  }
  // The constructor checks the option names (and lists the allowed ones) and their values;
  // seqLen 1 stands in for the model's sequence length, which is known only at run time.
  try {
    balancerOf(b as BalanceSpec, 1);
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
  ropeTheta: number;
  tiedEmbeddings: boolean;
  /** The FFN of every layer: a mixture of experts or a dense MLP. */
  ffn: "moe" | "dense";
  /** Expert (or dense) hidden size. */
  dFf: number;
  activation: "swiglu" | "gelu" | "relu";
  /** MoE only. */
  experts: number;
  topK: number;
  estimator: "topk" | "dense" | "default" | "sparsemixer" | "sparsemixer-v1";
  /** SparseMixer's ε (also written as router_jitter_noise for phimoe). */
  jitterEps: number;
  /**
   * Default MoE's options (estimator "default"; see `mj.moe.layer`'s `default`): EMA decay
   * `beta`, what the EMA averages (`ema`: "mean", or the two readings of the paper's scored
   * update, "scoredMean" and "scoredWeighted"), `mode` "forward" (the method) or "backwardOnly"
   * (the ablation), and `evalDefaults`. Partial options are completed with the defaults.
   *
   * ```ts
   * { estimator: "default", defaultMoe: { beta: 0.9, ema: "scoredWeighted" } }
   * ```
   */
  defaultMoe: DefaultOptions;
  /**
   * Load balancers of the MoE layers: one list for every layer, or one list per layer (an array
   * of `nLayers` lists; `[]` for a layer without balancers). Each spec is `{ kind, ...options }`
   * with the options of `mj.balance.auxLoss/zLoss/lossFree/bip`; unknown options are errors.
   *
   * ```ts
   * { balance: [{ kind: "auxLoss", alpha: 0.01 }, { kind: "zLoss" }] }     // every layer
   * { nLayers: 2, balance: [[{ kind: "auxLoss" }], [{ kind: "bip", iters: 4, cap: "floor" }]] }
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
  ropeTheta: 10000,
  tiedEmbeddings: true,
  ffn: "moe",
  dFf: 256,
  activation: "swiglu",
  experts: 8,
  topK: 2,
  estimator: "sparsemixer",
  jitterEps: 0.01,
  defaultMoe: { beta: 0.9, ema: "mean", mode: "forward", evalDefaults: false },
  balance: [{ kind: "auxLoss", alpha: 0.01 }],
  normalizeTopK: false,
  attnExperts: 1,
  attention: "kvExperts",
  attnTopK: 0,
  initStd: 0.02,
};

const CONFIG_KEYS = Object.keys(DEFAULT_CONFIG) as (keyof ModelConfig)[];

/** Default MoE's options completed with the defaults and checked (errors name the field). */
function defaultMoeOf(o: unknown): DefaultOptions {
  if (o === undefined) return { ...DEFAULT_CONFIG.defaultMoe };
  if (!o || typeof o !== "object" || Array.isArray(o)) {
    fail("modelConfig", `defaultMoe must be an object of options, got ${JSON.stringify(o)}`);
  }
  try {
    return { ...defaultConfig({ ...DEFAULT_CONFIG.defaultMoe, ...o as DefaultOptions }) };
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    const msg = e.message.split("\n")[0].replace(/^[^:]*: /, "").replaceAll("default.", "");
    return fail("modelConfig", `defaultMoe: ${msg}`);
  }
}

/** Fills defaults and checks a model configuration, with errors naming the field. */
export function modelConfig(partial: Partial<ModelConfig> = {}): ModelConfig {
  for (const k of Object.keys(partial)) {
    if (!CONFIG_KEYS.includes(k as keyof ModelConfig)) {
      fail(
        "modelConfig",
        `unknown field ${JSON.stringify(k)}; expected one of ${CONFIG_KEYS.join(", ")}`,
      );
    }
  }
  if (partial.balance !== undefined && !Array.isArray(partial.balance)) {
    fail(
      "modelConfig",
      `balance must be an array of balancer specs (e.g. [{ kind: "auxLoss", alpha: 0.01 }]) or one such array per layer, got ${
        formatValue(partial.balance)
      }`,
    );
  }
  const c: ModelConfig = {
    ...DEFAULT_CONFIG,
    ...partial,
    // A private copy: callers may edit the lists of the result.
    balance: (partial.balance ?? DEFAULT_CONFIG.balance).map((b) =>
      Array.isArray(b) ? [...b] : b
    ) as BalanceConfig,
    defaultMoe: defaultMoeOf(partial.defaultMoe),
  };
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
  if (typeof c.normalizeTopK !== "boolean") {
    fail("modelConfig", `normalizeTopK must be a boolean, got ${formatValue(c.normalizeTopK)}`);
  }
  if (c.dModel % c.nHeads !== 0) {
    fail("modelConfig", `dModel (${c.dModel}) must be divisible by nHeads (${c.nHeads})`);
  }
  if ((c.dModel / c.nHeads) % 2 !== 0) {
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
  oneOf("ffn", ["moe", "dense"]);
  oneOf("activation", ["swiglu", "gelu", "relu"]);
  oneOf("estimator", ["topk", "dense", "default", "sparsemixer", "sparsemixer-v1"]);
  oneOf("attention", ["kvExperts", "sharedKV"]);
  if (c.normalizeTopK && (c.estimator === "sparsemixer" || c.estimator === "sparsemixer-v1")) {
    fail(
      "modelConfig",
      `normalizeTopK does not apply to estimator ${
        formatValue(c.estimator)
      }: SparseMixer computes its own gate weights`,
    );
  }
  if (c.estimator === "sparsemixer" && c.topK > 2) {
    fail("modelConfig", `estimator "sparsemixer" supports topK 1 or 2, got ${c.topK}`);
  }
  if (c.estimator === "sparsemixer-v1" && c.topK !== 1) {
    fail("modelConfig", `estimator "sparsemixer-v1" is top-1 only, got topK ${c.topK}`);
  }
  for (const k of ["normEps", "ropeTheta", "initStd", "jitterEps"] as const) {
    if (typeof c[k] !== "number" || !(c[k] >= 0)) {
      fail("modelConfig", `${k} must be a non-negative number, got ${formatValue(c[k])}`);
    }
  }
  if (perLayer(c.balance)) {
    if (c.balance.length !== c.nLayers) {
      fail(
        "modelConfig",
        `balance given per layer must have one list per layer (nLayers = ${c.nLayers}), got ${c.balance.length}`,
      );
    }
    (c.balance as BalanceSpec[][]).forEach((list, l) =>
      list.forEach((b, i) => checkBalanceSpec(b, `balance[${l}][${i}]`))
    );
  } else {
    const list = c.balance.findIndex((b) => Array.isArray(b));
    if (list >= 0) {
      fail(
        "modelConfig",
        `balance mixes per-layer lists and balancer specs (balance[${list}] is a list, balance[${
          c.balance.findIndex((b) => !Array.isArray(b))
        }] is not); give one list of specs for every layer, or one list per layer`,
      );
    }
    c.balance.forEach((b, i) => checkBalanceSpec(b, `balance[${i}]`));
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
