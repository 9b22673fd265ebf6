/**
 * Which Hugging Face family, if any, computes the same function as a moejit configuration.
 *
 * A checkpoint carries a family's `model_type`/`architectures` only when transformers, reading
 * `config.json` + `model.safetensors` with that family's modeling code in float32, gives the
 * logits moejit gives at inference (within 1e-4 relative, whatever the step count). The
 * decision is data: each family lists what it requires of a configuration, each requirement
 * with the reason a configuration fails it. A configuration that no family accepts is written
 * as moejit's own model type, with those reasons in its README and config.json.
 *
 * What the families compute (transformers' modeling_llama.py, modeling_mixtral.py,
 * modeling_phimoe.py, all pre-norm decoders with RoPE in the rotate-half form and bias-free
 * projections):
 *  - Llama: RMSNorm, dense SwiGLU MLP (`act(gate_proj x) · up_proj x`);
 *  - Mixtral: RMSNorm, SwiGLU experts, router softmax over all experts → top-k → renormalise the
 *    k weights to sum to 1 (any k);
 *  - PhiMoE: `nn.LayerNorm` with bias, SwiGLU experts, SparseMixer at inference: twice, an
 *    ε-mask `(max − z)/max(|z|, max) > 2ε` (ε = `router_jitter_noise`), the argmax, its weight
 *    the masked softmax (not renormalised), the second pass without the first expert — always
 *    two experts.
 */
import {
  allBalanceSpecs,
  balancerOf,
  DEFAULT_CONFIG,
  estimatorOf,
  estimatorSettings,
  type ModelConfig,
} from "../nn/config.ts";
import { estimatorNamed } from "../moe/estimators/index.ts";

/** The Hugging Face families moejit exports to when the function matches. */
export type HfFamilyName = "llama" | "mixtral" | "phimoe";

/** One thing a family requires of a configuration. */
export interface HfRequirement {
  /** True when the configuration satisfies it. */
  holds(c: ModelConfig): boolean;
  /** For a configuration that fails it: the setting, its value, and what the family does. */
  because(c: ModelConfig): string;
}

/** A Hugging Face family: its names, what it requires, and what a run aiming at it defaults to. */
export interface HfFamilySpec {
  /** `model_type` in config.json. */
  modelType: HfFamilyName;
  /** `architectures[0]` in config.json (the transformers class). */
  architecture: string;
  /** The family's name in prose. */
  title: string;
  /**
   * True when a run's FFN kind and estimator aim at this family: its `defaults` then fill the
   * settings the user did not choose (the examples' CLI).
   */
  selects(c: ModelConfig): boolean;
  /** The settings that make a run selected by `selects` match the family. */
  defaults: Partial<ModelConfig>;
  /** Every requirement; the family matches when all hold. */
  requires: readonly HfRequirement[];
}

/** The Hugging Face family whose inference routing the configuration's estimator shares. */
const routingFamily = (c: ModelConfig) => estimatorNamed(c.estimator)?.hfFamily;

const show = (v: unknown) => JSON.stringify(v);

/** `field` must equal `value`; `what` says what the family does instead. */
function equal<K extends keyof ModelConfig>(
  field: K,
  value: ModelConfig[K],
  what: string,
): HfRequirement {
  return {
    holds: (c) => c[field] === value,
    because: (c) => `${field} ${show(c[field])}: ${what}`,
  };
}

/** Requirements every family shares. */
const DECODER: readonly HfRequirement[] = [
  {
    holds: (c) => c.attnExperts === 1,
    because: (c) => `attnExperts ${c.attnExperts}: no Hugging Face family has attention experts`,
  },
  equal(
    "block",
    "prenorm",
    "the family is a pre-norm decoder (attention, then the FFN, each after its own norm); a parallel block has no post_attention_layernorm",
  ),
  equal(
    "activation",
    "swiglu",
    "the family's FFN is gated SiLU (w1/w3, gate_proj/up_proj); an ungated FFN leaves out w3/gate_proj, which transformers would initialise at random",
  ),
  equal(
    "rope",
    "rotateHalf",
    "the family's attention applies rotary position embeddings (rotate-half form)",
  ),
];

