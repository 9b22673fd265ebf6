/**
 * The family decision, and the files that explain a checkpoint: a configuration gets a Hugging
 * Face family's model_type only when that family computes its function (the PyTorch cross-check
 * in hf_crosscheck_test.ts measures it); every other one is moejit's own, with reasons naming the
 * setting. config.json's special ids follow the tokenizer; README.md, generation_config.json and
 * megatron_args.txt say what they should, with Megatron flags that exist.
 */
import * as io from "../../src/io/index.ts";
import { type ModelConfig, modelConfig } from "../../src/nn/config.ts";
import { assert } from "../helpers.ts";
import { randomParams, tempDir } from "./util.ts";

const small: Partial<ModelConfig> = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  experts: 4,
  dFf: 8,
  vocabSize: 300,
};
const phimoe = { ...small, estimator: "sparsemixer", topK: 2, norm: "layernorm" } as const;
const mixtral = { ...small, estimator: "topk", normalizeTopK: true } as const;

Deno.test("hf families: the configurations transformers computes exactly get their family", () => {
  const exact: [string, Partial<ModelConfig>][] = [
    ["phimoe", phimoe],
    ["phimoe", { ...phimoe, jitterEps: 0.05, tiedEmbeddings: false, ropeTheta: 1e6 }],
    ["phimoe", { ...phimoe, balance: [{ kind: "auxLoss" }, { kind: "zLoss" }] }],
    ["mixtral", mixtral],
    ["mixtral", { ...mixtral, estimator: "default" }],
    ["mixtral", { ...mixtral, estimator: "dense", topK: 3 }],
    ["mixtral", { ...mixtral, topK: 1 }],
    ["llama", { ...small, ffn: "dense" }],
    ["llama", { ...small, ffn: "dense", estimator: "sparsemixer", tiedEmbeddings: false }],
  ];
  for (const [family, partial] of exact) {
    const m = io.hfMatch(modelConfig(partial));
    assert.equal(m.modelType, family, JSON.stringify(partial));
    assert.equal(m.family?.modelType, family);
    assert.match(m.line, new RegExp(`^Hugging Face: exact ${m.family!.title} `));
    assert.deepEqual(io.hfCompatibility(modelConfig(partial)), []);
  }
});

