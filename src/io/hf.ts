/**
 * The Hugging Face layout of moejit's language model: `config.json` keys and tensor names.
 *
 * Model types (the `model_type` written), decided by {@link hfMatch} (hf_families.ts):
 *  - `"llama"`, `"mixtral"`, `"phimoe"` only when that family's transformers class computes
 *    the model's function exactly (Llama: dense SwiGLU + RMSNorm; Mixtral: RMSNorm, softmax →
 *    top-k → renormalise; PhiMoE: LayerNorm with bias, SparseMixer-v2 top-2);
 *  - `"moejit"` for every other configuration: the same tensor names where they apply, and
 *    config.json says why no family matches;
 *  - `"moejit_bam"` for models with attention experts (BAM's mixture of attention,
 *    `attnExperts > 1`): no Hugging Face family has attention experts.
 *
 * Tensor names (Linear weights `[out, in]`; stacked experts `[E, out, in]` are split per expert):
 *
 * | moejit path                   | Hugging Face name                                          |
 * | ----------------------------- | ---------------------------------------------------------- |
 * | `embed`                       | `model.embed_tokens.weight`                                |
 * | `layers.i.attnNorm.{weight,bias}` | `model.layers.i.input_layernorm.{weight,bias}`         |
 * | `layers.i.attn.{q,k,v,o}`     | `model.layers.i.self_attn.{q,k,v,o}_proj.weight`           |
 * | `layers.i.attn.router` [N,d]  | `model.layers.i.self_attn.router.weight` (moejit_bam)      |
 * | `layers.i.attn.{q,k,v,o}[j]`  | `model.layers.i.self_attn.experts.j.{q,k,v,o}_proj.weight` (stacked [N,d,d]; shared K/V keep the plain name) |
 * | `layers.i.ffnNorm.{weight,bias}`  | `model.layers.i.post_attention_layernorm.{weight,bias}` |
 * | `layers.i.moe.router` [E,d]   | `model.layers.i.block_sparse_moe.gate.weight`              |
 * | `layers.i.moe.routerBias` [E] | `model.layers.i.block_sparse_moe.gate.bias` (moejit)       |
 * | `layers.i.moe.gate[e]` [f,d]  | `model.layers.i.block_sparse_moe.experts.e.w1.weight`      |
 * | `layers.i.moe.up[e]` [f,d]    | `….experts.e.w3.weight` (SwiGLU); `….experts.e.w1.weight` (gelu/relu: no gate) |
 * | `layers.i.moe.down[e]` [d,f]  | `….experts.e.w2.weight`                                    |
 * | `layers.i.mlp.{gate,up,down}` | `model.layers.i.mlp.{gate,up,down}_proj.weight`            |
 * | `finalNorm.{weight,bias}`     | `model.norm.{weight,bias}`                                 |
 * | `lmHead`                      | `lm_head.weight` (absent with tied embeddings)             |
 *
 * `config.json` carries the full ModelConfig under `"moejit"`, so {@link modelConfigFromHf}
 * round-trips it exactly, and the family decision under `"moejit.hf"`.
 *
 * Reading also accepts the fused expert names of transformers v5
 * (`model.layers.i.mlp.gate.weight`, `mlp.experts.gate_up_proj` [E, 2f, d] with the gate rows
 * first, `mlp.experts.down_proj` [E, d, f]).
 */
import { fail } from "../errors.ts";
import { layerBalance, type ModelConfig, modelConfig, parameterShapes } from "../nn/config.ts";
import { balancerKind } from "../moe/balancers/index.ts";
import { estimators } from "../moe/estimators/index.ts";
import type { HostArray, SafetensorsInput } from "./safetensors.ts";
import { hfMatch } from "./hf_families.ts";

/** The `model_type` a configuration is exported as (see {@link hfMatch}). */
export type HfFamily = "mixtral" | "phimoe" | "llama" | "moejit" | "moejit_bam";

/** Version of the `"moejit"` block in config.json. */
const MOEJIT_FORMAT = 1;

/**
 * The `model_type` a configuration exports as: the Hugging Face family that computes its
 * function ("llama", "mixtral", "phimoe"), else "moejit" ("moejit_bam" with attention experts).
 *
 * @example
 * ```ts
 * mj.io.hfFamily(mj.nn.modelConfig({ estimator: "sparsemixer", norm: "layernorm" })); // "phimoe"
 * mj.io.hfFamily(mj.nn.modelConfig({ estimator: "sparsemixer", norm: "rmsnorm" }));   // "moejit"
 * ```
 */
