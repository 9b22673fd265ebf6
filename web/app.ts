/**
 * The playground page: reads the controls, starts the training worker, and draws what it
 * reports with moejit's own report plots (loss, MaxVio, the layer × expert load heatmap).
 * `globalThis.playground` exposes the run's state for the browser tests.
 */
/// <reference lib="dom" />
import { reportPlots } from "../src/train/plots.ts";
import type { ModelConfig } from "../src/nn/config.ts";
import {
  DEFAULT_OPTIONS,
  type FromWorker,
  type PlaygroundOptions,
  type StepRecord,
  type ToWorker,
} from "./protocol.ts";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

/** What the tests (and a curious visitor's console) can read. */
const playground = {
  state: "idle" as "idle" | "unsupported" | "starting" | "training" | "done" | "error",
  records: [] as StepRecord[],
  options: null as PlaygroundOptions | null,
  adapter: "",
  sample: "",
  error: "",
  /** The last checkpoint built (model.safetensors bytes), for tests. */
  checkpoint: null as Uint8Array | null,
  /** Its config.json text. */
  checkpointConfig: "",
};
Object.assign(globalThis, { playground });

let worker: Worker | null = null;
let experts = DEFAULT_OPTIONS.experts;

function setStatus(state: typeof playground.state, text: string): void {
  playground.state = state;
  const el = $("#status");
  el.dataset.state = state;
  el.textContent = text;
}

function readOptions(): PlaygroundOptions {
  const f = new FormData($<HTMLFormElement>("#controls"));
  const int = (k: string, lo: number, hi: number) => {
    const v = Math.round(Number(f.get(k)));
    if (!Number.isFinite(v) || v < lo || v > hi) {
      throw new Error(`${k} must be a whole number from ${lo} to ${hi}, got ${f.get(k)}`);
    }
    return v;
  };
  const o: PlaygroundOptions = {
    ...DEFAULT_OPTIONS,
    estimator: f.get("estimator") as PlaygroundOptions["estimator"],
    balancer: f.get("balancer") as PlaygroundOptions["balancer"],
    experts: int("experts", 2, 16),
    topK: int("topK", 1, 2),
    width: int("width", 16, 256),
    steps: int("steps", 10, 5000),
  };
  if (o.width % 16) throw new Error(`width must be a multiple of 16 (heads of 16), got ${o.width}`);
  if (o.topK > o.experts) throw new Error(`top-k (${o.topK}) cannot exceed experts (${o.experts})`);
  return o;
}

function draw(): void {
  // The plots read the config's FFN kind and expert count only.
  const config = { ffn: "moe", experts } as ModelConfig;
  const rows = playground.records as unknown as Record<string, unknown>[];
  const plots = new Map(reportPlots(rows, config).map((p) => [p.file, p.svg]));
  $("#loss-plot").innerHTML = plots.get("loss.svg") ?? "";
  $("#maxvio-plot").innerHTML = plots.get("max_vio.svg") ?? "";
  $("#load-plot").innerHTML = plots.get("expert_load.svg") ?? "";
}

function buttons(training: boolean): void {
  $<HTMLButtonElement>("#train").disabled = training;
  $<HTMLButtonElement>("#stop").disabled = !training;
  const trained = !training && playground.records.length > 0;
  $<HTMLButtonElement>("#download").disabled = !trained;
  $<HTMLButtonElement>("#sample").disabled = !trained;
}

function download(name: string, data: BlobPart, type: string): void {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function onMessage(m: FromWorker): void {
  switch (m.type) {
    case "started":
      playground.adapter = m.adapter;
      setStatus(
        "training",
        `Training ${m.parameters.toLocaleString()} parameters on ${m.adapter}…`,
      );
      break;
    case "step": {
      playground.records.push(m.record);
      const r = m.record;
      const vio = Math.max(...r.layers.map((l) => l.max_vio));
      setStatus(
        "training",
        `step ${r.step}/${playground.options!.steps}  loss ${r.ce.toFixed(3)}  MaxVio ${
          vio.toFixed(2)
        }  ${Math.round(r.tokens_per_s).toLocaleString()} tokens/s  (${playground.adapter})`,
      );
      draw();
      break;
    }
    case "done": {
      const last = playground.records.at(-1);
      setStatus(
        "done",
        `${m.stopped ? "Stopped" : "Done"} after ${m.steps} steps in ${m.seconds.toFixed(1)} s; ` +
          `loss ${last ? last.ce.toFixed(3) : "–"} nats/byte.`,
      );
      buttons(false);
      post({ type: "sample", prompt: $<HTMLInputElement>("[name=prompt]").value });
      break;
    }
    case "sample":
      playground.sample = m.text;
      $("#sample-text").textContent = m.prompt + m.text;
      break;
    case "checkpoint":
      playground.checkpoint = m.model;
      playground.checkpointConfig = m.config;
      download("model.safetensors", m.model as BlobPart, "application/octet-stream");
      download("config.json", m.config, "application/json");
      break;
    case "error":
      playground.error = m.message;
      setStatus("error", `Error: ${m.message}`);
      buttons(false);
      break;
  }
}

function post(m: ToWorker): void {
  worker!.postMessage(m);
}

function noWebGpu(reason: string): void {
  const el = $("#no-webgpu");
  el.hidden = false;
  el.innerHTML = `<b>This browser gives the page no WebGPU (${reason}).</b> The playground trains on
the GPU through WebGPU. Use a recent Chrome or Edge (113+ on Windows, macOS and ChromeOS; on Linux
start it with <code>--enable-unsafe-webgpu</code> or turn on
<code>chrome://flags/#enable-unsafe-webgpu</code>), Safari 26+, or Firefox 141+ on Windows
(elsewhere set <code>dom.webgpu.enabled</code> in <code>about:config</code>). Check
<code>chrome://gpu</code> if the flag is on and this message stays.`;
  setStatus("unsupported", "WebGPU is not available.");
  $<HTMLButtonElement>("#train").disabled = true;
}

async function main(): Promise<void> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return noWebGpu("navigator.gpu is missing");
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (!adapter) return noWebGpu("no adapter was found");
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (ev: MessageEvent<FromWorker>) => onMessage(ev.data);
  worker.onerror = (ev) => onMessage({ type: "error", message: ev.message });
  $<HTMLFormElement>("#controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    let options: PlaygroundOptions;
    try {
      options = readOptions();
    } catch (e) {
      return onMessage({ type: "error", message: (e as Error).message });
    }
    playground.options = options;
    playground.records = [];
    playground.error = "";
    experts = options.experts;
    draw();
    buttons(true);
    setStatus("starting", "Compiling the training step…");
    post({ type: "start", options });
  });
  $("#stop").addEventListener("click", () => post({ type: "stop" }));
  $("#download").addEventListener("click", () => post({ type: "checkpoint" }));
  $<HTMLFormElement>("#sample-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    post({ type: "sample", prompt: $<HTMLInputElement>("[name=prompt]").value });
  });
  setStatus("idle", "Ready: choose a model and press Train.");
}

main().catch((e) => onMessage({ type: "error", message: (e as Error).message }));
