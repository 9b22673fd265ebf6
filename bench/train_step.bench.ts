/**
 * The whole training step of the default language model (examples/grin.ts with no flags: 2
 * layers, d=128, 8 experts top-2, SparseMixer-v2, aux loss, batch 16×128 bytes): forward,
 * backward, clipping, AdamW and balancer state in one compiled submission. Each timed call reads
 * the step's metrics back, so the time covers the device work. tokens/s = 2048 / time; the
 * summary line printed after the run states it directly. Also: Default MoE, and the composite
 * (unfused) attention as a baseline for the fused attention kernel. Each case runs on the native
 * backend and on WebGPU (whichever exist here), the WebGPU run as the group's baseline.
 *
 *   deno bench -A bench/train_step.bench.ts
 */
import * as mj from "../mod.ts";
import { initLayerState, trainStep } from "../src/train/step.ts";

const B = 16, S = 128;

/** The compiled backends here, native first (the default without a GPU). */
const BACKENDS: mj.BackendName[] = [];
for (const b of ["native", "webgpu"] as const) {
  try {
    mj.setBackend(b);
    await mj.tensor([1]).data();
    BACKENDS.push(b);
  } catch (e) {
    console.error(`train_step.bench: ${b} skipped (${(e as Error).message.split("\n")[0]})`);
  }
}

async function makeStep(
  backend: mj.BackendName,
  model: Partial<mj.nn.ModelConfig>,
  fusedAttention?: boolean,
) {
  mj.setBackend(backend);
  const config = mj.nn.modelConfig({ ...model, maxSeqLen: S });
  const params = mj.nn.initParams(config, 0);
  const optimizer = mj.optim.adamw();
  let state = await mj.realize({
    params,
    opt: optimizer.init(params),
    layers: initLayerState(params, config),
  });
  const step = trainStep(config, {
    optimizer,
    seed: 0,
    ...(fusedAttention !== undefined ? { fusedAttention } : {}),
  });
  const data = await mj.data.prepareData();
  let i = 0;
  const run = async () => {
    mj.setBackend(backend);
    i++;
    const b = mj.data.batchTensors(data.train.batch(B, S, i, 0), B, S);
    const r = await step(state, b.x, b.y, 1e-3, i);
    state = r.state;
    await r.metrics.data();
  };
  await run(); // compile
  return run;
}

const results: Record<string, number[]> = {};
const cases: [string, Partial<mj.nn.ModelConfig>, boolean | undefined][] = [
  ["default (grin: sparsemixer, aux loss)", {}, undefined],
  ["default MoE estimator", { estimator: "default" }, undefined],
  ["default, composite attention", {}, false],
];
for (const [name, model, fused] of cases) {
  for (const backend of BACKENDS) {
    const run = await makeStep(backend, model, fused);
    const label = `${backend}: ${name}`;
    Deno.bench({
      name: label,
      group: name,
      baseline: backend === "webgpu",
      n: 10,
      warmup: 2,
    }, async () => {
      const t0 = performance.now();
      await run();
      (results[label] ??= []).push(performance.now() - t0);
    });
  }
}

globalThis.addEventListener("unload", () => {
  for (const [name, ms] of Object.entries(results)) {
    const sorted = [...ms].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(
      `${name}: ${Math.round((B * S) / (median / 1000)).toLocaleString("en-US")} tokens/s (median ${
        median.toFixed(0)
      } ms per step)`,
    );
  }
});
