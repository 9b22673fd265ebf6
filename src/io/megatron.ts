/**
 * `megatron_args.txt`: the Megatron-Core flags (Megatron-LM `pretrain_gpt.py`, names as in
 * `megatron/training/arguments.py`) that build the same model and MoE layer as a moejit run and
 * train it with the same schedule, so a small-scale result can be continued or rerun at scale.
 * What Megatron-Core has no flag for (SparseMixer, Default MoE, BIP, …) is named in a `#`
 * note instead of being approximated silently.
 */
import {
  allBalanceSpecs,
  type BalanceSpec,
  layerBalance,
  type ModelConfig,
  modelConfig,
} from "../nn/config.ts";
import type { RunInfo } from "./run_info.ts";

type Aux = Extract<BalanceSpec, { kind: "auxLoss" }>;
type Z = Extract<BalanceSpec, { kind: "zLoss" }>;
type LossFree = Extract<BalanceSpec, { kind: "lossFree" }>;

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
  out.flag("moe-grouped-gemm", undefined, "grouped expert GEMMs, as moejit's; same math");
  out.note(
    "with expert parallelism add --expert-model-parallel-size N --moe-token-dispatcher-type alltoall",
  );

  switch (c.estimator) {
    case "topk":
      out.note("router gradient: top-k (the selected weights only), Megatron's own");
      break;
    case "dense":
      out.missing(
        'the "dense" router-gradient estimator',
        "This run evaluated every expert for the router's gradient; Megatron trains with the top-k gradient (same forward)",
      );
      break;
    case "default":
      out.missing(
        "Default MoE",
        "The router's gradient used EMA default outputs of the experts a token did not use; Megatron trains with the plain top-k gradient (same forward at inference)",
      );
      break;
    case "sparsemixer":
      out.missing(
        "SparseMixer-v2 (GRIN)",
        `In training this model samples its experts (Gumbel-max under an ε-mask, ε = ${c.jitterEps}) with SparseMixer's router gradient; at inference it takes the argmax under the mask, weighted by the masked softmax. The flags above are plain softmax top-k routing, a different function (transformers' PhiMoE computes this one)`,
      );
      break;
    case "sparsemixer-v1":
      out.missing(
        "SparseMixer-v1",
        "Top-1 routing sampled under an ε-mask, with the mid-point router gradient; the flags above are plain softmax top-1 routing, a different function",
      );
      break;
  }

  const layers = Array.from({ length: c.nLayers }, (_, l) => JSON.stringify(layerBalance(c, l)));
  if (new Set(layers).size > 1) {
    out.note(
      "the balancers differ between layers; Megatron-Core applies one setting to every MoE layer: the flags below are layer 0's",
    );
  }
  const specs = layerBalance(c, 0);
  const aux = specs.find((b) => b.kind === "auxLoss") as Aux | undefined;
  const z = specs.find((b) => b.kind === "zLoss") as Z | undefined;
  const lf = specs.find((b) => b.kind === "lossFree") as LossFree | undefined;
  if (aux) {
    const alpha = aux.alpha ?? 0.01;
    // Megatron's aux loss is E·Σ f_i·P_i with f_i = c_i/(T·k): moejit's "unified" convention.
    const coeff = (aux.convention ?? "unified") === "hf" ? alpha * c.topK : alpha;
    out.flag(
      "moe-router-load-balancing-type",
      aux.scope === "sequence" ? "seq_aux_loss" : "aux_loss",
    );
    out.flag(
      "moe-aux-loss-coeff",
      num(coeff),
      aux.convention === "hf"
        ? `Hugging Face's coefficient ${alpha} × top-k: Megatron's loss equals its coefficient at perfect balance`
        : undefined,
    );
  } else {
    out.flag("moe-router-load-balancing-type", "none");
  }
  if (z) out.flag("moe-z-loss-coeff", num(z.beta ?? 0.001));
  if (lf) {
    const rate = lf.rate ?? 1e-3;
    if ((lf.rule ?? "sign") === "sign") {
      out.missing(
        "an expert bias on a softmax router",
        `This model's loss-free balancing is Megatron's expert-bias rule (b ← b + ${rate}·sign(mean load − load), for selection only), but Megatron-Core allows it with sigmoid scores only; the nearest is --moe-router-score-function sigmoid --moe-router-enable-expert-bias --moe-router-bias-update-rate ${rate}, a different router`,
      );
    } else {
      out.missing(
        `loss-free balancing with rule "${lf.rule}"`,
        "Megatron-Core's expert bias moves by rate·sign(·) only",
      );
    }
  }
  if (allBalanceSpecs(c).some((b) => b.kind === "bip")) {
    out.missing(
      "BIP balancing",
      "per-batch dual prices (a bipartite-matching relaxation) shift the selection; Megatron-Core has aux/seq/global aux loss, sinkhorn and the expert bias",
    );
  }
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