Deno.test("hf families: every other configuration is moejit's own, with the reasons", () => {
  // [what, config, reasons that must be named (family: text)]
  const cases: [string, Partial<ModelConfig>, RegExp[]][] = [
    ["grin.ts's old default: SparseMixer + RMSNorm", { ...phimoe, norm: "rmsnorm" }, [
      /phimoe: norm "rmsnorm": PhiMoE's norms are nn\.LayerNorm with bias/,
      /mixtral: estimator "sparsemixer": at inference Mixtral routes softmax → top-k → renormalise/,
    ]],
    ["top-k without renormalisation", { ...mixtral, normalizeTopK: false }, [
      /mixtral: normalizeTopK false: Mixtral renormalises the top-k softmax weights/,
    ]],
    ["default_moe.ts's old default", { ...mixtral, estimator: "default", normalizeTopK: false }, [
      /mixtral: normalizeTopK false/,
    ]],
    [
      "Default MoE evaluated with its defaults",
      { ...mixtral, estimator: "default", estimatorOptions: { evalDefaults: true } },
      [/mixtral: estimatorOptions\.evalDefaults true: moejit adds the unselected experts' EMA default/],
    ],
    ["SparseMixer-v1", { ...small, estimator: "sparsemixer-v1", topK: 1 }, [
      /mixtral: estimator "sparsemixer-v1"/,
      /phimoe: estimator "sparsemixer-v1"/,
    ]],
    ["SparseMixer top-1", { ...phimoe, topK: 1 }, [
      /phimoe: topK 1: PhiMoE always routes exactly 2 experts/,
    ]],
    ["gelu experts", { ...mixtral, activation: "gelu" }, [
      /mixtral: activation "gelu": .* transformers would initialise at random/,
    ]],
    ["parallel block", { ...mixtral, block: "parallel" }, [
      /mixtral: block "parallel": .*no post_attention_layernorm/,
    ]],
    ["Mixtral with LayerNorm", { ...mixtral, norm: "layernorm" }, [
      /mixtral: norm "layernorm": Mixtral's norms are RMSNorm/,
    ]],
    ["loss-free bias", { ...mixtral, balance: [{ kind: "lossFree" }] }, [
      /mixtral: balance lossFree: its per-expert selection bias/,
    ]],
    ["BIP on one layer", { ...phimoe, balance: [[{ kind: "auxLoss" }], [{ kind: "bip" }]] }, [
      /phimoe: balance bip/,
    ]],
    ["dense with LayerNorm", { ...small, ffn: "dense", norm: "layernorm" }, [
      /llama: norm "layernorm": Llama's norms are RMSNorm/,
    ]],
  ];
  for (const [what, partial, reasons] of cases) {
    const c = modelConfig(partial);
    const m = io.hfMatch(c);
    assert.equal(m.family, null, what);
    assert.equal(m.modelType, "moejit", what);
    assert.equal(io.hfFamily(c), "moejit", what);
    const notes = io.hfCompatibility(c).join("\n");
    for (const re of reasons) assert.match(notes, re, `${what}:\n${notes}`);
    assert.match(m.line, /^Hugging Face: no family computes this model, .*model_type "moejit"/);
    // The printed line carries the same reasons.
    for (const r of m.reasons) for (const why of r.reasons) assert.ok(m.line.includes(why), what);
    const json = io.hfConfigJson(c);
    assert.equal(json.model_type, "moejit");
    assert.deepEqual(json.architectures, ["MoejitForCausalLM"]);
    assert.equal((json.moejit as { hf: { exact: boolean } }).hf.exact, false);
    // Read back exactly through the moejit block.
    assert.deepEqual(io.modelConfigFromHf(json), c);
  }
  const bam = modelConfig({ ...small, attnExperts: 2, block: "parallel" });
  assert.equal(io.hfMatch(bam).modelType, "moejit_bam");
  assert.match(io.hfMatch(bam).line, /attnExperts 2: no Hugging Face family has attention experts/);
});

Deno.test("hf families: a run aiming at a family gets its defaults, never over a chosen value", () => {
  assert.deepEqual(io.hfFamilyDefaults({ estimator: "sparsemixer" }), {
    norm: "layernorm",
    topK: 2,
  });
  assert.deepEqual(io.hfFamilyDefaults({ estimator: "sparsemixer", topK: 1 }), {
    norm: "layernorm",
  });
  assert.deepEqual(io.hfFamilyDefaults({ estimator: "default" }), {
    norm: "rmsnorm",
    normalizeTopK: true,
  });
  assert.deepEqual(io.hfFamilyDefaults({ estimator: "sparsemixer", ffn: "dense" }), {
    norm: "rmsnorm",
  });
  assert.deepEqual(io.hfFamilyDefaults({ estimator: "sparsemixer-v1", topK: 1 }), {});
  // With their family's defaults, the families' own selections match exactly.
  const aims: Partial<ModelConfig>[] = [
    { estimator: "sparsemixer" },
    { estimator: "topk" },
    { ffn: "dense" },
  ];
  for (const partial of aims) {
    const c = modelConfig({ ...partial, ...io.hfFamilyDefaults(partial) });
    assert.notEqual(io.hfMatch(c).family, null, JSON.stringify(partial));
  }
});

Deno.test("hf config: bos/eos follow the tokenizer, never Hugging Face's defaults 1 and 2", () => {
  const c = modelConfig(mixtral);
  const bytes = io.hfConfigJson(c, { tokenizer: { name: "byte" } });
  assert.equal(bytes.bos_token_id, null);
  assert.equal(bytes.eos_token_id, null);
  assert.equal(bytes.torch_dtype, "float32");
  const unknown = io.hfConfigJson(c);
  assert.equal(unknown.bos_token_id, null);
  const big = modelConfig({ ...mixtral, vocabSize: 100277 });
  const bpe = io.hfConfigJson(big, { tokenizer: { name: "bpe:cl100k_base", endOfText: 100257 } });
  assert.equal(bpe.bos_token_id, 100257);
  assert.equal(bpe.eos_token_id, 100257);
  const gen = io.hfGenerationConfig(big, {
    tokenizer: { name: "bpe:cl100k_base", endOfText: 100257 },
  });
  assert.equal(gen.eos_token_id, 100257);
  assert.equal(gen.do_sample, true);
  assert.equal(gen.top_k, 0);
  assert.equal(gen.max_length, big.maxSeqLen);
  assert.throws(
    () => io.hfConfigJson(c, { tokenizer: { name: "bpe:cl100k_base", endOfText: 100257 } }),
    /<\|endoftext\|> id 100257 is outside the model's vocabulary of 300/,
  );
});

/** Every Megatron-LM flag these files may use (megatron/training/arguments.py), with choices. */
const MEGATRON_FLAGS: Record<string, string[] | null> = {
  "num-layers": null,
  "hidden-size": null,
  "num-attention-heads": null,
  "ffn-hidden-size": null,
  "seq-length": null,
  "max-position-embeddings": null,
  "position-embedding-type": ["learned_absolute", "rope", "mrope", "relative", "none"],
  "rotary-base": null,
  "rotary-percent": null,
  "rotary-interleaved": null,
  normalization: ["LayerNorm", "RMSNorm"],
  "norm-epsilon": null,
  swiglu: null,
  "squared-relu": null,
  "disable-bias-linear": null,
  "attention-dropout": null,
  "hidden-dropout": null,
  "untie-embeddings-and-output-weights": null,
  "init-method-std": null,
  "tokenizer-type": ["NullTokenizer"],
  "vocab-size": null,
  "make-vocab-size-divisible-by": null,
  "num-experts": null,
  "moe-ffn-hidden-size": null,
  "moe-router-topk": null,
  "moe-router-score-function": ["softmax", "sigmoid"],
  "moe-router-pre-softmax": null,
  "moe-router-dtype": ["fp32", "fp64"],
  "moe-grouped-gemm": null,
  "moe-router-load-balancing-type": [
    "aux_loss",
    "seq_aux_loss",
    "global_aux_loss",
    "sinkhorn",
    "none",
  ],
  "moe-aux-loss-coeff": null,
  "moe-z-loss-coeff": null,
  "moe-router-enable-expert-bias": null,
  "moe-router-bias-update-rate": null,
  "moe-token-dispatcher-type": ["allgather", "alltoall", "flex"],
  "moe-expert-capacity-factor": null,
  "expert-model-parallel-size": null,
  "micro-batch-size": null,
  "global-batch-size": null,
  "train-iters": null,
  lr: null,
  "min-lr": null,
  "lr-decay-style": ["constant", "linear", "cosine", "inverse-square-root", "WSD"],
  "lr-warmup-iters": null,
  "weight-decay": null,
  "adam-beta1": null,
  "adam-beta2": null,
  "adam-eps": null,
  "clip-grad": null,
  seed: null,
  bf16: null,
  "data-path": null,
  save: null,
};

/** The flag lines of megatron_args.txt as a map (value or true), checking every name used. */
function flags(text: string): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (const line of text.split("\n")) {
    for (const [, name] of line.matchAll(/--([a-z0-9-]+)/g)) {
      assert.ok(name in MEGATRON_FLAGS, `--${name} is not a Megatron-LM flag (${line})`);
    }
    if (line.startsWith("#") || !line.trim()) continue;
    const m = line.match(/^--([a-z0-9-]+)(?: (\S+))?$/);
    assert.ok(m, `not a flag line: ${line}`);
    const choices = MEGATRON_FLAGS[m![1]];
    if (choices) assert.ok(choices.includes(m![2]), `--${m![1]} ${m![2]}`);
    assert.ok(!out.has(m![1]), `--${m![1]} twice`);
    out.set(m![1], m![2] ?? true);
  }
  return out;
}