/** Balancer kinds of a configuration that shift the selection (loss-free's bias, BIP's prices). */
function selectionShifters(c: ModelConfig): string[] {
  const kinds = allBalanceSpecs(c).filter((b) => balancerOf(b, c.maxSeqLen).selectionShift)
    .map((b) => b.kind);
  return [...new Set(kinds)];
}

/** Balancers that move moejit's own selection: no softmax-router family can. */
const NO_SELECTION_BIAS: HfRequirement = {
  holds: (c) => c.ffn !== "moe" || selectionShifters(c).length === 0,
  because: (c) =>
    `balance ${
      selectionShifters(c).join("+")
    }: its per-expert selection bias changes which experts moejit picks at inference, and the family's router has no slot for it`,
};

/** Estimator options that change inference away from the family's routing (see `leavesHfFamily`). */
const estimatorLeaves = (c: ModelConfig) =>
  c.ffn === "moe" ? estimatorOf(c).leavesHfFamily?.(estimatorSettings(c)) : undefined;
const ESTIMATOR_INFERENCE: HfRequirement = {
  holds: (c) => estimatorLeaves(c) === undefined,
  because: (c) => estimatorLeaves(c) ?? "",
};

/** The families' routers are bias-free linear maps. */
const NO_ROUTER_BIAS = equal(
  "routerBias",
  false,
  "the family's router (block_sparse_moe.gate) has no bias",
);

/**
 * The families, in the order they are tried. A family is its requirements: nothing else decides
 * the label, so a new family is a change to this table; an estimator joins a family by its
 * `hfFamily` (the estimator registry), a balancer leaves every MoE family when it shifts the
 * selection.
 */
export const HF_FAMILIES: readonly HfFamilySpec[] = [
  {
    modelType: "llama",
    architecture: "LlamaForCausalLM",
    title: "Llama",
    selects: (c) => c.ffn === "dense",
    defaults: { norm: "rmsnorm" },
    requires: [
      ...DECODER,
      equal("ffn", "dense", "Llama has one dense MLP per layer"),
      equal("norm", "rmsnorm", "Llama's norms are RMSNorm (no bias, no centring)"),
    ],
  },
  {
    modelType: "mixtral",
    architecture: "MixtralForCausalLM",
    title: "Mixtral",
    selects: (c) => c.ffn === "moe" && routingFamily(c) === "mixtral",
    defaults: { norm: "rmsnorm", normalizeTopK: true },
    requires: [
      ...DECODER,
      equal("ffn", "moe", "Mixtral's FFN is a mixture of experts"),
      equal("norm", "rmsnorm", "Mixtral's norms are RMSNorm (no bias, no centring)"),
      {
        holds: (c) => routingFamily(c) === "mixtral",
        because: (c) =>
          `estimator ${
            show(c.estimator)
          }: at inference Mixtral routes softmax → top-k → renormalise, which is not this estimator's routing (${
            estimatorOf(c).inference ?? "its own"
          })`,
      },
      equal(
        "normalizeTopK",
        true,
        "Mixtral renormalises the top-k softmax weights to sum to 1, this model uses them as they are (set normalizeTopK: true, or --normalize-top-k true)",
      ),
      ESTIMATOR_INFERENCE,
      NO_SELECTION_BIAS,
      NO_ROUTER_BIAS,
    ],
  },
  {
    modelType: "phimoe",
    architecture: "PhimoeForCausalLM",
    title: "PhiMoE",
    selects: (c) => c.ffn === "moe" && routingFamily(c) === "phimoe",
    defaults: { norm: "layernorm", topK: 2 },
    requires: [
      ...DECODER,
      equal("ffn", "moe", "PhiMoE's FFN is a mixture of experts"),
      equal(
        "norm",
        "layernorm",
        "PhiMoE's norms are nn.LayerNorm with bias (transformers would centre by the mean and add zero biases)",
      ),
      {
        holds: (c) => routingFamily(c) === "phimoe",
        because: (c) =>
          `estimator ${
            show(c.estimator)
          }: PhiMoE routes with SparseMixer-v2 at inference (ε-mask, argmax, masked-softmax weight)`,
      },
      equal("topK", 2, "PhiMoE always routes exactly 2 experts per token"),
      ESTIMATOR_INFERENCE,
      NO_SELECTION_BIAS,
      NO_ROUTER_BIAS,
    ],
  },
];

