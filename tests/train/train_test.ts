/**
 * The training loop end to end on a tiny model and a small corpus file: the loss falls, each
 * compiled backend (WebGPU, native) and the interpreter agree step by step, a resumed run
 * reproduces an uninterrupted one, an interrupted run checkpoints, outputs land where they should,
 * and bad input is named.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";

const TEXT = [
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "However little known the feelings or views of such a man may be on his first entering a neighbourhood,",
  "this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property",
  "of some one or other of their daughters. My dear Mr. Bennet, said his lady to him one day, have you heard",
  "that Netherfield Park is let at last? Mr. Bennet replied that he had not. But it is, returned she;",
  "for Mrs. Long has just been here, and she told me all about it. Mr. Bennet made no answer.",
].join("\n").repeat(6);

const dir = await Deno.makeTempDir({ prefix: "moejit-train-" });
const corpus = `${dir}/corpus.txt`;
await Deno.writeTextFile(corpus, TEXT);

const TINY: Partial<mj.nn.ModelConfig> = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  dFf: 16,
  experts: 4,
  topK: 2,
};

/**
 * A quiet run on the tiny model; returns the result and the logged records. `stopAfter` stops it
 * after that step (logged and checkpointed), as a Ctrl-C would.
 */
async function run(o: Partial<mj.train.TrainOptions> & { out: string; stopAfter?: number }) {
  const logs: mj.train.LogRecord[] = [];
  const { stopAfter, ...rest } = o;
  const ctl = new AbortController();
  const r = await mj.train.train({
    model: TINY,
    data: corpus,
    batch: 4,
    seq: 16,
    steps: 24,
    lr: 1e-2,
    logEvery: 1,
    evalEvery: 0,
    evalBatches: 2,
    checkpointEvery: 0,
    samples: 0,
    progress: false,
    handleInterrupt: false,
    ...rest,
    ...(stopAfter ? { signal: ctl.signal } : {}),
    onLog: (rec) => {
      logs.push(rec);
      if (rec.step === stopAfter) ctl.abort();
      rest.onLog?.(rec);
    },
  });
  return { r, logs, losses: logs.map((l) => l.loss) };
}

/** The interpreter's run, shared by the compiled backends' tests. */
let cpuRun: ReturnType<typeof run> | null = null;

gpuTest(
  "train: the loss falls, and the compiled run (fused and unfused) agrees with the interpreter step by step",
  async () => {
    mj.setBackend("cpu");
    cpuRun ??= run({ out: `${dir}/cpu` });
    const cpu = await cpuRun;
    const b = backend();
    mj.setBackend(b);
    const dev = await run({ out: `${dir}/${b}` });
    // Fusion changes which kernels run, not the math: four unfused steps match four fused ones.
    const fused = await run({ out: `${dir}/${b}-fused`, steps: 4 });
    mj.setFusion(false);
    let unfused: Awaited<ReturnType<typeof run>>;
    try {
      unfused = await run({ out: `${dir}/${b}-unfused`, steps: 4 });
    } finally {
      mj.setFusion(true);
    }
    mj.setBackend("cpu");
    assertClose(unfused.losses, fused.losses, { rtol: 1e-4, atol: 1e-4, msg: "unfused" });
    assert.equal(cpu.losses.length, 24);
    const head = cpu.losses.slice(0, 3).reduce((a, b) => a + b) / 3;
    const tail = cpu.losses.slice(-3).reduce((a, b) => a + b) / 3;
    assert.ok(tail < head - 0.5, `loss ${head.toFixed(3)} → ${tail.toFixed(3)}`);
    assert.ok(cpu.r.valPpl > 1 && cpu.r.valPpl < 256, `val ppl ${cpu.r.valPpl}`);
    // Same batches, same noise, same init: the two backends differ only by f32 summation order.
    assertClose(dev.losses, cpu.losses, { rtol: 2e-3, atol: 2e-3, msg: "loss per step" });
    assertClose(dev.logs.map((l) => l.grad_norm), cpu.logs.map((l) => l.grad_norm), {
      rtol: 2e-2,
      atol: 1e-3,
      msg: "grad norm per step",
    });
    assertClose([dev.r.valLoss], [cpu.r.valLoss], { rtol: 2e-3 });
  },
);

