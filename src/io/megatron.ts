/**
 * `megatron_args.txt`: the Megatron-Core flags (Megatron-LM `pretrain_gpt.py`, names as in
 * `megatron/training/arguments.py`) that build the same model and MoE layer as a moejit run and
 * train it with the same schedule, so a small-scale result can be continued or rerun at scale.
 * What Megatron-Core has no flag for (SparseMixer, Default MoE, BIP, …) is named in a `#`
 * note instead of being approximated silently.
 */
import {
  allBalanceSpecs,
  estimatorOf,
  estimatorSettings,
  layerBalance,
  type ModelConfig,
  modelConfig,
} from "../nn/config.ts";
import { balancerKind, type MegatronPart } from "../moe/balancers/index.ts";
import type { RunInfo } from "./run_info.ts";

/** A number as Python's argparse reads it back exactly (JSON's shortest round-trip form). */
const num = (v: number) => String(v);

/** Builds the file: flag lines and `#` notes, in sections. */
class ArgsText {
  lines: string[] = [];
  section(title: string) {
    this.lines.push("", `# ${title}`);
  }
  flag(name: string, value?: string | number, why?: string) {
    this.lines.push(value === undefined ? `--${name}` : `--${name} ${value}`);
    if (why) this.lines.push(`#   ↑ ${why}`);
  }
  note(text: string) {
    this.lines.push(`# ${text}`);
  }
  missing(what: string, detail: string) {
    this.lines.push(`# NOT IN MEGATRON-CORE: ${what}. ${detail}`);
  }
}

/** The tokenizer flags: the ids must be the ones this model was trained on. */
function tokenizerFlags(out: ArgsText, c: ModelConfig, run: RunInfo) {
  const tok = run.tokenizer;
  out.section("tokenizer (pre-tokenize the data with the same ids; see README.md)");
  if (!tok) {
    out.note(`the tokenizer was not recorded; the vocabulary has ${c.vocabSize} ids`);
  } else if (tok.name === "byte") {
    out.note(
      "token ids are UTF-8 bytes. NullTokenizer with --vocab-size 255 has exactly 256 ids and uses 255 (0xFF, a byte UTF-8 never contains) as its end-of-document id",
    );
  } else {
    out.note(
      `token ids are tiktoken's ${
        tok.name.replace(/^bpe:/, "")
      } ids; Megatron's TikTokenizer shifts ids by its special tokens, so tokenize with tiktoken and let NullTokenizer size the vocabulary (${c.vocabSize} ids)`,
    );
  }
  out.flag("tokenizer-type", "NullTokenizer");
  out.flag("vocab-size", c.vocabSize - 1);
  if (c.vocabSize % 128 !== 0) {
    out.flag(
      "make-vocab-size-divisible-by",
      1,
      `keeps the embedding at ${c.vocabSize} rows, as in model.safetensors (with tensor parallelism use a divisor of ${c.vocabSize} that the TP size divides)`,
    );
  }
}

/** Every MoE setting of one layer's balancers and the estimator. */
function moeFlags(out: ArgsText, c: ModelConfig) {
  out.section("mixture of experts (dropless: leave --moe-expert-capacity-factor unset)");
  out.flag("num-experts", c.experts);
  out.flag("moe-ffn-hidden-size", c.dFf);
  out.flag("moe-router-topk", c.topK);
  out.flag("moe-router-score-function", "softmax");
  if (!c.normalizeTopK) {
    out.flag(
      "moe-router-pre-softmax",
      undefined,
      "softmax over all experts, then top-k, weights not renormalised (as this model)",
    );
  } else {
    out.note(
      "Megatron's default softmax after top-k equals softmax → top-k → renormalise (as this model)",
    );
  }
  out.flag("moe-router-dtype", "fp32");
  if (c.routerBias) {
    out.missing(
      "a router bias",
      "This model's router adds a learned bias to its logits (block_sparse_moe.gate.bias); Megatron-Core's router is a bias-free linear map",
    );
  }
  out.flag("moe-grouped-gemm", undefined, "grouped expert GEMMs, as moejit's; same math");
  out.note(
    "with expert parallelism add --expert-model-parallel-size N --moe-token-dispatcher-type alltoall",
  );

  const est = estimatorOf(c);
  const said = est.megatron?.(estimatorSettings(c) as never) ?? {
    missing: `estimator ${JSON.stringify(c.estimator)}`,
    detail: `${est.description}; Megatron trains with the plain top-k gradient`,
  };
  if ("same" in said) out.note(said.same);
  else out.missing(said.missing, said.detail);

  const layers = Array.from({ length: c.nLayers }, (_, l) => JSON.stringify(layerBalance(c, l)));
  if (new Set(layers).size > 1) {
    out.note(
      "the balancers differ between layers; Megatron-Core applies one setting to every MoE layer: the flags below are layer 0's",
    );
  }
  // Flags come from layer 0's balancers; what Megatron-Core lacks, from any layer's.
  const partOf = (spec: { kind: string }): MegatronPart => {
    const { kind, ...options } = spec;
    const k = balancerKind(kind);
    return k?.megatron?.(options, { topK: c.topK }) ??
      { missing: [[`balancer ${kind}`, k?.description ?? "a balancer registered in moejit"]] };
  };
  const flags = layerBalance(c, 0).flatMap((b) => partOf(b).flags ?? []);
  if (!flags.some(([name]) => name === "moe-router-load-balancing-type")) {
    // Megatron's default is the auxiliary loss: no balancer loss must be said.
    flags.unshift(["moe-router-load-balancing-type", "none"]);
  }
  for (const [name, value, why] of flags) out.flag(name, value, why);
  const missing = new Map<string, string>();
  for (const b of allBalanceSpecs(c)) {
    for (const [what, detail] of partOf(b).missing ?? []) {
      if (!missing.has(what)) missing.set(what, detail);
    }
  }
  for (const [what, detail] of missing) out.missing(what, detail);
}

