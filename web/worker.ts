/**
 * The playground's training worker: builds the model the page asked for, trains it with
 * moejit's compiled training step on WebGPU, and posts a metrics record per logged step; on
 * request it samples text or packs the checkpoint as safetensors bytes. Running here keeps the
 * page responsive while kernels are compiled and dispatched.
 */
/// <reference lib="webworker" />
import * as mj from "../browser.ts";
import type { FromWorker, PlaygroundOptions, StepRecord, ToWorker } from "./protocol.ts";
import { playgroundConfig } from "./model.ts";

const post = (m: FromWorker, transfer: Transferable[] = []) =>
  (self as unknown as Worker).postMessage(m, transfer);

interface Run {
  config: mj.nn.ModelConfig;
  state: mj.train.TrainState;
  tokenizer: mj.data.Tokenizer;
}

let run: Run | null = null;
let stopRequested = false;
let busy = false;
let textPromise: Promise<string> | null = null;

async function train(o: PlaygroundOptions): Promise<void> {
  const t0 = performance.now();
  textPromise ??= fetch("moby_dick.txt").then((r) => {
    if (!r.ok) throw new Error(`moby_dick.txt: HTTP ${r.status}`);
    return r.text();
  });
  const data = mj.data.prepareText(await textPromise, { name: "Moby Dick", valFraction: 0.05 });
  const config = playgroundConfig(o);
  const params = mj.nn.initParams(config, o.seed);
  const optimizer = mj.optim.adamw({ weightDecay: 0.1 });
  const lrAt = mj.optim.cosineSchedule({
    lr: o.lr,
    warmup: Math.min(50, Math.ceil(o.steps / 10)),
    total: o.steps,
  });
  const step = mj.train.trainStep(config, { optimizer, seed: o.seed });
  let state: mj.train.TrainState = {
    params,
    opt: optimizer.init(params),
    layers: mj.train.initLayerState(params, config),
  };
  run = { config, state, tokenizer: data.tokenizer };
  const info = await mj.backendInfo();
  post({
    type: "started",
    config: mj.io.hfConfigJson(config),
    parameters: mj.nn.parameterCount(config).total,
    adapter: info
      ? `${info.adapter.vendor} ${info.adapter.architecture} ${info.adapter.description}`.trim()
      : "no WebGPU adapter (CPU interpreter)",
  });
  // Reading metrics back costs a round trip: log about 100 points per run.
  const logEvery = Math.max(1, Math.round(o.steps / 100));
  let last = performance.now(), tokensSince = 0, done = 0;
  for (let i = 1; i <= o.steps && !stopRequested; i++) {
    const batch = data.train.batch(o.batch, o.seq, i - 1, o.seed);
    const { x, y } = mj.data.batchTensors(batch, o.batch, o.seq);
    const lr = lrAt(i);
    const out = await step(state, x, y, lr, i);
    state = out.state;
    run.state = state;
    tokensSince += o.batch * o.seq;
    done = i;
    if (i % logEvery === 0 || i === o.steps || i === 1) {
      const m = mj.train.unpackMetrics(await out.metrics.data(), config);
      const now = performance.now();
      const record: StepRecord = {
        step: i,
        loss: m.loss,
        ce: m.ce,
        lr,
        tokens_per_s: tokensSince / ((now - last) / 1000),
        layers: m.layers.map((l) => ({
          max_vio: l.max_vio,
          tokens_per_expert: l.tokens_per_expert,
        })),
      };
      last = now;
      tokensSince = 0;
      post({ type: "step", record });
    }
    // Let "stop" and other messages in between steps.
    await new Promise((r) => setTimeout(r, 0));
  }
  post({
    type: "done",
    steps: done,
    stopped: stopRequested,
    seconds: (performance.now() - t0) / 1000,
  });
}

async function sample(prompt: string): Promise<void> {
  if (!run) throw new Error("train a model first");
  const { config, state, tokenizer } = run;
  const ids = [...tokenizer.encode(prompt || " ")].slice(-config.maxSeqLen);
  const out = await mj.nn.generate(state.params, config, ids, {
    maxNewTokens: 200,
    temperature: 0.8,
    seed: 1,
    state: state.layers,
  });
  post({ type: "sample", prompt, text: tokenizer.decode(out) });
}

async function checkpoint(): Promise<void> {
  if (!run) throw new Error("train a model first");
  const { config, state } = run;
  const { paths, leaves } = mj.treeFlatten(state.params);
  const tensors = leaves.filter((l): l is mj.Tensor => l instanceof mj.Tensor);
  const values = await Promise.all(tensors.map((t) => t.data()));
  const host: Record<string, Float32Array> = {};
  let j = 0;
  leaves.forEach((l, i) => {
    if (l instanceof mj.Tensor) host[paths[i]] = values[j++] as Float32Array;
  });
  const model = mj.io.encodeSafetensors(mj.io.toHfTensors(host, config), { format: "pt" });
  post({
    type: "checkpoint",
    model,
    config: JSON.stringify(mj.io.hfConfigJson(config), null, 2) + "\n",
  }, [model.buffer]);
}

self.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === "stop") {
    stopRequested = true;
    return;
  }
  if (busy) {
    post({ type: "error", message: `busy: cannot ${m.type} while another task runs` });
    return;
  }
  busy = true;
  try {
    if (m.type === "start") {
      stopRequested = false;
      await train(m.options);
    } else if (m.type === "sample") await sample(m.prompt);
    else if (m.type === "checkpoint") await checkpoint();
  } catch (e) {
    post({ type: "error", message: (e as Error).message ?? String(e) });
  } finally {
    busy = false;
  }
};
