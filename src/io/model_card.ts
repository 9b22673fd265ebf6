/**
 * The checkpoint's README.md: which Hugging Face family reads it as the same model (or why none
 * does), the tokenizer and how to reproduce its ids, how to load it, and how to continue the run
 * in moejit, transformers or Megatron-Core ("Scaling out").
 */
import {
  estimatorOf,
  estimatorSettings,
  type ModelConfig,
  modelConfig,
  parameterCount,
} from "../nn/config.ts";
import { hfMatch } from "./hf_families.ts";
import type { RunInfo } from "./run_info.ts";

const millions = (n: number) => `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}M`;

/** How to get the model's token ids from text, for the tokenizer recorded in `run`. */
function tokenizerSection(c: ModelConfig, run: RunInfo): string[] {
  const tok = run.tokenizer;
  if (!tok) {
    return [
      "The tokenizer was not recorded with this checkpoint; the model has a vocabulary of " +
      `${c.vocabSize} ids. bos_token_id and eos_token_id are null.`,
    ];
  }
  if (tok.name === "byte") {
    return [
      `Bytes: a token is one byte of the text's UTF-8 encoding (${c.vocabSize} ids, no special ` +
      "tokens, so bos_token_id and eos_token_id are null). The ids:",
      "",
      "```python",
      'ids = list(text.encode("utf-8"))                      # Python',
      'text = bytes(ids).decode("utf-8", errors="replace")',
      "```",
      "",
      "```ts",
      "const ids = [...new TextEncoder().encode(text)];      // TypeScript / moejit: mj.data.byteTokenizer()",
      "```",
    ];
  }
  const encoding = tok.name.replace(/^bpe:/, "");
  return [
    `tiktoken's \`${encoding}\` byte-level BPE (${c.vocabSize} ids). Text that spells a special ` +
    "token is encoded as ordinary text, as in training. " +
    (tok.endOfText !== undefined
      ? `bos_token_id and eos_token_id are its \`<|endoftext|>\`, id ${tok.endOfText}.`
      : "bos_token_id and eos_token_id are null."),
    "",
    "```python",
    "import tiktoken",
    `enc = tiktoken.get_encoding("${encoding}")`,
    "ids = enc.encode(text, disallowed_special=())",
    "```",
    "",
    "```ts",
    `const tok = await mj.data.tokenizerByName("${tok.name}"); // gpt-tokenizer, the same ids`,
    "const ids = tok.encode(text);",
    "```",
    "",
    "There is no tokenizer.json here: tokenize with tiktoken (or moejit) and pass ids.",
  ];
}

function modelTable(c: ModelConfig): string[] {
  const rows: [string, string][] = [
    ["layers", String(c.nLayers)],
    ["hidden size", String(c.dModel)],
    [
      "attention heads",
      `${c.nHeads} (head size ${c.dModel / c.nHeads}), ${
        c.rope === "none" ? "no position encoding" : `RoPE θ = ${c.ropeTheta}`
      }`,
    ],
    ["block", c.block === "prenorm" ? "pre-norm" : "parallel (one norm)"],
    ["norm", `${c.norm === "layernorm" ? "LayerNorm (with bias)" : "RMSNorm"}, ε = ${c.normEps}`],
    [
      "FFN",
      c.ffn === "moe"
        ? `${c.experts} experts, top-${c.topK}, ${c.activation}, hidden ${c.dFf}`
        : `dense ${c.activation}, hidden ${c.dFf}`,
    ],
  ];
  if (c.ffn === "moe") {
    const est = estimatorOf(c);
    rows.push(["router estimator (training)", c.estimator]);
    rows.push(...(est.card?.(estimatorSettings(c) as never) ?? []));
    if (!est.ownGates) {
      rows.push([
        "top-k weights",
        c.normalizeTopK ? "renormalised to sum 1" : "as softmax gives them",
      ]);
    }
    if (c.routerBias) rows.push(["router", "linear with a learned bias"]);
  }
  if (c.attnExperts > 1) {
    rows.push([
      "attention experts",
      `${c.attnExperts} (${c.attention}, top ${c.attnTopK || "all"})`,
    ]);
  }
  rows.push(
    ["embeddings", c.tiedEmbeddings ? "tied (no lm_head.weight)" : "untied"],
    ["vocabulary", String(c.vocabSize)],
    ["context", `${c.maxSeqLen} tokens`],
  );
  return ["| | |", "| --- | --- |", ...rows.map(([k, v]) => `| ${k} | ${v} |`)];
}

