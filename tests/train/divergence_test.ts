/**
 * A diverging run stops: the compiled step tests its loss and global gradient norm for NaN/Inf
 * on their bits (on every backend; WGSL may assume finite math), the trainer stops at the
 * first non-finite step naming the step and the quantity, keeps the last good checkpoint and
 * never writes a non-finite one, and the CLI exits non-zero (`--lr 1e30`).
 */
import * as mj from "../../mod.ts";
import { nonFiniteBits, unpackMetrics } from "../../src/train/step.ts";
import { initParams } from "../../src/nn/model.ts";
import { flatten } from "../../src/autodiff/tree.ts";
import { assert } from "../helpers.ts";
import { backend as compiled, everyBackendTest, gpuTest } from "../webgpu/harness.ts";
import { cli, cliDir, errorLines, tinyFlags } from "./cli_util.ts";
const { dir, corpus } = await cliDir("moejit-diverge-");

const TINY: Partial<mj.nn.ModelConfig> = {
  nLayers: 1,
  dModel: 16,
  nHeads: 2,
  dFf: 16,
  experts: 4,
  topK: 2,
};

const quiet = {
  data: corpus,
  model: TINY,
  batch: 4,
  seq: 16,
  evalEvery: 0,
  evalBatches: 1,
  finalEvalBatches: 1,
  samples: 0,
  progress: false,
  handleInterrupt: false,
};

everyBackendTest(
  "divergence: the bit test finds NaN and ±Inf made inside a graph",
  async (backend) => {
    mj.setBackend(backend);
    try {
      const flag = async (t: mj.Tensor) => await nonFiniteBits(t).item();
      // Made by arithmetic on the device, not uploaded: 0/0, 1/0, -1/0, overflow, sqrt(-1), log 0.
      const x = mj.tensor([0, 1, -1, 3e38, -1, 0]);
      const made = [
        x.div(0).narrow(0, 0, 1),
        x.div(0).narrow(0, 1, 1),
        x.div(0).narrow(0, 2, 1),
        x.narrow(0, 3, 1).mul(10),
        x.narrow(0, 4, 1).sqrt(),
        x.narrow(0, 5, 1).log(),
      ];
      for (const [i, t] of made.entries()) assert.equal(await flag(t.sum()), 1, `case ${i}`);
      for (const v of [0, -0, 1, -1, 3.4e38, -3.4e38, 1e-45, -1e-45]) {
        assert.equal(await flag(mj.tensor([v]).add(0).sum()), 0, `finite ${v}`);
      }
    } finally {
      mj.setBackend("cpu");
    }
  },
);

everyBackendTest(
  "divergence: the compiled step flags a non-finite loss and gradient norm",
  async (backend) => {
    mj.setBackend(backend);
    try {
      const config = mj.nn.modelConfig({ ...TINY, vocabSize: 32, maxSeqLen: 8 });
      const params = initParams(config, 0);
      const optimizer = mj.optim.adamw();
      for (const clip of [1, 0]) {
        const step = mj.train.trainStep(config, { optimizer, clip });
        const x = mj.tensor(new Int32Array(16).map((_, i) => i % 32), [2, 8]);
        const y = mj.tensor(new Int32Array(16).map((_, i) => (i + 1) % 32), [2, 8]);
        const state = {
          params,
          opt: optimizer.init(params),
          layers: mj.train.initLayerState(params, config),
        };
        const ok = await step(state, x, y, 1e-3, 1);
        const good = unpackMetrics(await ok.metrics.data(), config);
        assert.deepEqual(good.nonFinite, [], `clip ${clip}`);
        assert.ok(
          good.grad_norm > 0,
          `clip ${clip}: the gradient norm is computed without clipping too`,
        );
        // Poison one embedding row: the loss and every gradient become NaN.
        const embed = await params.embed.data();
        embed[x.shape[1] * 0 + 1] = NaN;
        const poisoned = {
          ...state,
          params: { ...params, embed: mj.tensor(embed, params.embed.shape) },
        };
        const bad = unpackMetrics(
          await (await step(poisoned, x, y, 1e-3, 2)).metrics.data(),
          config,
        );
        assert.deepEqual(bad.nonFinite, ["loss", "grad_norm"], `clip ${clip}`);
      }
    } finally {
      mj.setBackend("cpu");
    }
  },
);

