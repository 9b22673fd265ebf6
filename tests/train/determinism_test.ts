/**
 * Training is reproducible bit for bit on one backend: N steps, a stop, a resume and M more
 * steps give exactly the N+M-step run (every logged metric, the final parameters, optimizer
 * moments and MoE state byte for byte) with a warmup + cosine schedule; two command-line runs
 * write the same metrics.jsonl (but for the wall-clock fields tokens_per_sec and elapsed_s) and
 * the same checkpoint. On the interpreter and on each compiled backend (WebGPU, native); the
 * command-line pair runs in the slow tier on WebGPU (a compile of several seconds per process),
 * in the fast one on native (the second process loads the first one's compiled steps from disk).
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { backend, everyBackendTest, gpuTest } from "../webgpu/harness.ts";
import { cli, cliDir, tinyFlags } from "./cli_util.ts";
const { dir, corpus } = await cliDir("moejit-determinism-");

/** Every MoE state kind: SparseMixer noise (keyed by step), Default MoE EMAs, loss-free, BIP. */
const MODEL: Partial<mj.nn.ModelConfig> = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  dFf: 16,
  experts: 4,
  topK: 2,
  estimator: "sparsemixer",
  balance: [[{ kind: "auxLoss", alpha: 0.01 }, { kind: "lossFree" }], [{ kind: "bip", iters: 2 }]],
};

/** The fields of a log record that are measured on the wall clock, not computed. */
const WALL_CLOCK = ["tokens_per_sec", "elapsed_s"];

function computed(r: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).filter(([k]) => !WALL_CLOCK.includes(k)));
}

const FILES = ["model.safetensors", "training_state.safetensors", "config.json", "manifest.json"];

async function checkpointBytes(ck: string): Promise<Uint8Array[]> {
  return await Promise.all(FILES.map((f) => Deno.readFile(`${ck}/${f}`)));
}

async function run(out: string, o: Partial<mj.train.TrainOptions> & { stopAfter?: number }) {
  const logs: Record<string, unknown>[] = [];
  const ctl = new AbortController();
  const { stopAfter, ...rest } = o;
  const r = await mj.train.train({
    model: MODEL,
    data: corpus,
    batch: 4,
    seq: 16,
    steps: 10,
    lr: 2e-2,
    minLr: 1e-3,
    warmup: 3,
    logEvery: 1,
    evalEvery: 0,
    evalBatches: 2,
    finalEvalBatches: 2,
    checkpointEvery: 0,
    samples: 0,
    progress: false,
    handleInterrupt: false,
    out,
    ...rest,
    signal: ctl.signal,
    onLog: (rec) => {
      logs.push(computed(rec as unknown as Record<string, unknown>));
      if (rec.step === stopAfter) ctl.abort();
    },
  });
  return { r, logs };
}

everyBackendTest(
  "determinism: N steps + resume + M steps is the N+M-step run bit for bit",
  async (backend) => {
    mj.setBackend(backend);
    try {
      const straight = await run(`${dir}/straight-${backend}`, {});
      const out = `${dir}/resumed-${backend}`;
      const first = await run(out, { stopAfter: 4 });
      assert.equal(first.r.step, 4);
      const rest = await run(out, { resume: `${out}/checkpoint` });
      assert.equal(rest.r.step, 10);
      // The schedule really is a cosine with warmup: the learning rate rises, then falls.
      const lrs = straight.logs.map((l) => l.lr as number);
      assert.ok(lrs[0] < lrs[2] && lrs[2] > lrs[5] && lrs[5] > lrs[9], `lr ${lrs}`);
      // Exact equality: every loss, gradient norm, learning rate and layer metric.
      assert.deepEqual([...first.logs, ...rest.logs], straight.logs);
      const a = await checkpointBytes(`${out}/checkpoint`);
      const b = await checkpointBytes(`${dir}/straight-${backend}/checkpoint`);
      FILES.forEach((f, i) => assert.deepEqual(a[i], b[i], `${f} differs`));
      assert.equal(rest.r.valLoss, straight.r.valLoss);
    } finally {
      mj.setBackend("cpu");
    }
  },
);

/** Two command-line runs on `backend` write the same metrics.jsonl and checkpoint. */
async function twoCliRuns(backend: mj.BackendName) {
  const runs: string[] = [];
  for (const k of [0, 1]) {
    const out = `${dir}/cli-${backend}-${k}`;
    const r = await cli([
      ...tinyFlags(corpus, backend),
      "--steps",
      "6",
      "--log-every",
      "1",
      "--eval-every",
      "3",
      "--checkpoint-every",
      "2",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    runs.push(out);
  }
  const [a, b] = await Promise.all(runs.map((o) => mj.io.readMetrics(`${o}/metrics.jsonl`)));
  assert.equal(a.length, b.length);
  assert.ok(a.some((r) => typeof r.val_loss === "number"), "an evaluation is logged");
  assert.deepEqual(a.map(computed), b.map(computed));
  const [ca, cb] = await Promise.all(runs.map((o) => checkpointBytes(`${o}/checkpoint`)));
  FILES.forEach((f, i) => assert.deepEqual(ca[i], cb[i], `${f} differs`));
}

const CLI_RUNS = "determinism: two command-line runs write the same metrics.jsonl and checkpoint";
Deno.test(`cpu: ${CLI_RUNS}`, () => twoCliRuns("cpu"));
// Each WebGPU process compiles its pipelines anew (several seconds): slow tier.
gpuTest(CLI_RUNS, () => twoCliRuns(backend()), { only: "webgpu", slow: true });
gpuTest(CLI_RUNS, () => twoCliRuns(backend()), { only: "native" });