Deno.test("train: resuming after N steps for M more reproduces the N+M-step run", async () => {
  mj.setBackend("cpu");
  const model = {
    ...TINY,
    estimator: "default" as const,
    balance: [{ kind: "auxLoss" as const, alpha: 0.01 }, { kind: "lossFree" as const }],
  };
  const straight = await run({ out: `${dir}/straight`, steps: 16, model });
  const first = await run({ out: `${dir}/resumed`, steps: 16, model, stopAfter: 1 });
  assert.equal(first.r.step, 1);
  assert.ok(first.r.interrupted);
  // Resuming with fewer steps stops early but keeps the 16-step schedule, so 1 + 8 + 7 steps
  // are the 16 straight ones.
  const part = await run({
    out: `${dir}/resumed`,
    steps: 9,
    model,
    resume: `${dir}/resumed/checkpoint`,
  });
  assert.equal(part.r.step, 9);
  assert.equal(part.r.schedule.total, 16);
  const rest = await run({
    out: `${dir}/resumed`,
    steps: 16,
    model,
    resume: `${dir}/resumed/checkpoint`,
  });
  assert.equal(rest.r.step, 16);
  assert.deepEqual([...first.losses, ...part.losses, ...rest.losses], straight.losses);
  assert.equal(rest.r.valLoss, straight.r.valLoss);
  // The metrics log holds each step once, in order, across the resumes.
  const rows = await mj.io.readMetrics(`${dir}/resumed/metrics.jsonl`);
  const steps = rows.filter((r) => typeof r.loss === "number").map((r) => r.step);
  assert.deepEqual(steps, Array.from({ length: 16 }, (_, i) => i + 1));
});

Deno.test("train: stopping mid-run checkpoints, and resume continues from there", async () => {
  mj.setBackend("cpu");
  const ctl = new AbortController();
  const seen: number[] = [];
  const first = await run({
    out: `${dir}/stop`,
    steps: 12,
    onLog: (rec) => {
      seen.push(rec.loss);
      if (rec.step === 5) ctl.abort();
    },
    signal: ctl.signal,
  });
  assert.equal(first.r.step, 5);
  assert.ok(first.r.interrupted);
  const ck = await mj.io.loadCheckpoint(`${dir}/stop/checkpoint`);
  assert.equal((ck.trainingState!.json as { step: number }).step, 5);
  const straight = await run({ out: `${dir}/stop-straight`, steps: 12 });
  const rest = await run({ out: `${dir}/stop`, steps: 12, resume: `${dir}/stop/checkpoint` });
  assert.equal(seen.length, 5);
  assertClose([...seen, ...rest.losses], straight.losses, { rtol: 1e-6, atol: 1e-7 });
});

