/**
 * The page side of bench/browser/step_time.ts: times the playground's training step (the same
 * function runs in Deno for the other column).
 */
import * as mj from "../../browser.ts";
import { playgroundConfig } from "../../web/model.ts";
import type { PlaygroundOptions } from "../../web/protocol.ts";

/**
 * Compiles the step (first call, timed apart), then times `steps` more steps; ms per step is
 * measured between two metric readbacks, so queued GPU work is included.
 */
export async function timeSteps(
  o: PlaygroundOptions,
  steps: number,
): Promise<{ firstMs: number; msPerStep: number; adapter: string }> {
  const config = playgroundConfig(o);
  const params = mj.nn.initParams(config, 0);
  const optimizer = mj.optim.adamw();
  const step = mj.train.trainStep(config, { optimizer });
  let state: mj.train.TrainState = {
    params,
    opt: optimizer.init(params),
    layers: mj.train.initLayerState(params, config),
  };
  const tokens = mj.data.TokenDataset;
  const ds = new tokens(
    Int32Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 251),
    "a synthetic stream",
  );
  const run = async (i: number) => {
    const { x, y } = mj.data.batchTensors(ds.batch(o.batch, o.seq, i, 0), o.batch, o.seq);
    const r = await step(state, x, y, 1e-3, i + 1);
    state = r.state;
    return r.metrics;
  };
  let t = performance.now();
  await (await run(0)).data();
  const firstMs = performance.now() - t;
  t = performance.now();
  let m: mj.Tensor | null = null;
  for (let i = 1; i <= steps; i++) m = await run(i);
  await m!.data();
  const info = await mj.backendInfo();
  return {
    firstMs,
    msPerStep: (performance.now() - t) / steps,
    adapter: info
      ? info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim()
      : "cpu",
  };
}

Object.assign(globalThis, { moejitBench: { timeSteps } });