/** The model type of a checkpoint no family matches. */
export const MOEJIT_MODEL_TYPE = "moejit";
/** The model type of checkpoints with attention experts (BAM). */
export const MOEJIT_BAM_MODEL_TYPE = "moejit_bam";

/** What {@link hfMatch} decides. */
export interface HfMatch {
  /** The matching family, or null when none computes this model's function. */
  family: HfFamilySpec | null;
  /** `model_type` to write: the family's, or "moejit" / "moejit_bam". */
  modelType: string;
  /** `architectures[0]` to write. */
  architecture: string;
  /**
   * Why each family of the model's kind does not match (empty for the matching family); dense
   * models are measured against Llama, MoE models against Mixtral and PhiMoE.
   */
  reasons: { family: HfFamilyName; reasons: string[] }[];
  /** One line for the run's output, the checkpoint's README and config.json. */
  line: string;
}

/**
 * The Hugging Face family whose modeling code computes this configuration's function, with the
 * reasons the others do not.
 *
 * @example
 * ```ts
 * const m = mj.io.hfMatch(mj.nn.modelConfig({ estimator: "sparsemixer", norm: "layernorm" }));
 * m.modelType; // "phimoe"
 * console.log(m.line);
 * ```
 */
export function hfMatch(config: ModelConfig): HfMatch {
  const c = config;
  const bam = c.attnExperts > 1;
  const candidates = HF_FAMILIES.filter((f) =>
    c.ffn === "dense" ? f.modelType === "llama" : f.modelType !== "llama"
  );
  const reasons = candidates.map((f) => ({
    family: f.modelType,
    reasons: f.requires.filter((r) => !r.holds(c)).map((r) => r.because(c)),
  }));
  const hit = candidates.find((_, i) => reasons[i].reasons.length === 0) ?? null;
  if (hit) {
    return {
      family: hit,
      modelType: hit.modelType,
      architecture: hit.architecture,
      reasons,
      line:
        `Hugging Face: exact ${hit.title} (model_type "${hit.modelType}", ${hit.architecture}): transformers computes this model's logits from config.json + model.safetensors`,
    };
  }
  const modelType = bam ? MOEJIT_BAM_MODEL_TYPE : MOEJIT_MODEL_TYPE;
  const why = bam
    ? `attnExperts ${c.attnExperts}: no Hugging Face family has attention experts`
    : reasons.map((r) => `not ${r.family}: ${r.reasons.join("; ")}`).join(" | ");
  return {
    family: null,
    modelType,
    architecture: bam ? "MoejitBamForCausalLM" : "MoejitForCausalLM",
    reasons,
    line:
      `Hugging Face: no family computes this model, so the checkpoint is model_type "${modelType}" (Hugging Face tensor names, loads into moejit) — ${why}`,
  };
}

/**
 * The settings a partial configuration gets from the family its FFN kind and estimator aim at
 * (Llama for dense FFNs, Mixtral for top-k routing, PhiMoE for SparseMixer-v2), so that a run
 * that changes nothing else trains a model transformers reads exactly. Fields already set in
 * `partial` are left out. Empty when no family is aimed at (e.g. SparseMixer-v1).
 *
 * @example
 * ```ts
 * mj.io.hfFamilyDefaults({ estimator: "sparsemixer" }); // { norm: "layernorm", topK: 2 }
 * mj.io.hfFamilyDefaults({ estimator: "default" });     // { norm: "rmsnorm", normalizeTopK: true }
 * ```
 */
export function hfFamilyDefaults(partial: Partial<ModelConfig>): Partial<ModelConfig> {
  const c = { ...DEFAULT_CONFIG, ...partial } as ModelConfig;
  const family = HF_FAMILIES.find((f) => f.selects(c));
  const out: Partial<ModelConfig> = {};
  for (const [k, v] of Object.entries(family?.defaults ?? {})) {
    if (!(k in partial)) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}