Deno.test("train: outputs — metrics JSONL, plots, a Hugging Face checkpoint, samples, summary", async () => {
  mj.setBackend("cpu");
  const out = `${dir}/outputs`;
  const { r } = await run({
    out,
    steps: 6,
    logEvery: 2,
    evalEvery: 4,
    samples: 1,
    sampleTokens: 8,
  });
  const rows = await mj.io.readMetrics(r.paths.metrics);
  const train = rows.filter((x) => typeof x.loss === "number");
  assert.deepEqual(train.map((x) => x.step), [2, 4, 6]);
  for (const key of ["loss", "ce", "lr", "grad_norm", "tokens_per_sec", "layers"]) {
    assert.ok(key in train[0], key);
  }
  const layer = (train[0].layers as Record<string, unknown>[])[0];
  for (const key of ["tokens_per_expert", "max_vio", "load_balancing_loss", "z_loss"]) {
    assert.ok(key in layer, key);
  }
  assert.equal((layer.tokens_per_expert as number[]).reduce((a, b) => a + b), 4 * 16 * 2);
  // The layer metrics aggregated over layers (mj.balance.aggregate): mean and max.
  const vio = (train[0].layers as { max_vio: number }[]).map((l) => l.max_vio);
  const mean = train[0].layers_mean as Record<string, number>;
  const max = train[0].layers_max as Record<string, number>;
  assert.ok(Math.abs(mean.max_vio - vio.reduce((a, b) => a + b) / vio.length) < 1e-12);
  assert.equal(max.max_vio, Math.max(...vio));
  assert.ok(!("tokens_per_expert" in mean));
  assert.ok(
    rows.some((x) => x.step === 4 && typeof x.val_ppl === "number"),
    "intermediate validation",
  );
  assert.ok(
    rows.some((x) => x.final === true && typeof x.val_ppl === "number"),
    "final validation",
  );
  for (const name of ["loss.svg", "val_ppl.svg", "max_vio.svg", "expert_load.svg"]) {
    const svg = await Deno.readTextFile(`${out}/${name}`);
    assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"), name);
  }
  const config = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/config.json`));
  // SparseMixer with RMSNorm: no Hugging Face family computes it (PhiMoE's norms are LayerNorms).
  assert.equal(config.model_type, "moejit");
  assert.match(config.moejit.hf.reasons.phimoe.join(" "), /norm "rmsnorm"/);
  assert.equal(config.num_local_experts, 4);
  const samples = await Deno.readTextFile(`${out}/samples.txt`);
  assert.match(samples, /--- prompt\n[\s\S]+--- continuation\n/);
  const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
  assert.equal(summary.step, 6);
  assert.ok(summary.val_ppl > 1 && summary.unigram_ppl > 1);
  assert.equal(r.balance.length, 2);
  assert.equal(r.balance[0].tokensPerExpert.length, 4);
});

Deno.test("train: bad input is named and loses nothing", async (t) => {
  mj.setBackend("cpu");
  const throwsWith = async (f: () => Promise<unknown>, re: RegExp) =>
    await assert.rejects(f, (e: unknown) => e instanceof mj.MoejitError && re.test(e.message));
  await t.step(
    "a missing data file",
    () => throwsWith(() => run({ out: `${dir}/bad`, data: `${dir}/nope.txt` }), /nope\.txt/),
  );
  await t.step("an empty corpus", async () => {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    await throwsWith(() => run({ out: `${dir}/bad`, data: `${dir}/empty.txt` }), /empty/);
  });
  await t.step(
    "a sequence longer than the corpus",
    () =>
      throwsWith(
        () => run({ out: `${dir}/bad`, seq: 100000 }),
        /sequence length 100000 is longer than/,
      ),
  );
  await t.step("an unknown option or estimator", async () => {
    await throwsWith(
      () => run({ out: `${dir}/bad`, stepz: 3 } as never),
      /train: unknown option "stepz"/,
    );
    await throwsWith(
      () => run({ out: `${dir}/bad`, model: { ...TINY, estimator: "grin" as never } }),
      /estimator must be one of/,
    );
  });
  await t.step("a corrupt or truncated checkpoint is detected, named and not loaded", async () => {
    await run({ out: `${dir}/corrupt`, steps: 2 });
    const file = `${dir}/corrupt/checkpoint/model.safetensors`;
    const bytes = await Deno.readFile(file);
    await Deno.writeFile(file, bytes.subarray(0, bytes.length - 10));
    await throwsWith(
      () => run({ out: `${dir}/corrupt`, steps: 4, resume: `${dir}/corrupt/checkpoint` }),
      /model\.safetensors/,
    );
    const flipped = bytes.slice();
    flipped[bytes.length - 1] ^= 0xff;
    await Deno.writeFile(file, flipped);
    await throwsWith(
      () => run({ out: `${dir}/corrupt`, steps: 4, resume: `${dir}/corrupt/checkpoint` }),
      /training_state|SHA-256|different/,
    );
  });
  await t.step("a shape mismatch on resume", async () => {
    await run({ out: `${dir}/shape`, steps: 2 });
    await throwsWith(
      () =>
        run({
          out: `${dir}/shape`,
          steps: 4,
          model: { ...TINY, dModel: 32 },
          resume: `${dir}/shape/checkpoint`,
        }),
      /dModel is 16 in the checkpoint but 32/,
    );
    // The checkpoint is still there and still loads.
    const ck = await mj.io.loadCheckpoint(`${dir}/shape/checkpoint`);
    assert.equal(ck.config.dModel, 16);
  });
});

Deno.test("train: the command line — --help lists every flag with its default, bad flags exit 2", async () => {
  const cli = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../examples/grin.ts", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const help = await cli("--help");
  assert.equal(help.code, 0);
  const text = new TextDecoder().decode(help.stdout);
  for (
    const flag of [
      "steps",
      "batch",
      "seq",
      "layers",
      "d-model",
      "heads",
      "experts",
      "top-k",
      "d-ff",
      "estimator",
      "balance",
      "lr",
      "seed",
      "data",
      "tokenizer",
      "out",
      "resume",
      "eval-every",
      "log-every",
      "backend",
    ]
  ) {
    assert.match(text, new RegExp(`--${flag} .*\\(default: [^)]+\\)`), flag);
  }
  assert.match(text, /--estimator .*\(default: sparsemixer\)/);
  const bad = await cli("--stepz", "3");
  assert.equal(bad.code, 2);
  assert.match(
    new TextDecoder().decode(bad.stderr),
    /unknown flag --stepz \(did you mean --steps\?\)/,
  );
  const est = await cli("--estimator", "grin");
  assert.equal(est.code, 2);
  assert.match(
    new TextDecoder().decode(est.stderr),
    /--estimator: unknown estimator "grin"; expected sparsemixer/,
  );
  const num = await cli("--steps", "ten");
  assert.equal(num.code, 2);
  assert.match(new TextDecoder().decode(num.stderr), /--steps expects an integer, got "ten"/);
});

Deno.test("train: --balance parses every balancer and round-trips", async () => {
  const { parseBalance, formatBalance } = await import("../../src/train/cli.ts");
  const specs = parseBalance("aux:0.01,aux-seq:0.1,z:0.001,lossfree:0.002,bip:4");
  assert.deepEqual(specs, [
    { kind: "auxLoss", alpha: 0.01 },
    { kind: "auxLoss", scope: "sequence", alpha: 0.1 },
    { kind: "zLoss", beta: 0.001 },
    { kind: "lossFree", rate: 0.002 },
    { kind: "bip", iters: 4 },
  ]);
  assert.equal(formatBalance(specs), "aux:0.01,aux-seq:0.1,z:0.001,lossfree:0.002,bip:4");
  assert.deepEqual(parseBalance("none"), []);
  assert.throws(() => parseBalance("magic:1"), /unknown balancer "magic"/);
  assert.throws(() => parseBalance("aux:x"), /cannot read "aux:x"/);
});

Deno.test("train: --balance takes every balancer option and per-layer lists, and round-trips", async () => {
  const { parseBalance, formatBalance } = await import("../../src/train/cli.ts");
  const text = "aux:0.01:score=softmax,aux-seq:0.1:convention=hf:seqLen=16,z," +
    "lossfree:0.002:rule=linear:violation=raw,bip:4:cap=3,bip:cap=floor";
  const specs = parseBalance(text);
  assert.deepEqual(specs, [
    { kind: "auxLoss", alpha: 0.01, score: "softmax" },
    { kind: "auxLoss", scope: "sequence", alpha: 0.1, convention: "hf", seqLen: 16 },
    { kind: "zLoss" },
    { kind: "lossFree", rate: 0.002, rule: "linear", violation: "raw" },
    { kind: "bip", iters: 4, cap: 3 },
    { kind: "bip", cap: "floor" },
  ]);
  assert.equal(formatBalance(specs), text);
  assert.deepEqual(parseBalance(formatBalance(specs)), specs);
  // Per-layer lists, separated by ';' ("none" for a layer without balancers).
  const layers = parseBalance("aux:0.01;bip:2:cap=ceil,z;none");
  assert.deepEqual(layers, [
    [{ kind: "auxLoss", alpha: 0.01 }],
    [{ kind: "bip", iters: 2, cap: "ceil" }, { kind: "zLoss" }],
    [],
  ]);
  assert.equal(formatBalance(layers), "aux:0.01;bip:2:cap=ceil,z;none");
  // Errors name the balancer and the option, as the constructors do.
  assert.throws(
    () => parseBalance("bip:4:T=2"),
    /--balance: "bip:4:T=2": unknown option "T"; expected one of kind, iters, cap/,
  );
  assert.throws(() => parseBalance("bip:4:cap=1.5"), /cap must be a non-negative integer/);
  assert.throws(() => parseBalance("lossfree:rule=exp"), /rule must be "sign" or "linear"/);
  assert.throws(() => parseBalance("bip:cap=3:4"), /cannot read "bip:cap=3:4"/);
  assert.throws(() => parseBalance("bip:2.5"), /bip takes an integer iteration count/);
});