export function hfFamily(config: ModelConfig): HfFamily {
  return hfMatch(modelConfig(config)).modelType as HfFamily;
}

/** The tokenizer a checkpoint was trained with, as far as config files need it. */
export interface TokenizerRef {
  /** "byte" or "bpe:<encoding>" (what `mj.data.tokenizerByName` accepts). */
  name: string;
  /** The id of `<|endoftext|>` (BPE encodings); absent for bytes, which have no special token. */
  endOfText?: number;
}

/**
 * `bos_token_id` / `eos_token_id` for a tokenizer: the encoding's `<|endoftext|>` (tiktoken's
 * document separator, GPT's end of text), or null where the tokenizer has no special token
 * (bytes: every id is a byte of text) or is not known. Never Hugging Face's class defaults 1 and
 * 2, which are ordinary tokens of these vocabularies.
 */
function specialIds(tok: TokenizerRef | undefined, vocabSize: number) {
  const id = tok?.endOfText;
  if (id === undefined) return { bos: null, eos: null };
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    fail(
      "hfConfigJson",
      `tokenizer ${
        tok!.name
      }'s <|endoftext|> id ${id} is outside the model's vocabulary of ${vocabSize}`,
    );
  }
  return { bos: id, eos: id };
}

const HIDDEN_ACT: Record<ModelConfig["activation"], string> = {
  swiglu: "silu",
  gelu: "gelu", // moejit's gelu is the exact (erf) form, HF's "gelu"
  relu: "relu",
};

/**
 * `router_aux_loss_coef` in Hugging Face's convention: HF's loss is K× the unified one
 * (design §7), so a unified α is written as α/K; an "hf"-convention α is written as is.
 */
function hfAuxCoef(config: ModelConfig): number {
  return hfAuxCoefs(config).find((c) => c > 0) ?? 0;
}

/**
 * The HF `router_aux_loss_coef` of each layer's balancers: the coefficient of the balancer kind
 * that stands for HF's auxiliary loss (the auxLoss), 0 without one.
 */
function hfAuxCoefs(config: ModelConfig): number[] {
  return Array.from({ length: config.nLayers }, (_, l) => {
    for (const spec of layerBalance(config, l)) {
      const { kind, ...options } = spec;
      const coef = balancerKind(kind)?.hfRouterAuxLossCoef?.(options, config.topK);
      if (coef !== undefined) return coef;
    }
    return 0;
  });
}

/** Options of {@link hfConfigJson}. */
export interface HfConfigOptions {
  /**
   * The tokenizer the model was trained with: sets `bos_token_id`/`eos_token_id` (its
   * `<|endoftext|>`, or null for bytes). Without it both are null.
   */
  tokenizer?: TokenizerRef;
}

/**
 * The `config.json` of a configuration: the Hugging Face keys of the family that computes its
 * function (or of moejit's own model type when none does, see {@link hfMatch}), plus a
 * `"moejit"` block holding the full ModelConfig and the family decision.
 *
 * `router_aux_loss_coef` is the auxLoss balancer's α converted to HF's convention (α/topK for
 * the default "unified" convention, α for "hf"; 0 without an auxLoss balancer).
 * `router_jitter_noise` is SparseMixer's ε for phimoe (PhiMoE's mask threshold), 0 for mixtral
 * (there it would be multiplicative input noise in training, which moejit does not add).
 * `bos_token_id`/`eos_token_id` come from the tokenizer, never HF's class defaults.
 *
 * @example
 * ```ts
 * const json = mj.io.hfConfigJson(config, { tokenizer: { name: "bpe:cl100k_base", endOfText: 100257 } });
 * console.log(json.model_type); // "phimoe" for a PhiMoE-exact SparseMixer model
 * ```
 */
