/**
 * Checkpoints read the way transformers reads them: a PyTorch forward written from transformers'
 * Llama, Mixtral and PhiMoE modeling code (hf_reference.py) loads config.json + model.safetensors
 * and must give moejit's inference logits within 1e-4 (max |Δ| / max |logit|) for every checkpoint
 * labelled with a family: written by mj.train.train and by the examples' CLI, byte and BPE
 * vocabularies, on the interpreter and on each compiled backend (WebGPU, native). Its key set must
 * be exactly the class's. Both directions: checkpoints the PyTorch side writes load into moejit
 * with the same logits, and moejit → Hugging Face → moejit is lossless. Without python3-torch these
 * tests are skipped with the reason printed.
 */
import * as mj from "../../mod.ts";
import { assert, SLOW } from "../helpers.ts";
import { COMPILED } from "../webgpu/harness.ts";
import {
  agreement,
  moejitLogits,
  reference,
  referenceLogits,
  torchMissing,
} from "./hf_reference.ts";

const missing = await torchMissing();
if (missing) console.log(`hf cross-check skipped: ${missing}`);
/** Why each backend's cases are skipped here (null: they run). */
const SKIP: Record<mj.BackendName, string | null> = {
  cpu: null,
  ...Object.fromEntries(COMPILED.map((b) => [b.name, b.skip])) as Record<
    "webgpu" | "native",
    string | null
  >,
};
const BACKENDS = (["cpu", "webgpu", "native"] as const).filter((b) => SKIP[b] === null);
for (const b of ["webgpu", "native"] as const) {
  if (SKIP[b]) console.log(`hf cross-check: the ${b} cases are skipped (${SKIP[b]})`);
}

const TOLERANCE = 1e-4;

const TEXT = [
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in",
  "my purse, and nothing particular to interest me on shore, I thought I would sail about a little",
  "and see the watery part of the world. It is a way I have of driving off the spleen and",
  "regulating the circulation. Whenever I find myself growing grim about the mouth; whenever it is",
  "a damp, drizzly November in my soul; whenever I find myself involuntarily pausing before coffin",
  "warehouses, and bringing up the rear of every funeral I meet; then, I account it high time to",
  "get to sea as soon as I can. This is my substitute for pistol and ball.",
].join("\n").repeat(4);

const dir = await Deno.makeTempDir({ prefix: "moejit-hf-" });
const corpus = `${dir}/corpus.txt`;
await Deno.writeTextFile(corpus, TEXT);
const bigCorpus = `${dir}/corpus-big.txt`;
await Deno.writeTextFile(bigCorpus, TEXT.repeat(50));

/** What each family's runs set; the rest is the tiny shape below. */
const FAMILIES: Record<"phimoe" | "mixtral" | "llama", Partial<mj.nn.ModelConfig>> = {
  // examples/grin.ts's model: SparseMixer-v2, PhiMoE's LayerNorm, top-2
  phimoe: { estimator: "sparsemixer", topK: 2, norm: "layernorm" },
  // examples/default_moe.ts's model: Default MoE, renormalised top-k; untied for lm_head.weight
  mixtral: { estimator: "default", topK: 2, normalizeTopK: true, tiedEmbeddings: false },
  llama: { ffn: "dense" },
};
const TINY: Partial<mj.nn.ModelConfig> = { nLayers: 2, dModel: 16, nHeads: 2, dFf: 16, experts: 4 };
const VOCABS = ["byte", "bpe:cl100k_base"] as const;

/** Token ids from the corpus, two rows of `S`. */
async function sampleIds(tokenizer: string, S = 16): Promise<number[][]> {
  const tok = await mj.data.tokenizerByName(tokenizer);
  const ids = Array.from(tok.encode(TEXT.slice(200, 2000)));
  return [ids.slice(0, S), ids.slice(S + 7, 2 * S + 7)];
}

/** A few training steps with mj.train.train; returns the checkpoint directory. */
async function trainCheckpoint(
  out: string,
  model: Partial<mj.nn.ModelConfig>,
  tokenizer: string,
  steps = 3,
): Promise<string> {
  const r = await mj.train.train({
    model: { ...TINY, ...model },
    data: corpus,
    tokenizer,
    batch: 2,
    seq: 16,
    steps,
    lr: 2e-2,
    warmup: 0,
    logEvery: steps,
    evalEvery: 0,
    evalBatches: 1,
    finalEvalBatches: 1,
    checkpointEvery: 0,
    samples: 0,
    progress: false,
    handleInterrupt: false,
    out,
  });
  return r.paths.checkpoint;
}