everyBackendTest(
  "divergence: the run stops at the first non-finite step and keeps the last good checkpoint",
  async (backend) => {
    mj.setBackend(backend);
    try {
      const out = `${dir}/lib-${backend}`;
      const good = await mj.train.train({ ...quiet, out, steps: 4, lr: 1e-2, checkpointEvery: 2 });
      assert.equal(good.step, 4);
      const logged: number[] = [];
      let divergedAt = 0;
      await assert.rejects(
        () =>
          mj.train.train({
            ...quiet,
            out,
            steps: 12,
            lr: 1e30,
            logEvery: 3,
            checkpointEvery: 1,
            resume: `${out}/checkpoint`,
            onLog: (r) => logged.push(r.step),
          }),
        (e: Error) => {
          assert.ok(e instanceof mj.MoejitError);
          const m = e.message.match(
            /^train: diverged at step (\d+): the (loss is (NaN|-?Infinity)( and the global gradient norm is (NaN|Infinity))?|global gradient norm is (NaN|Infinity)); stopped, the last good checkpoint, .*checkpoint \(step (\d+)\), is kept\. Try a lower learning rate \(lr 1e\+30\)/,
          );
          assert.ok(m, e.message);
          divergedAt = Number(m[1]);
          // Checkpoints are written every step, each after its step checked out.
          assert.equal(Number(m[7]), divergedAt - 1);
          return true;
        },
      );
      assert.ok(divergedAt > 4);
      // The kept checkpoint is the one before the bad step, and it is finite.
      const ck = await mj.io.loadCheckpoint(`${out}/checkpoint`);
      assert.equal((ck.trainingState!.json as { step: number }).step, divergedAt - 1);
      const { leaves } = flatten(ck.params);
      for (const t of leaves as mj.Tensor[]) assert.ok((await t.data()).every(Number.isFinite));
      assert.ok(logged.every((s) => s < divergedAt), "no record of the non-finite step");
    } finally {
      mj.setBackend("cpu");
    }
  },
);

Deno.test("divergence: parameters that overflow while the loss stays finite are not checkpointed", async () => {
  mj.setBackend("cpu");
  // Byte 0 never occurs in the corpus: with untied embeddings its row takes no part in the loss,
  // and weight decay with lr·λ = 3 turns 3e38 into -6e38 = -Inf after one step.
  const config = mj.nn.modelConfig({
    ...TINY,
    tiedEmbeddings: false,
    vocabSize: 256,
    maxSeqLen: 16,
  });
  const params = initParams(config, 0);
  const embed = await params.embed.data();
  embed.fill(3e38, 0, config.dModel);
  const out = `${dir}/overflow`;
  await assert.rejects(
    () =>
      mj.train.train({
        ...quiet,
        model: undefined,
        init: { config, params: { ...params, embed: mj.tensor(embed, params.embed.shape) } },
        out,
        steps: 1,
        lr: 1,
        minLr: 1,
        weightDecay: 3,
      }),
    /train: diverged by step 1: params\.embed holds -Infinity \(element 0 of 4096\) \(the loss and gradient norm were still finite\); stopped, no checkpoint was written/,
  );
  assert.equal(await Deno.stat(`${out}/checkpoint`).then(() => true, () => false), false);
});

Deno.test("divergence: saveCheckpoint refuses NaN/Inf parameters and state, and keeps the old checkpoint", async () => {
  mj.setBackend("cpu");
  const config = mj.nn.modelConfig({ ...TINY, vocabSize: 32, maxSeqLen: 8 });
  const params = initParams(config, 1);
  const ck = `${dir}/refuse`;
  await mj.io.saveCheckpoint(ck, { config, params });
  const before = await Deno.readFile(`${ck}/model.safetensors`);
  const w = await params.embed.data();
  w[5] = Infinity;
  await assert.rejects(
    () =>
      mj.io.saveCheckpoint(ck, {
        config,
        params: { ...params, embed: mj.tensor(w, params.embed.shape) },
      }),
    /saveCheckpoint: params\.embed holds Infinity \(element 5 of 512\); a checkpoint with non-finite values is not written/,
  );
  await assert.rejects(
    () =>
      mj.io.saveCheckpoint(ck, {
        config,
        params,
        trainingState: { tensors: { m: mj.tensor([0, NaN]) } },
      }),
    /trainingState\.tensors\.m holds NaN \(element 1 of 2\)/,
  );
  assert.deepEqual(await Deno.readFile(`${ck}/model.safetensors`), before);
});

/** `--lr 1e30` on `backend`: exit status 1, the step and the quantity named, no checkpoint. */
async function cliDiverges(backend: mj.BackendName) {
  const out = `${dir}/cli-${backend}`;
  const r = await cli([
    ...tinyFlags(corpus, backend),
    "--steps",
    "6",
    "--lr",
    "1e30",
    "--out",
    out,
  ]);
  assert.equal(r.code, 1, r.stderr);
  const last = errorLines(r.stderr).at(-1)!;
  assert.match(
    last,
    /^error: train: diverged at step \d: the (loss|global gradient norm) is (NaN|-?Infinity).*stopped, no checkpoint was written\. Try a lower learning rate \(lr 1e\+30\)/,
  );
  assert.ok(!/^\s+at /m.test(r.stderr), "no stack trace");
  assert.equal(await Deno.stat(`${out}/checkpoint`).then(() => true, () => false), false);
  // No metrics line holds a non-finite value (JSON would write it as null).
  const rows = await mj.io.readMetrics(`${out}/metrics.jsonl`).catch(() => []);
  assert.ok(rows.every((row) => row.loss !== null && row.grad_norm !== null));
}

const CLI_DIVERGES =
  "divergence: --lr 1e30 exits 1 naming the step and the quantity, and writes no checkpoint";
Deno.test(`cpu: ${CLI_DIVERGES}`, () => cliDiverges("cpu"));
// The WebGPU run adds a compile of several seconds: slow tier. The native run's compiled steps
// are cached on disk, shared with the other command-line tests of the tiny model.
gpuTest(CLI_DIVERGES, () => cliDiverges(compiled()), { only: "webgpu", slow: true });
gpuTest(CLI_DIVERGES, () => cliDiverges(compiled()), { only: "native" });
