/**
 * Side-by-side MoE layer benchmark, alternating systems round by round: moejit on WebGPU and on
 * the native backend, the same layer written with TensorFlow.js's WebGPU backend the way a user
 * would (bench/peers/moe_tfjs.ts), all in this process, and PyTorch on the CPU
 * (bench/peers/moe_torch.py, Debian's python3-torch with OpenBLAS, as many threads as moejit's
 * native backend) in a python3 process that runs one pass per round when asked, so a burst of
 * load from elsewhere falls on every system alike. Prints tokens/s (median of the rounds) and
 * ratios.
 *
 *   deno run -A bench/peers/compare_moe.ts [--rounds 9] [--shape 4096,256,8,512,2]
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { type MoeShape, tfMoe } from "./moe_tfjs.ts";
import { median, pythonPeer, table } from "./util.ts";
import { moejitMoe } from "./moe_moejit.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "9" },
    shape: { type: "string", multiple: true },
    "no-tfjs": { type: "boolean", default: false },
    "no-webgpu": { type: "boolean", default: false },
    "no-native": { type: "boolean", default: false },
    "no-torch": { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const shapes: MoeShape[] =
  (values.shape?.length ? values.shape : ["4096,256,8,512,2", "4096,256,64,64,8"]).map((s) => {
    const [T, d, E, f, k] = s.split(",").map(Number);
    return { T, d, E, f, k };
  });
const info = await mj.backendInfo();
const native = await mj.nativeInfo();
console.log(
  `adapter: ${info?.adapter.description} (${info?.backendHint}); native: ${
    native ? `${native.compiler}, ${native.threads} threads, BLAS ${native.blas ?? "none"}` : "n/a"
  }; ${rounds} alternating rounds; GELU experts`,
);

/**
 * PyTorch's layer in a python3 process that runs one timed pass per request (moe_torch.py with
 * rounds = 0), so that its rounds alternate with moejit's; null without python3-torch.
 */
async function torchPeer(s: MoeShape) {
  const peer = await pythonPeer([
    new URL("./moe_torch.py", import.meta.url).pathname,
    ...[s.T, s.d, s.E, s.f, s.k, 0].map(String),
  ]);
  return peer && {
    fwd: () => peer.run("fwd"),
    fwdBwd: () => peer.run("fwdBwd"),
    close: peer.close,
  };
}

const rows: string[][] = [];
for (const s of shapes) {
  const webgpu = values["no-webgpu"] ? null : await moejitMoe(s, {}, { backend: "webgpu" });
  const native = values["no-native"] ? null : await moejitMoe(s, {}, { backend: "native" });
  const theirs = values["no-tfjs"] ? null : await tfMoe(s);
  const pytorch = values["no-torch"] ? null : await torchPeer(s);
  const systems = { webgpu, native, tfjs: theirs };
  for (const sys of Object.values(systems)) {
    if (!sys) continue;
    await sys.fwd();
    await sys.fwdBwd();
  }
  const times: Record<string, { fwd: number[]; fwdBwd: number[] }> = {};
  const time = async (f: () => Promise<unknown>, into: number[]) => {
    const t0 = performance.now();
    await f();
    into.push(performance.now() - t0);
  };
  for (let r = 0; r < rounds; r++) {
    for (const [name, sys] of Object.entries(systems)) {
      if (!sys) continue;
      times[name] ??= { fwd: [], fwdBwd: [] };
      await time(sys.fwd, times[name].fwd);
      await time(sys.fwdBwd, times[name].fwdBwd);
    }
    if (pytorch) {
      // Its own clock: the pass alone, without the pipe's round trip.
      times.torch ??= { fwd: [], fwdBwd: [] };
      times.torch.fwd.push(await pytorch.fwd());
      times.torch.fwdBwd.push(await pytorch.fwdBwd());
    }
  }
  await pytorch?.close();
  const tps = (ms?: number[]) => (ms?.length ? s.T / (median(ms) / 1000) : NaN);
  const fmt = (v: number) => (Number.isNaN(v) ? "n/a" : Math.round(v).toLocaleString("en-US"));
  const ratio = (a: number, b: number) =>
    Number.isNaN(a) || Number.isNaN(b) ? "n/a" : (a / b).toFixed(2) + "x";
  const name = `T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`;
  for (const pass of ["fwd", "fwdBwd"] as const) {
    const w = tps(times.webgpu?.[pass]), n = tps(times.native?.[pass]);
    const tf = tps(times.tfjs?.[pass]), py = tps(times.torch?.[pass]);
    rows.push([
      name,
      pass === "fwd" ? "fwd" : "fwd+bwd",
      fmt(w),
      fmt(n),
      fmt(tf),
      fmt(py),
      ratio(w, tf),
      ratio(n, py),
    ]);
  }
}
console.log(
  table(
    [
      "shape",
      "pass",
      "webgpu tok/s",
      "native tok/s",
      "tfjs tok/s",
      "torch-cpu tok/s",
      "webgpu/tfjs",
      "native/torch",
    ],
    rows,
  ),
);