/** Compares moejit (current backend) with the PyTorch reading; returns the agreement. */
async function crossCheck(ckpt: string, ids: number[][], what: string): Promise<number> {
  const ref = await referenceLogits(ckpt, ids);
  const got = await moejitLogits(ckpt, ids);
  const rel = agreement(got, ref);
  console.log(`hf agreement ${what}: max|Δ|/max|logit| = ${rel.toExponential(2)}`);
  assert.ok(rel <= TOLERANCE, `${what}: ${rel} > ${TOLERANCE}`);
  return rel;
}

/**
 * The fast tier checks every family with bytes on the interpreter and WebGPU, and BPE
 * (cl100k_base, a 100k embedding) for PhiMoE on the interpreter; the slow tier the whole matrix.
 * On native the examples' checkpoints (every family, trained by the CLI on native, below) are the
 * fast tier's cross-check, and mj.train.train's are in the slow tier.
 */
const CASES = VOCABS.flatMap((vocab) =>
  Object.keys(FAMILIES).flatMap((family) =>
    (["cpu", "webgpu", "native"] as const).map((backend) => ({
      vocab,
      family: family as keyof typeof FAMILIES,
      backend,
      fast: (vocab === "byte" && backend !== "native") ||
        (family === "phimoe" && backend === "cpu"),
    }))
  )
);

for (const backend of ["cpu", "webgpu", "native"] as const) {
  for (const tier of ["fast", "slow"] as const) {
    const cases = CASES.filter((c) => c.backend === backend && c.fast === (tier === "fast"));
    // A tier with no cases on this backend registers nothing (a test with nothing to check).
    if (cases.length === 0) continue;
    Deno.test({
      name: `${backend}: hf cross-check${tier === "slow" ? " (slow)" : ""}: mj.train.train ` +
        `checkpoints (${cases.map((c) => `${c.family}/${c.vocab}`).join(", ")}) give the ` +
        "PyTorch reading's logits",
      ignore: missing !== null || SKIP[backend] !== null || (tier === "slow" && !SLOW),
    }, async () => {
      mj.setBackend(backend);
      try {
        for (const { vocab, family } of cases) {
          const ids = await sampleIds(vocab);
          const ckpt = await trainCheckpoint(
            `${dir}/train-${backend}-${family}-${vocab}`,
            FAMILIES[family],
            vocab,
          );
          const config = JSON.parse(await Deno.readTextFile(`${ckpt}/config.json`));
          assert.equal(config.model_type, family);
          assert.equal(config.moejit.hf.exact, true);
          await crossCheck(ckpt, ids, `${family} ${vocab} ${backend} (mj.train.train, 3 steps)`);
        }
      } finally {
        mj.setBackend("cpu");
      }
    });
  }
}

/** Runs an example script; returns its checkpoint directory and what it printed. */
async function runExample(script: string, args: string[], out: string) {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args, "--out", out],
    cwd: new URL("../../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
  assert.ok(res.success, `${script} ${args.join(" ")} failed:\n${text}`);
  return { ckpt: `${out}/checkpoint`, text };
}

const TINY_FLAGS = [
  "--layers",
  "2",
  "--d-model",
  "16",
  "--heads",
  "2",
  "--d-ff",
  "16",
  "--experts",
  "4",
  "--batch",
  "2",
  "--seq",
  "16",
  "--steps",
  "3",
  "--lr",
  "0.02",
  "--eval-every",
  "0",
  "--eval-batches",
  "1",
  "--samples",
  "0",
];

/** The examples with their defaults and what they must be. */
const EXAMPLES: [string, string[], string, string][] = [
  ["examples/grin.ts", [], "phimoe", "exact PhiMoE"],
  ["examples/default_moe.ts", [], "mixtral", "exact Mixtral"],
  ["examples/grin.ts", ["--ffn", "dense"], "llama", "exact Llama"],
];

/** The examples trained with `--backend backend` and read on it, checked against PyTorch. */
async function examplesCheck(backend: mj.BackendName) {
  const ids = await sampleIds("byte");
  for (const [script, flags, family, says] of EXAMPLES) {
    const out = `${dir}/cli-${backend}-${family}`;
    const { ckpt, text } = await runExample(
      script,
      [...TINY_FLAGS, ...flags, "--data", corpus, "--backend", backend],
      out,
    );
    assert.match(text, new RegExp(`Hugging Face: ${says}`), text);
    assert.match(text, new RegExp(`model_type ${family}: transformers' \\w+ reads it exactly`));
    mj.setBackend(backend);
    try {
      await crossCheck(ckpt, ids, `${family} byte ${backend} (${script} ${flags.join(" ")})`);
    } finally {
      mj.setBackend("cpu");
    }
  }
}