export function hfConfigJson(
  config: ModelConfig,
  opts: HfConfigOptions = {},
): Record<string, unknown> {
  const c = modelConfig(config);
  const match = hfMatch(c);
  const family = match.modelType as HfFamily;
  const ids = specialIds(opts.tokenizer, c.vocabSize);
  const out: Record<string, unknown> = {
    architectures: [match.architecture],
    model_type: family,
    vocab_size: c.vocabSize,
    hidden_size: c.dModel,
    intermediate_size: c.dFf,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nHeads,
    head_dim: c.dModel / c.nHeads,
    hidden_act: HIDDEN_ACT[c.activation],
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tiedEmbeddings,
    initializer_range: c.initStd,
    attention_dropout: 0,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    pad_token_id: null,
  };
  const moeKeys = c.ffn === "moe"
    ? {
      num_local_experts: c.experts,
      num_experts_per_tok: c.topK,
      router_aux_loss_coef: hfAuxCoef(c),
    }
    : {};
  // moejit's own model types say what no family's keys can (a family never has these).
  const ownKeys = {
    ...(c.rope === "none" ? { position_embedding_type: "none" } : {}),
    ...(c.ffn === "moe" && c.routerBias ? { router_bias: true } : {}),
  };
  if (family === "mixtral") {
    Object.assign(out, moeKeys, {
      router_jitter_noise: 0,
      output_router_logits: false,
      sliding_window: null,
    });
  } else if (family === "phimoe") {
    Object.assign(out, moeKeys, {
      router_jitter_noise: c.jitterEps,
      input_jitter_noise: 0,
      output_router_logits: false,
      attention_bias: false,
      lm_head_bias: false,
      sliding_window: null,
    });
  } else if (family === "llama") {
    Object.assign(out, { attention_bias: false, mlp_bias: false });
  } else if (family === "moejit_bam") {
    Object.assign(out, {
      num_attention_experts: c.attnExperts,
      attention_experts: c.attention === "sharedKV" ? "shared_kv" : "kv_experts",
      attention_router_top_k: c.attnTopK, // 0: soft routing (every expert)
      parallel_attention: c.block === "parallel",
      ...moeKeys,
      ...(c.ffn === "moe" ? { normalize_top_k: c.normalizeTopK } : {}),
      ...ownKeys,
    });
  } else {
    Object.assign(out, moeKeys, ownKeys);
  }
  out.torch_dtype = "float32";
  out.moejit = {
    format: MOEJIT_FORMAT,
    family,
    hf: {
      exact: match.family !== null,
      line: match.line,
      reasons: Object.fromEntries(match.reasons.map((r) => [r.family, r.reasons])),
    },
    config: structuredClone(c),
  };
  return out;
}

/**
 * Why transformers would not compute this configuration's function with any of its classes:
 * one entry per failed requirement of each family of the model's kind ("mixtral: normalizeTopK
 * false: …"), empty when a family matches; plus training settings config.json cannot hold
 * (per-layer aux-loss coefficients), which do not change the function.
 *
 * @example
 * ```ts
 * for (const note of mj.io.hfCompatibility(config)) console.warn(`HF export: ${note}`);
 * ```
 */
export function hfCompatibility(config: ModelConfig): string[] {
  const c = modelConfig(config);
  const match = hfMatch(c);
  const notes: string[] = [];
  if (match.modelType === "moejit_bam") {
    notes.push(
      `attnExperts ${c.attnExperts}: no Hugging Face family has attention experts; the checkpoint loads into moejit only`,
    );
  } else if (!match.family) {
    for (const r of match.reasons) for (const why of r.reasons) notes.push(`${r.family}: ${why}`);
  }
  if (c.ffn === "moe" && new Set(hfAuxCoefs(c)).size > 1) {
    notes.push(
      `the auxiliary-loss coefficient differs between layers; router_aux_loss_coef holds the first nonzero one (${
        hfAuxCoef(c)
      })`,
    );
  }
  return notes;
}

/**
 * `generation_config.json`: sampling as `mj.nn.generate` does it by default (temperature 0.8,
 * no top-k/top-p truncation), at most `maxSeqLen` tokens in all, and the tokenizer's special ids
 * (null for bytes).
 *
 * @example
 * ```ts
 * await Deno.writeTextFile("ckpt/generation_config.json", JSON.stringify(mj.io.hfGenerationConfig(config)));
 * ```
 */
export function hfGenerationConfig(
  config: ModelConfig,
  opts: HfConfigOptions = {},
): Record<string, unknown> {
  const c = modelConfig(config);
  const ids = specialIds(opts.tokenizer, c.vocabSize);
  return {
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    pad_token_id: null,
    do_sample: true,
    temperature: 0.8,
    top_k: 0,
    top_p: 1.0,
    max_length: c.maxSeqLen,
  };
}