Deno.test("megatron_args.txt: the model and MoE settings as Megatron-Core flags, missing methods named", () => {
  const run = {
    tokenizer: { name: "byte" },
    seqLength: 128,
    batch: 16,
    steps: 600,
    lr: 3e-3,
    minLr: 3e-4,
    warmup: 30,
    weightDecay: 0.1,
    adam: { beta1: 0.9, beta2: 0.95, eps: 1e-8 },
    clip: 1,
    seed: 0,
  };
  const grin = modelConfig({
    ...phimoe,
    vocabSize: 256,
    balance: [{ kind: "auxLoss", alpha: 0.01 }, { kind: "zLoss", beta: 0.002 }],
  });
  const text = io.megatronArgs(grin, run);
  const f = flags(text);
  const expect: Record<string, string | true> = {
    "num-layers": "2",
    "hidden-size": "16",
    "num-attention-heads": "2",
    "ffn-hidden-size": "8",
    "seq-length": "128",
    "position-embedding-type": "rope",
    "rotary-base": "10000",
    normalization: "LayerNorm",
    "norm-epsilon": "0.00001",
    swiglu: true,
    "disable-bias-linear": true,
    "num-experts": "4",
    "moe-ffn-hidden-size": "8",
    "moe-router-topk": "2",
    "moe-router-score-function": "softmax",
    "moe-router-pre-softmax": true,
    "moe-grouped-gemm": true,
    "moe-router-load-balancing-type": "aux_loss",
    "moe-aux-loss-coeff": "0.01",
    "moe-z-loss-coeff": "0.002",
    "tokenizer-type": "NullTokenizer",
    "vocab-size": "255",
    "micro-batch-size": "16",
    "train-iters": "600",
    lr: "0.003",
    "min-lr": "0.0003",
    "lr-decay-style": "cosine",
    "lr-warmup-iters": "30",
    "adam-beta2": "0.95",
    "clip-grad": "1",
  };
  for (const [k, v] of Object.entries(expect)) {
    const got = f.get(k);
    assert.ok(
      got === v || (typeof v === "string" && Number(got) === Number(v)),
      `--${k}: ${got} ≠ ${v}`,
    );
  }
  assert.ok(!f.has("untie-embeddings-and-output-weights"), "tied");
  assert.ok(!f.has("make-vocab-size-divisible-by"), "256 needs no padding change");
  assert.match(text, /# NOT IN MEGATRON-CORE: SparseMixer-v2 \(GRIN\)\. .*ε = 0\.01/);

  // Default MoE with renormalised top-k, loss-free balancing, untied, BPE, HF-convention aux.
  const dm = modelConfig({
    ...mixtral,
    estimator: "default",
    vocabSize: 100277,
    tiedEmbeddings: false,
    balance: [{ kind: "auxLoss", alpha: 0.005, convention: "hf" }, { kind: "lossFree" }],
  });
  const t2 = io.megatronArgs(dm, { tokenizer: { name: "bpe:cl100k_base", endOfText: 100257 } });
  const f2 = flags(t2);
  assert.ok(!f2.has("moe-router-pre-softmax"), "renormalised top-k is Megatron's default");
  assert.equal(f2.get("untie-embeddings-and-output-weights"), true);
  assert.equal(Number(f2.get("moe-aux-loss-coeff")), 0.005 * 2);
  assert.equal(f2.get("make-vocab-size-divisible-by"), "1");
  assert.equal(f2.get("vocab-size"), "100276");
  assert.match(t2, /# NOT IN MEGATRON-CORE: Default MoE\./);
  assert.match(t2, /# NOT IN MEGATRON-CORE: an expert bias on a softmax router\./);
  assert.match(t2, /tiktoken's cl100k_base ids/);
  assert.match(t2, /# the optimizer settings were not recorded/);

  // BIP, sequence-level aux loss, dense estimator, gelu, parallel block.
  const odd = modelConfig({
    ...small,
    estimator: "dense",
    activation: "gelu",
    block: "parallel",
    balance: [{ kind: "auxLoss", scope: "sequence" }, { kind: "bip" }],
  });
  const t3 = io.megatronArgs(odd);
  const f3 = flags(t3);
  assert.equal(f3.get("moe-router-load-balancing-type"), "seq_aux_loss");
  assert.ok(!f3.has("swiglu"));
  assert.match(t3, /# NOT IN MEGATRON-CORE: BIP balancing\./);
  assert.match(t3, /# NOT IN MEGATRON-CORE: the "dense" router-gradient estimator\./);
  assert.match(t3, /# NOT IN MEGATRON-CORE: the parallel block\./);

  // A dense model: no MoE flags.
  const f4 = flags(io.megatronArgs(modelConfig({ ...small, ffn: "dense" })));
  assert.ok(!f4.has("num-experts"));
  assert.equal(f4.get("normalization"), "RMSNorm");
});

Deno.test("checkpoint files: README.md, generation_config.json and megatron_args.txt say what the model is", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const run = { tokenizer: { name: "byte" }, seqLength: 32, step: 7, lr: 1e-3, batch: 4 };
    const exact = modelConfig({ ...phimoe, vocabSize: 256 });
    await io.saveCheckpoint(`${dir}/a`, { config: exact, params: randomParams(exact).params, run });
    const readme = await Deno.readTextFile(`${dir}/a/README.md`);
    assert.match(readme, /^---\nlibrary_name: transformers\n/);
    assert.ok(readme.includes(io.hfMatch(exact).line));
    assert.match(readme, /list\(text\.encode\("utf-8"\)\)/);
    assert.match(readme, /## Scaling out/);
    assert.match(readme, /PhimoeForCausalLM/);
    assert.match(readme, /\| step \| 7 \|/);
    const gen = JSON.parse(await Deno.readTextFile(`${dir}/a/generation_config.json`));
    assert.equal(gen.eos_token_id, null);
    const args = await Deno.readTextFile(`${dir}/a/megatron_args.txt`);
    assert.equal(flags(args).get("seq-length"), "32");
    const config = JSON.parse(await Deno.readTextFile(`${dir}/a/config.json`));
    assert.equal(config.model_type, "phimoe");
    assert.equal(config.moejit.hf.line, io.hfMatch(exact).line);

    const own = modelConfig({ ...phimoe, norm: "rmsnorm", vocabSize: 50257 });
    await io.saveCheckpoint(`${dir}/b`, {
      config: own,
      params: randomParams(own).params,
      run: { tokenizer: { name: "bpe:r50k_base", endOfText: 50256 } },
    });
    const readme2 = await Deno.readTextFile(`${dir}/b/README.md`);
    assert.ok(!readme2.includes("library_name: transformers"));
    assert.match(readme2, /- phimoe: norm "rmsnorm": PhiMoE's norms are nn\.LayerNorm/);
    assert.match(readme2, /tiktoken\.get_encoding\("r50k_base"\)/);
    assert.match(readme2, /encode\(text, disallowed_special=\(\)\)/);
    assert.match(readme2, /no class computes this model/);
    // The model still loads into moejit.
    const ck = await io.loadCheckpoint(`${dir}/b`);
    assert.deepEqual(ck.config, own);

    await assert.rejects(
      () => io.saveCheckpoint(`${dir}/c`, { config: exact, params: {}, run: { steps: -1 } }),
      /run\.steps must be a finite number ≥ 0, got -1/,
    );
    await assert.rejects(
      () =>
        io.saveCheckpoint(`${dir}/c`, { config: exact, params: {}, run: { stepz: 1 } as never }),
      /unknown run field "stepz"/,
    );
  } finally {
    await cleanup();
  }
});