const EXAMPLES_RUN =
  "hf cross-check: the examples' checkpoints (grin.ts, default_moe.ts, --ffn dense) " +
  "give the PyTorch reading's logits, and each run prints its family";
// On every compiled backend; on the interpreter only where none runs.
for (const backend of ["cpu", "webgpu", "native"] as const) {
  Deno.test({
    name: `${backend}: ${EXAMPLES_RUN}`,
    ignore: missing !== null ||
      (backend === "cpu" ? BACKENDS.length > 1 : SKIP[backend] !== null),
  }, () => examplesCheck(backend));
}

Deno.test({
  name: "hf cross-check (slow): the examples at their default size (a few steps) and BPE",
  ignore: missing !== null || !SLOW,
}, async () => {
  for (const [script, flags, family] of EXAMPLES) {
    for (const vocab of ["byte", "bpe"]) {
      const out = `${dir}/cli-default-${family}-${vocab}`;
      // With cl100k the default batch's logits (2048 × 100277 f32) exceed what llvmpipe binds
      // in one buffer (128 MiB): two sequences per batch keep them at 100 MiB, and a corpus of
      // ~30k tokens keeps the final evaluation (every validation window) short.
      const batch = vocab === "bpe" ? ["--batch", "2", "--data", bigCorpus] : [];
      const { ckpt } = await runExample(
        script,
        [
          ...flags,
          ...batch,
          "--steps",
          "3",
          "--eval-every",
          "0",
          "--samples",
          "0",
          "--tokenizer",
          vocab,
        ],
        out,
      );
      const ids = await sampleIds(vocab === "bpe" ? "bpe:cl100k_base" : "byte", 128);
      for (const backend of BACKENDS) {
        mj.setBackend(backend);
        try {
          await crossCheck(ckpt, ids, `${family} ${vocab} ${backend} (${script}, default size)`);
        } finally {
          mj.setBackend("cpu");
        }
      }
    }
  }
});

Deno.test({
  name: "hf cross-check: checkpoints written by the PyTorch side (save_pretrained layout) load " +
    "into moejit with the same logits",
  ignore: missing !== null,
}, async () => {
  const shape = {
    vocab_size: 300,
    hidden_size: 32,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 4096,
  };
  const made: Record<string, Record<string, unknown>> = {
    llama: { ...shape, tie_word_embeddings: true },
    // moejit has no grouped-query attention: as many K/V heads as query heads
    mixtral: { ...shape, num_key_value_heads: 4, num_local_experts: 5, num_experts_per_tok: 3 },
    phimoe: { ...shape, num_key_value_heads: 4, num_local_experts: 6, router_jitter_noise: 0.05 },
  };
  const answers = await reference(
    Object.entries(made).map(([family, config], i) => ({
      cmd: "make",
      family,
      dir: `${dir}/made-${family}`,
      seed: i,
      config,
    })),
  );
  answers.forEach((a) => assert.equal(a.error, undefined, a.error));
  const ids = [[1, 17, 250, 3, 99, 42, 7, 299, 0, 64, 5, 5, 120], [2, 2, 2, 8, 160, 31, 77, 1]]
    .map((r) => r.slice(0, 8));
  for (const backend of BACKENDS) {
    mj.setBackend(backend);
    try {
      for (const family of Object.keys(made)) {
        const ckpt = `${dir}/made-${family}`;
        const ck = await mj.io.loadCheckpoint(ckpt);
        assert.equal(mj.io.hfFamily(ck.config), family, "read back as the same family");
        await crossCheck(ckpt, ids, `${family} written by PyTorch, read on ${backend}`);
      }
    } finally {
      mj.setBackend("cpu");
    }
  }
});