// ---------------------------------------------------------------------------------------------
// config.json → ModelConfig

/** Shape-relevant fields: a checkpoint can only be loaded into a run that agrees on these. */
export const SHAPE_FIELDS: readonly (keyof ModelConfig)[] = [
  "vocabSize",
  "dModel",
  "nLayers",
  "nHeads",
  "block",
  "norm",
  "tiedEmbeddings",
  "ffn",
  "dFf",
  "activation",
  "experts",
  "attnExperts",
  "attention",
];

/**
 * The ModelConfig of a `config.json`: the `"moejit"` block when present (checked against the
 * Hugging Face keys), otherwise derived from the HF keys of a mixtral, phimoe or llama config
 * (errors name each missing or unsupported key). `source` names the file in errors.
 *
 * @example
 * ```ts
 * const json = JSON.parse(await Deno.readTextFile("ckpt/config.json"));
 * const config = mj.io.modelConfigFromHf(json, "ckpt/config.json");
 * ```
 */
export function modelConfigFromHf(json: unknown, source = "config.json"): ModelConfig {
  const op = "modelConfigFromHf";
  const bad = (msg: string): never => fail(op, `${source}: ${msg}`);
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    bad(`expected a JSON object, got ${JSON.stringify(json)?.slice(0, 40)}`);
  }
  const j = json as Record<string, unknown>;
  if (j.moejit !== undefined) {
    const m = j.moejit as Record<string, unknown> | null;
    if (!m || typeof m !== "object" || !m.config || typeof m.config !== "object") {
      bad(`"moejit" must be an object with a "config" object`);
    }
    if (m!.format !== MOEJIT_FORMAT) {
      bad(
        `"moejit.format" ${JSON.stringify(m!.format)} is not supported (expected ${MOEJIT_FORMAT})`,
      );
    }
    let c: ModelConfig;
    try {
      c = modelConfig(m!.config as Partial<ModelConfig>);
    } catch (e) {
      return bad(`"moejit.config" is invalid: ${(e as Error).message}`);
    }
    // The HF keys must agree with the moejit block (a hand-edited file is caught here).
    const pairs: [string, unknown][] = [
      ["vocab_size", c.vocabSize],
      ["hidden_size", c.dModel],
      ["num_hidden_layers", c.nLayers],
      ["num_attention_heads", c.nHeads],
      ["intermediate_size", c.dFf],
      ["tie_word_embeddings", c.tiedEmbeddings],
    ];
    if (c.ffn === "moe") pairs.push(["num_local_experts", c.experts]);
    for (const [k, v] of pairs) {
      if (j[k] !== undefined && j[k] !== v) {
        bad(`${k} is ${JSON.stringify(j[k])} but the "moejit" block says ${JSON.stringify(v)}`);
      }
    }
    return c;
  }
  const family = j.model_type;
  if (family !== "mixtral" && family !== "phimoe" && family !== "llama") {
    bad(
      `model_type ${
        JSON.stringify(family)
      } is not supported (expected "mixtral", "phimoe" or "llama", or a "moejit" block)`,
    );
  }
  const missing: string[] = [];
  const int = (k: string, alt?: string): number => {
    const v = j[k] ?? (alt ? j[alt] : undefined);
    if (v === undefined) {
      missing.push(alt ? `${k} (or ${alt})` : k);
      return 1;
    }
    if (!Number.isInteger(v) || (v as number) < 1) {
      bad(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const num = (k: string, dflt: number): number => {
    const v = j[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "number" || !(v >= 0)) {
      bad(`${k} must be a non-negative number, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const vocabSize = int("vocab_size"), dModel = int("hidden_size"), dFf = int("intermediate_size");
  const nLayers = int("num_hidden_layers"), nHeads = int("num_attention_heads");
  const maxSeqLen = int("max_position_embeddings");
  const moe = family !== "llama";
  const experts = moe ? int("num_local_experts", "num_experts") : 1;
  const topK = moe ? int("num_experts_per_tok") : 1;
  if (missing.length) {
    bad(`missing ${missing.join(", ")} (and no "moejit" block to take them from)`);
  }
  if (family === "phimoe" && topK !== 2) {
    bad(
      `num_experts_per_tok ${topK}: PhiMoE's SparseMixer routes exactly 2 experts per token (transformers v4 refuses other values, v5 routes 2 anyway)`,
    );
  }
  const kv = j.num_key_value_heads;
  if (kv !== undefined && kv !== null && kv !== nHeads) {
    bad(
      `num_key_value_heads ${kv} differs from num_attention_heads ${nHeads}: grouped-query attention is not supported`,
    );
  }
  if (j.head_dim !== undefined && j.head_dim !== null && j.head_dim !== dModel / nHeads) {
    bad(`head_dim ${j.head_dim} is not hidden_size / num_attention_heads = ${dModel / nHeads}`);
  }
  if (j.hidden_act !== undefined && j.hidden_act !== "silu") {
    bad(
      `hidden_act ${
        JSON.stringify(j.hidden_act)
      } is not supported for ${family} (gated experts/MLPs need "silu")`,
    );
  }
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) bad(`rope_scaling is not supported`);
  for (const k of ["attention_bias", "lm_head_bias", "mlp_bias"]) {
    if (j[k] === true) bad(`${k}: true is not supported (moejit's projections have no biases)`);
  }
  if (typeof j.sliding_window === "number" && j.sliding_window < maxSeqLen) {
    bad(`sliding_window ${j.sliding_window} is not supported (full causal attention only)`);
  }
  const ropeParams = j.rope_parameters as Record<string, unknown> | undefined;
  const ropeTheta = typeof ropeParams?.rope_theta === "number"
    ? ropeParams.rope_theta
    : num("rope_theta", family === "llama" ? 10000 : 1e6);
  const coef = num("router_aux_loss_coef", 0);
  const partial: Partial<ModelConfig> = {
    vocabSize,
    dModel,
    nLayers,
    nHeads,
    maxSeqLen,
    block: "prenorm",
    norm: family === "phimoe" ? "layernorm" : "rmsnorm",
    normEps: num("rms_norm_eps", family === "llama" ? 1e-6 : 1e-5),
    ropeTheta,
    tiedEmbeddings: j.tie_word_embeddings === true,
    ffn: moe ? "moe" : "dense",
    dFf,
    activation: "swiglu",
    initStd: num("initializer_range", 0.02),
  };
  if (moe) {
    // The first registered estimator whose inference routing is the family's (topk, sparsemixer).
    const estimator = estimators().find((e) => e.hfFamily === family)!.name;
    Object.assign(partial, {
      experts,
      topK,
      estimator,
      // Mixtral renormalises its top-k weights; PhiMoE's SparseMixer computes its own.
      normalizeTopK: family === "mixtral",
      balance: coef > 0 ? [{ kind: "auxLoss", alpha: coef, convention: "hf" }] : [],
    });
    if (family === "phimoe") partial.jitterEps = num("router_jitter_noise", 0.01);
  } else {
    Object.assign(partial, { experts: 1, topK: 1, estimator: "topk", balance: [] });
  }
  try {
    return modelConfig(partial);
  } catch (e) {
    return bad(`the derived configuration is invalid: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor names

/** One parameter and its Hugging Face tensor(s): one name, or one per expert when stacked. */
export interface HfEntry {
  /** The moejit path, e.g. `layers.0.moe.up`. */
  path: string;
  /** Its shape, e.g. `[E, f, d]`. */
  shape: number[];
  /** The HF name, or one name per expert (then each tensor has shape `shape.slice(1)`). */
  names: string | string[];
}

const NORM_NAME: Record<string, string> = {
  attnNorm: "input_layernorm",
  ffnNorm: "post_attention_layernorm",
};

/**
 * The parameter tree's paths with their Hugging Face names, in parameterShapes order.
 *
 * @example
 * ```ts
 * for (const { path, names } of mj.io.hfLayout(config)) console.log(path, "→", names);
 * ```
 */
export function hfLayout(config: ModelConfig): HfEntry[] {
  const c = config;
  const gated = c.activation === "swiglu";
  return parameterShapes(c).map(([path, shape]): HfEntry => {
    const p = path.split(".");
    if (path === "embed") return { path, shape, names: "model.embed_tokens.weight" };
    if (path === "lmHead") return { path, shape, names: "lm_head.weight" };
    if (p[0] === "finalNorm") return { path, shape, names: `model.norm.${p[1]}` };
    const L = `model.layers.${p[1]}`;
    switch (p[2]) {
      case "attnNorm":
      case "ffnNorm":
        return { path, shape, names: `${L}.${NORM_NAME[p[2]]}.${p[3]}` };
      case "attn": {
        if (p[3] === "router") return { path, shape, names: `${L}.self_attn.router.weight` };
        if (shape.length === 3) {
          const names = Array.from(
            { length: shape[0] },
            (_, j) => `${L}.self_attn.experts.${j}.${p[3]}_proj.weight`,
          );
          return { path, shape, names };
        }
        return { path, shape, names: `${L}.self_attn.${p[3]}_proj.weight` };
      }
      case "mlp":
        return { path, shape, names: `${L}.mlp.${p[3]}_proj.weight` };
      case "moe": {
        if (p[3] === "router") return { path, shape, names: `${L}.block_sparse_moe.gate.weight` };
        if (p[3] === "routerBias") return { path, shape, names: `${L}.block_sparse_moe.gate.bias` };
        const w = p[3] === "gate" ? "w1" : p[3] === "down" ? "w2" : gated ? "w3" : "w1";
        const names = Array.from(
          { length: shape[0] },
          (_, e) => `${L}.block_sparse_moe.experts.${e}.${w}.weight`,
        );
        return { path, shape, names };
      }
    }
    return fail("hfLayout", `internal: no Hugging Face name for ${path}`);
  });
}

/**
 * Every Hugging Face tensor name with its shape, in layout order.
 *
 * @example
 * ```ts
 * const names = mj.io.hfTensorShapes(config).map(([name]) => name);
 * ```
 */
export function hfTensorShapes(config: ModelConfig): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (const e of hfLayout(config)) {
    if (typeof e.names === "string") out.push([e.names, e.shape]);
    else for (const n of e.names) out.push([n, e.shape.slice(1)]);
  }
  return out;
}

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

function listSome(names: string[]): string {
  const shown = names.slice(0, 8).join(", ");
  return names.length > 8 ? `${shown}, … (${names.length} in all)` : shown;
}

/**
 * Host values of a parameter tree (by moejit path) → safetensors inputs under Hugging Face names
 * (F32), splitting stacked experts. The per-expert arrays are views of the inputs.
 *
 * @example
 * ```ts
 * // hostByPath: { embed: Float32Array, "layers.0.moe.up": Float32Array, … }
 * const hf = mj.io.toHfTensors(hostByPath, config);
 * await mj.io.writeSafetensors("model.safetensors", hf);
 * ```
 */
export function toHfTensors(
  host: Record<string, Float32Array>,
  config: ModelConfig,
): Record<string, SafetensorsInput> {
  const op = "toHfTensors";
  const layout = hfLayout(config);
  const known = new Set(layout.map((e) => e.path));
  const missing = layout.filter((e) => !(e.path in host)).map((e) => e.path);
  if (missing.length) fail(op, `missing parameters: ${listSome(missing)}`);
  const extra = Object.keys(host).filter((k) => !known.has(k));
  if (extra.length) {
    fail(op, `unexpected parameters (not in this configuration's tree): ${listSome(extra)}`);
  }
  const out: Record<string, SafetensorsInput> = {};
  for (const e of layout) {
    const data = host[e.path];
    if (!(data instanceof Float32Array)) {
      fail(
        op,
        `parameter ${e.path} must be a Float32Array, got ${
          (data as unknown as object)?.constructor?.name ?? typeof data
        }`,
      );
    }
    if (data.length !== prod(e.shape)) {
      fail(
        op,
        `parameter ${e.path} has ${data.length} values but its shape ${fmt(e.shape)} needs ${
          prod(e.shape)
        }`,
      );
    }
    if (typeof e.names === "string") {
      out[e.names] = { dtype: "F32", shape: e.shape, data };
    } else {
      const sz = prod(e.shape.slice(1));
      e.names.forEach((n, i) => {
        out[n] = {
          dtype: "F32",
          shape: e.shape.slice(1),
          data: data.subarray(i * sz, (i + 1) * sz),
        };
      });
    }
  }
  return out;
}

/** A tensor as read from a file (or built by hand). */
export interface HfTensorIn {
  /** The tensor's shape. */
  shape: readonly number[];
  /** Its values (floats; F16/BF16 decoded to Float32Array). */
  data: HostArray;
  /** The file's dtype, for error messages. */
  dtype?: string;
}

/** Replaces transformers-v5 fused expert tensors by the legacy per-expert names. */
function unfuse(
  tensors: Record<string, HfTensorIn>,
  config: ModelConfig,
  bad: (m: string) => never,
) {
  const out: Record<string, HfTensorIn> = { ...tensors };
  const f = config.dFf, d = config.dModel;
  for (let i = 0; i < config.nLayers; i++) {
    const L = `model.layers.${i}`;
    const router = `${L}.mlp.gate.weight`,
      gu = `${L}.mlp.experts.gate_up_proj`,
      dn = `${L}.mlp.experts.down_proj`;
    if (router in out) {
      out[`${L}.block_sparse_moe.gate.weight`] = out[router];
      delete out[router];
    }
    const split = (name: string, parts: [string, number, number][], want: number[]) => {
      const t = out[name];
      if (!t) return;
      if (t.shape.length !== 3 || t.shape.some((v, k) => v !== want[k])) {
        bad(`tensor ${name}: shape ${fmt(t.shape)} found, ${fmt(want)} expected`);
      }
      const per = prod(want.slice(1));
      for (let e = 0; e < want[0]; e++) {
        for (const [w, r0, rows] of parts) {
          const start = e * per + r0 * want[2];
          out[`${L}.block_sparse_moe.experts.${e}.${w}.weight`] = {
            shape: [rows, want[2]],
            data: t.data.subarray(start, start + rows * want[2]) as HostArray,
            dtype: t.dtype,
          };
        }
      }
      delete out[name];
    };
    split(gu, [["w1", 0, f], ["w3", f, f]], [config.experts, 2 * f, d]);
    split(dn, [["w2", 0, d]], [config.experts, d, f]);
  }
  return out;
}

function asF32(name: string, t: HfTensorIn, bad: (m: string) => never): Float32Array {
  const d = t.data;
  if (d instanceof Float32Array) return d;
  if (d instanceof Float64Array) return Float32Array.from(d);
  return bad(
    `tensor ${name}: dtype ${
      t.dtype ?? d.constructor.name
    } found, a float (F32/F16/BF16/F64) expected`,
  );
}

/**
 * Hugging Face tensors (e.g. `readSafetensors(...).tensors`) → host values by moejit path,
 * stacking per-expert tensors. Errors name the tensor, the shape found and the shape expected,
 * and list missing and unexpected names. `source` names the file in errors.
 *
 * @example
 * ```ts
 * const { tensors } = await mj.io.readSafetensors("ckpt/model.safetensors");
 * const host = mj.io.fromHfTensors(tensors, config); // { embed: Float32Array, ... }
 * ```
 */
export function fromHfTensors(
  tensors: Record<string, HfTensorIn>,
  config: ModelConfig,
  source = "fromHfTensors",
): Record<string, Float32Array> {
  const bad = (msg: string): never => fail("fromHfTensors", `${source}: ${msg}`);
  const layout = hfLayout(config);
  const all = config.ffn === "moe" && config.activation === "swiglu"
    ? unfuse(tensors, config, bad)
    : tensors;
  const expected = hfTensorShapes(config);
  const want = new Map(expected);
  const missing = expected.map(([n]) => n).filter((n) => !(n in all));
  const extra = Object.keys(all).filter((n) => !want.has(n));
  if (missing.length || extra.length) {
    const parts = [];
    if (missing.length) parts.push(`missing tensors: ${listSome(missing)}`);
    if (extra.length) parts.push(`unexpected tensors: ${listSome(extra)}`);
    bad(
      `${parts.join("; ")} (for ${hfFamily(config)} with ${config.nLayers} layers${
        config.ffn === "moe" ? `, ${config.experts} experts` : ""
      }${config.tiedEmbeddings ? ", tied embeddings" : ""})`,
    );
  }
  for (const [n, shape] of expected) {
    const s = all[n].shape;
    if (s.length !== shape.length || s.some((v, i) => v !== shape[i])) {
      bad(`tensor ${n}: shape ${fmt(s)} found, ${fmt(shape)} expected`);
    }
  }
  const out: Record<string, Float32Array> = {};
  for (const e of layout) {
    if (typeof e.names === "string") {
      out[e.path] = asF32(e.names, all[e.names], bad);
    } else {
      const sz = prod(e.shape.slice(1));
      const stacked = new Float32Array(prod(e.shape));
      e.names.forEach((n, i) => stacked.set(asF32(n, all[n], bad), i * sz));
      out[e.path] = stacked;
    }
  }
  return out;
}