function runTable(run: RunInfo): string[] {
  const rows: [string, string][] = [];
  const add = (k: string, v: unknown) => v !== undefined && rows.push([k, String(v)]);
  add("step", run.step);
  add("steps planned", run.steps);
  add("data", run.data);
  if (run.batch !== undefined && run.seqLength !== undefined) {
    rows.push(["batch", `${run.batch} × ${run.seqLength} tokens`]);
  }
  if (run.lr !== undefined) {
    rows.push([
      "learning rate",
      `${run.lr}, warmup ${run.warmup ?? 0} steps, cosine to ${run.minLr ?? run.lr / 10}`,
    ]);
  }
  if (run.adam) {
    rows.push([
      "optimizer",
      `AdamW β = (${run.adam.beta1}, ${run.adam.beta2}), ε = ${run.adam.eps}, weight decay ${
        run.weightDecay ?? 0
      } (none on norms and biases)`,
    ]);
  }
  add("gradient clip", run.clip);
  add("seed", run.seed);
  if (!rows.length) return ["The training run was not recorded with this checkpoint."];
  return ["| | |", "| --- | --- |", ...rows.map(([k, v]) => `| ${k} | ${v} |`)];
}

/**
 * The README.md of a checkpoint of `config`, trained as `run` says.
 *
 * @example
 * ```ts
 * const md = mj.io.modelCard(config, { tokenizer: { name: "byte" }, seqLength: 128, step: 600 });
 * ```
 */
export function modelCard(config: ModelConfig, run: RunInfo = {}): string {
  const c = modelConfig(config);
  const m = hfMatch(c);
  const { total, active } = parameterCount(c);
  const kind = m.family ? m.family.title : "moejit";
  const lines: string[] = [
    "---",
    ...(m.family ? ["library_name: transformers"] : []),
    "tags:",
    "  - moejit",
    ...(c.ffn === "moe" ? ["  - mixture-of-experts"] : []),
    ...(m.family ? [`  - ${m.modelType}`] : []),
    "---",
    "",
    `# ${kind} language model trained with moejit`,
    "",
    `${millions(total)} parameters, ${millions(active)} active per token.`,
    "",
    m.line,
    "",
  ];
  if (!m.family) {
    lines.push(
      "Why no Hugging Face family computes this model (transformers would load other logits, or " +
        "refuse):",
      "",
      ...m.reasons.flatMap((r) => r.reasons.map((why) => `- ${r.family}: ${why}`)),
      "",
    );
  }
  lines.push("## Model", "", ...modelTable(c), "", "## Tokenizer", "", ...tokenizerSection(c, run));
  lines.push("", "## Load it", "");
  if (m.family) {
    lines.push(
      `transformers reads this directory as \`${m.family.architecture}\` (float32):`,
      "",
      "```python",
      "import torch",
      "from transformers import AutoModelForCausalLM",
      'model = AutoModelForCausalLM.from_pretrained("path/to/this/checkpoint", torch_dtype=torch.float32)',
      "logits = model(torch.tensor([ids])).logits  # ids as in Tokenizer above",
      "```",
      "",
    );
  }
  lines.push(
    "moejit:",
    "",
    "```ts",
    'const ck = await mj.io.loadCheckpoint<mj.nn.Params>("path/to/this/checkpoint");',
    'const { logits } = mj.nn.forward(ck.params, mj.tensor([ids], undefined, { dtype: "i32" }), ck.config, { training: false });',
    "```",
    "",
    "## Scaling out",
    "",
    "- **moejit**: `--resume path/to/this/checkpoint` (or `mj.train.train({ resume })`) continues " +
      "this run exactly from training_state.safetensors (AdamW moments, MoE layer state, step).",
  );
  if (m.family) {
    const moeNote = m.family.modelType === "phimoe"
      ? " In training mode PhimoeForCausalLM samples its experts with SparseMixer-v2 " +
        `(ε = router_jitter_noise = ${c.jitterEps}), as this run did.`
      : m.family.modelType === "mixtral"
      ? " Pass output_router_logits=True to add the auxiliary loss (router_aux_loss_coef is in " +
        "Hugging Face's convention, top-k times smaller than moejit's α)."
      : "";
    lines.push(
      `- **transformers**: \`from_pretrained\` as above, then any PyTorch training loop or ` +
        `\`Trainer\`; the optimizer state does not carry over.${moeNote}`,
    );
  } else {
    lines.push(
      "- **transformers**: no class computes this model (see above). Retrain with a " +
        "configuration one family matches, or port the differences to the modeling code.",
    );
  }
  lines.push(
    "- **Megatron-Core**: megatron_args.txt holds the equivalent flags, with a NOT IN " +
      "MEGATRON-CORE note for every method it lacks. Its weights are the Hugging Face layout " +
      "of model.safetensors; convert them with a Hugging Face → Megatron converter " +
      "(Megatron-Bridge, or Megatron-LM's tools/checkpoint for Llama and Mixtral).",
    "",
    "## Training run",
    "",
    ...runTable(run),
    "",
    "## Files",
    "",
    "- `config.json`: the Hugging Face configuration; its `moejit` block holds moejit's full " +
      "configuration and the family decision above",
    "- `model.safetensors`: float32 weights under Hugging Face tensor names",
    "- `generation_config.json`: sampling as moejit's generate (temperature 0.8, no truncation)",
    "- `megatron_args.txt`: Megatron-Core flags for this model and run",
    "- `training_state.safetensors` (when present): what `--resume` needs",
    "",
  );
  return lines.join("\n");
}