Deno.test({
  name: "hf cross-check: moejit → Hugging Face → moejit is lossless",
  ignore: missing !== null,
}, async () => {
  mj.setBackend("cpu");
  const ids = await sampleIds("byte");
  for (const [family, model] of Object.entries(FAMILIES)) {
    const src = await trainCheckpoint(`${dir}/roundtrip-${family}`, model, "byte", 2);
    const dst = `${dir}/roundtrip-${family}-hf`;
    const [a] = await reference([{ cmd: "resave", src, dst }]);
    assert.equal(a.error, undefined, a.error);
    const before = await mj.io.loadCheckpoint<mj.nn.Params>(src);
    const after = await mj.io.loadCheckpoint<mj.nn.Params>(dst);
    // The same function: every shape and inference setting survives the Hugging Face keys alone.
    for (
      const k of [
        "vocabSize",
        "dModel",
        "nLayers",
        "nHeads",
        "dFf",
        "ffn",
        "norm",
        "normEps",
        "ropeTheta",
        "tiedEmbeddings",
        "block",
        "activation",
      ] as const
    ) assert.deepEqual(after.config[k], before.config[k], `${family}: ${k}`);
    if (before.config.ffn === "moe") {
      assert.equal(after.config.experts, before.config.experts);
      assert.equal(after.config.topK, before.config.topK);
    }
    assert.equal(mj.io.hfFamily(after.config), family);
    // Bit for bit the same parameters.
    const flat = (t: unknown) => mj.treeFlatten(t);
    const [pb, pa] = [flat(before.params), flat(after.params)];
    assert.deepEqual(pa.paths, pb.paths);
    for (let i = 0; i < pb.leaves.length; i++) {
      const [x, y] = await Promise.all([
        (pb.leaves[i] as mj.Tensor).data(),
        (pa.leaves[i] as mj.Tensor).data(),
      ]);
      assert.deepEqual(new Uint8Array(y.buffer), new Uint8Array(x.buffer), pb.paths[i]);
    }
    const [lb, la] = [await moejitLogits(src, ids), await moejitLogits(dst, ids)];
    assert.deepEqual(la, lb, `${family}: logits after the round trip`);
  }
});

Deno.test({
  name: "hf cross-check: the reading refuses what transformers would not run as the same model, " +
    "and a family label on a non-exact model would change the logits",
  ignore: missing !== null,
}, async () => {
  mj.setBackend("cpu");
  const ids = await sampleIds("byte");
  // Labelled moejit: no Hugging Face class.
  const own = await trainCheckpoint(
    `${dir}/own`,
    { estimator: "sparsemixer", topK: 2, norm: "rmsnorm" },
    "byte",
  );
  const config = JSON.parse(await Deno.readTextFile(`${own}/config.json`));
  assert.equal(config.model_type, "moejit");
  await assert.rejects(() => referenceLogits(own, ids), /Unrecognized model_type 'moejit'/);

  // The same model forced into PhiMoE (as the old exporter did): transformers fills the missing
  // LayerNorm biases with zeros and centres by the mean, which this model never did.
  const forced = `${dir}/own-as-phimoe`;
  await Deno.mkdir(forced);
  const st = await mj.io.readSafetensors(`${own}/model.safetensors`);
  await mj.io.writeSafetensors(`${forced}/model.safetensors`, st.tensors, st.metadata);
  await Deno.writeTextFile(
    `${forced}/config.json`,
    JSON.stringify({ ...config, model_type: "phimoe", moejit: undefined }),
  );
  await assert.rejects(() => referenceLogits(forced, ids), /key mismatch: missing \[.*bias/);
  const zeros = (n: number) => ({ dtype: "F32" as const, shape: [n], data: new Float32Array(n) });
  const withBias: Record<string, mj.io.SafetensorsInput> = { ...st.tensors };
  for (const name of Object.keys(st.tensors)) {
    if (name.endsWith("layernorm.weight") || name === "model.norm.weight") {
      withBias[name.replace(/weight$/, "bias")] = zeros(16);
    }
  }
  await mj.io.writeSafetensors(`${forced}/model.safetensors`, withBias, st.metadata);
  const off = agreement(await moejitLogits(own, ids), await referenceLogits(forced, ids));
  console.log(
    `hf: a SparseMixer + RMSNorm model read as PhiMoE differs by ${off.toExponential(2)}`,
  );
  assert.ok(off > 1e-3, `reading it as PhiMoE should change the logits, got ${off}`);

  // Top-k without renormalisation read as Mixtral.
  const plain = await trainCheckpoint(`${dir}/plain`, { estimator: "topk", topK: 2 }, "byte");
  const pc = JSON.parse(await Deno.readTextFile(`${plain}/config.json`));
  assert.equal(pc.model_type, "moejit");
  const asMixtral = `${dir}/plain-as-mixtral`;
  await Deno.mkdir(asMixtral);
  await Deno.copyFile(`${plain}/model.safetensors`, `${asMixtral}/model.safetensors`);
  await Deno.writeTextFile(
    `${asMixtral}/config.json`,
    JSON.stringify({ ...pc, model_type: "mixtral", moejit: undefined }),
  );
  const off2 = agreement(await moejitLogits(plain, ids), await referenceLogits(asMixtral, ids));
  console.log(
    `hf: top-k without renormalisation read as Mixtral differs by ${off2.toExponential(2)}`,
  );
  assert.ok(off2 > 1e-3, `reading it as Mixtral should change the logits, got ${off2}`);
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
});
