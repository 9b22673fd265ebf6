/**
 * One run in this process, on the interpreter and tiny text files: a run stopped midway resumes
 * from its checkpoint to exactly the result of an uninterrupted run (two sessions on record),
 * runs that start from other runs (continued pretraining, BAM upcycling) load their checkpoints,
 * and a timing probe measures a configuration from random parameters.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { probeRun, runOne } from "../../src/repro/run_one.ts";
import { RunInterrupted } from "../../src/repro/interrupted.ts";
import { sourceCommit } from "../../src/repro/machine.ts";
import { checkpointDir, readResult, readWall, writeSpec } from "../../src/repro/layout.ts";
import type { RunSpec, TrainSpec } from "../../src/repro/suite.ts";

const files = await Deno.makeTempDir({ prefix: "moejit-run-one-data-" });
const texts = {
  whales: "Call me Ishmael. Some years ago, never mind how long precisely, having little money. ",
  speeches: "Mr. Speaker, members of Congress, my fellow Americans: the union is strong today. ",
};
for (const [n, t] of Object.entries(texts)) {
  await Deno.writeTextFile(`${files}/${n}.txt`, t.repeat(60));
}
const [whales, speeches] = Object.keys(texts).map((n) => `${files}/${n}.txt`);

const train = (over: Partial<TrainSpec> = {}): TrainSpec => ({
  model: { dModel: 16, nLayers: 1, nHeads: 2, dFf: 16, experts: 4, topK: 2, estimator: "topk" },
  data: `${whales}+${speeches}`,
  steps: 6,
  batch: 2,
  seq: 16,
  lr: 3e-3,
  evalEvery: 2,
  evalBatches: 1,
  logEvery: 1,
  checkpointEvery: 2,
  ...over,
});

const spec = (over: Partial<RunSpec> = {}): RunSpec => ({
  id: "g/a/seed-0",
  group: "g",
  arm: "a",
  seed: 0,
  train: train(),
  ...over,
});

Deno.test("runOne: a run stopped at step 3 resumes to the uninterrupted run's result", async () => {
  mj.setBackend("cpu");
  const whole = await Deno.makeTempDir({ prefix: "moejit-run-one-" });
  const s = spec();
  await writeSpec(whole, s);
  const a = await runOne(s, { suiteDir: whole });
  assert.deepEqual(a.curve.map((p) => p.step), [2, 4, 6]);
  assert.deepEqual(a.curve.map((p) => p.tokens), [64, 128, 192]);
  assert.deepEqual(Object.keys(a.pplByDomain), [whales, speeches]);
  assert.deepEqual(a.steps.map((p) => p.step), [1, 2, 3, 4, 5, 6]);
  assert.ok(a.steps.every((p) => p.maxVioMean! >= 0 && p.maxVioMax! >= p.maxVioMean!));
  assert.ok(a.maxVioGlobal! >= 0 && a.maxVioGlobalByLayer!.length === 1);
  assert.deepEqual([a.tokens, a.sessions, a.backend, a.adapter], [192, 1, "cpu", null]);
  assert.ok(a.stepSeconds > 0 && a.flopsPerToken > 0 && a.params.total > a.params.active);
  assert.equal(a.commit, (await sourceCommit()) ?? undefined, "the commit the run was made at");
  assert.equal(a.native, undefined, "native settings only for native runs");
  assert.deepEqual(await readResult(whole, s.id), a);

  const split = await Deno.makeTempDir({ prefix: "moejit-run-one-" });
  await writeSpec(split, s);
  const ac = new AbortController();
  await assert.rejects(
    () =>
      runOne(s, { suiteDir: split, signal: ac.signal, onLog: (r) => r.step === 3 && ac.abort() }),
    RunInterrupted,
  );
  assert.equal(await readResult(split, s.id), null);
  assert.equal((await readWall(split, s.id)).sessions, 1);
  const b = await runOne(s, { suiteDir: split });
  assert.equal(b.sessions, 2);
  assert.equal(b.ppl, a.ppl);
  assert.deepEqual(b.steps.map((p) => p.loss), a.steps.map((p) => p.loss));
  assert.deepEqual(b.curve, a.curve);
});

Deno.test("runOne: a run stopped before its first step starts again next time", async () => {
  mj.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "moejit-run-one-" });
  const s = spec({ train: train({ steps: 2, evalEvery: 1 }) });
  await writeSpec(dir, s);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(() => runOne(s, { suiteDir: dir, signal: ac.signal }), RunInterrupted);
  assert.equal(await readResult(dir, s.id), null);
  assert.ok(!(await Deno.stat(checkpointDir(dir, s.id)).then(() => true, () => false)));
  const r = await runOne(s, { suiteDir: dir });
  assert.deepEqual([r.sessions, r.steps.map((p) => p.step)], [2, [1, 2]]);
});

Deno.test("runOne: continued pretraining and BAM upcycling start from the runs they name, and resume", async () => {
  mj.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "moejit-run-one-" });
  const dense = {
    ffn: "dense" as const,
    block: "parallel" as const,
    dModel: 16,
    nLayers: 1,
    nHeads: 2,
    dFf: 16,
  };
  const seed = spec({ id: "b/seed/seed-0", arm: "seed", train: train({ model: dense, steps: 4 }) });
  const { model: _, ...noModel } = train({ steps: 2, data: whales });
  const branch = spec({
    id: "b/branch/seed-0",
    arm: "branch",
    train: noModel,
    init: { kind: "continue", from: seed.id, model: dense },
  });
  const mix = spec({
    id: "b/mix/seed-0",
    arm: "mix",
    train: { ...noModel, data: `${whales}+${speeches}` },
    init: {
      kind: "upcycle",
      seed: seed.id,
      experts: [branch.id],
      method: "bam",
      topK: 1,
      model: dense,
    },
  });
  for (const s of [seed, branch, mix]) await writeSpec(dir, s);
  await assert.rejects(
    () => runOne(branch, { suiteDir: dir }),
    /reproduce: run b\/branch\/seed-0 starts from run b\/seed\/seed-0, which has no checkpoint/,
  );
  const rs = await runOne(seed, { suiteDir: dir });
  const rb = await runOne(branch, { suiteDir: dir });
  // The mixture is stopped after its first step; its second session resumes from its own
  // checkpoint (the upcycled model's configuration comes from there, not from the spec).
  const ac = new AbortController();
  await assert.rejects(
    () => runOne(mix, { suiteDir: dir, signal: ac.signal, onLog: () => ac.abort() }),
    RunInterrupted,
  );
  const rm = await runOne(mix, { suiteDir: dir });
  assert.deepEqual([rm.sessions, rm.steps.map((p) => p.step)], [2, [1, 2]]);
  assert.equal(rb.params.total, rs.params.total, "a branch has the seed's architecture");
  assert.deepEqual(Object.keys(rb.pplByDomain), [whales]);
  assert.ok(rm.params.total > rs.params.total, "the mixture has two FFN and attention experts");
  assert.ok(rm.flopsPerToken > rs.flopsPerToken);
  assert.equal(rm.maxVioGlobalByLayer!.length, 1);
  // The branch started from the seed's final parameters: its first loss is far below a fresh model's.
  assert.ok(rb.steps[0].ce < rs.steps[0].ce, `${rb.steps[0].ce} vs ${rs.steps[0].ce}`);
  assert.ok(
    await Deno.stat(checkpointDir(dir, seed.id)).then(() => true),
    "runOne leaves checkpoints to the runner",
  );
});

Deno.test("probeRun: step and evaluation times of a configuration, from random parameters", async () => {
  mj.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "moejit-run-one-" });
  const dense = {
    ffn: "dense" as const,
    block: "parallel" as const,
    dModel: 16,
    nLayers: 1,
    nHeads: 2,
    dFf: 16,
  };
  const { model: _, ...noModel } = train();
  // Upcycled from runs that do not exist yet: the probe builds random stand-ins.
  const mix = spec({
    id: "b/mix/seed-0",
    train: noModel,
    init: {
      kind: "upcycle",
      seed: "b/seed/seed-0",
      experts: ["b/x/seed-0"],
      method: "btx",
      model: dense,
    },
  });
  const p = await probeRun(mix, { suiteDir: dir, steps: 5 });
  assert.equal(p.backend, "cpu");
  for (
    const k of ["stepSeconds", "firstStepSeconds", "evalBatchSeconds", "startupSeconds"] as const
  ) {
    assert.ok(p[k] > 0 && Number.isFinite(p[k]), `${k} = ${p[k]}`);
  }
});