/**
 * The text of `megatron_args.txt` for a configuration and the run that trained it: flag lines
 * (one per line, `--name value`) and `#` notes, including a `NOT IN MEGATRON-CORE` line for
 * each method Megatron-Core lacks.
 *
 * @example
 * ```ts
 * const text = mj.io.megatronArgs(config, { seqLength: 128, lr: 3e-3, steps: 600, batch: 16 });
 * // grep -v '^#' megatron_args.txt | xargs python pretrain_gpt.py --data-path … --save …
 * ```
 */
export function megatronArgs(config: ModelConfig, run: RunInfo = {}): string {
  const c = modelConfig(config);
  const out = new ArgsText();
  out.note(
    "Megatron-Core flags (Megatron-LM pretrain_gpt.py) for the model and MoE settings of this moejit run.",
  );
  out.note("Lines starting with # are notes; the others are flags:");
  out.note(
    "  grep -v '^#' megatron_args.txt | xargs torchrun pretrain_gpt.py --data-path … --save … [parallelism]",
  );
  out.note(
    "The weights are in model.safetensors (Hugging Face layout, see README.md, Scaling out).",
  );

  out.section("model");
  out.flag("num-layers", c.nLayers);
  out.flag("hidden-size", c.dModel);
  out.flag("num-attention-heads", c.nHeads);
  out.flag("ffn-hidden-size", c.dFf);
  const seq = run.seqLength ?? c.maxSeqLen;
  out.flag("seq-length", seq);
  out.flag("max-position-embeddings", c.maxSeqLen);
  if (c.rope === "none") {
    out.flag("position-embedding-type", "none", "no position encoding, as this model");
  } else {
    out.flag("position-embedding-type", "rope");
    if (Number.isInteger(c.ropeTheta)) {
      out.flag("rotary-base", c.ropeTheta);
    } else {
      out.missing(
        `rotary base ${c.ropeTheta}`,
        "--rotary-base takes an integer; set TransformerConfig.rotary_base in code",
      );
    }
    out.flag("rotary-percent", "1.0");
    out.note("RoPE in the rotate-half form (Megatron's default; not --rotary-interleaved)");
  }
  out.flag("normalization", c.norm === "layernorm" ? "LayerNorm" : "RMSNorm");
  out.flag("norm-epsilon", num(c.normEps));
  if (c.activation === "swiglu") out.flag("swiglu");
  else if (c.activation === "gelu") out.note("activation: gelu (erf form), Megatron's default");
  else {
    out.missing(
      "a plain ReLU FFN",
      "--squared-relu is relu(x)², a different function; set TransformerConfig.activation_func = F.relu in code",
    );
  }
  out.flag("disable-bias-linear", undefined, "no biases in any projection, as moejit");
  out.flag("attention-dropout", "0.0");
  out.flag("hidden-dropout", "0.0");
  if (!c.tiedEmbeddings) out.flag("untie-embeddings-and-output-weights");
  else out.note("input and output embeddings tied (Megatron's default)");
  out.flag("init-method-std", num(c.initStd));
  if (c.block === "parallel") {
    out.missing(
      "the parallel block",
      "This model computes x + attn(norm x) + ffn(norm x) with one norm; Megatron-Core's GPT layer is pre-norm, attention then FFN",
    );
  }
  if (c.attnExperts > 1) {
    out.missing(
      `attention experts (BAM, ${c.attnExperts} per layer, ${c.attention})`,
      "Megatron-Core has one attention per layer",
    );
  }
  tokenizerFlags(out, c, run);
  if (c.ffn === "moe") moeFlags(out, c);

  out.section("optimizer and schedule of this run (AdamW, no decay on norms and biases)");
  const has = (v: unknown) => v !== undefined;
  if (has(run.batch)) {
    out.flag("micro-batch-size", run.batch!);
    out.flag("global-batch-size", run.batch!);
  }
  if (has(run.steps)) out.flag("train-iters", run.steps!);
  if (has(run.lr)) {
    out.flag("lr", num(run.lr!));
    out.flag("min-lr", num(run.minLr ?? run.lr! / 10));
    out.flag("lr-decay-style", "cosine");
    out.flag("lr-warmup-iters", run.warmup ?? 0);
  }
  if (has(run.weightDecay)) out.flag("weight-decay", num(run.weightDecay!));
  if (run.adam) {
    out.flag("adam-beta1", num(run.adam.beta1));
    out.flag("adam-beta2", num(run.adam.beta2));
    out.flag("adam-eps", num(run.adam.eps));
  }
  if (has(run.clip)) out.flag("clip-grad", num(run.clip!));
  if (has(run.seed)) out.flag("seed", run.seed!);
  if (!has(run.lr)) out.note("the optimizer settings were not recorded");
  out.note("float32 throughout, as trained (add --bf16 to train in bfloat16 at scale)");
  return out.lines.join("\n").replace(/^\n/, "") + "\n";
}
