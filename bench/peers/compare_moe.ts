/**
 * Side-by-side MoE layer benchmark, alternating systems round by round in one process: moejit
 * (WebGPU) vs the same layer written with TensorFlow.js's WebGPU backend the way a user would
 * (bench/peers/moe_tfjs.ts), plus PyTorch on the CPU (bench/peers/moe_torch.py, Debian's
 * python3-torch with OpenBLAS) for scale. Prints tokens/s and ratios.
 *
 *   deno run -A bench/peers/compare_moe.ts [--rounds 3] [--shape 4096,256,8,512,2]
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { type MoeShape, tfMoe } from "./moe_tfjs.ts";
import { median, table } from "./util.ts";
import { moejitMoe } from "./moe_moejit.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    shape: { type: "string", multiple: true },
    "no-tfjs": { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const shapes: MoeShape[] =
  (values.shape?.length ? values.shape : ["4096,256,8,512,2", "4096,256,64,64,8"]).map((s) => {
    const [T, d, E, f, k] = s.split(",").map(Number);
    return { T, d, E, f, k };
  });
mj.setBackend("webgpu");
const info = await mj.backendInfo();
console.log(
  `adapter: ${info?.adapter.description} (${info?.backendHint}); ${rounds} alternating rounds; GELU experts`,
);

function torch(s: MoeShape): { fwd: number; fwdBwd: number } | null {
  try {
    const out = new Deno.Command("/usr/bin/python3", {
      args: [
        new URL("./moe_torch.py", import.meta.url).pathname,
        ...[s.T, s.d, s.E, s.f, s.k, 5].map(String),
      ],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    return out.success ? JSON.parse(new TextDecoder().decode(out.stdout)) : null;
  } catch {
    return null;
  }
}

const rows: string[][] = [];
for (const s of shapes) {
  const ours = await moejitMoe(s);
  const theirs = values["no-tfjs"] ? null : await tfMoe(s);
  await ours.fwd();
  await ours.fwdBwd();
  if (theirs) {
    await theirs.fwd();
    await theirs.fwdBwd();
  }
  const t = { of: [] as number[], ob: [] as number[], tf: [] as number[], tb: [] as number[] };
  const time = async (f: () => Promise<unknown>, into: number[]) => {
    const t0 = performance.now();
    await f();
    into.push(performance.now() - t0);
  };
  for (let r = 0; r < rounds; r++) {
    await time(ours.fwd, t.of);
    if (theirs) await time(theirs.fwd, t.tf);
    await time(ours.fwdBwd, t.ob);
    if (theirs) await time(theirs.fwdBwd, t.tb);
  }
  const tps = (ms: number[]) => (ms.length ? s.T / (median(ms) / 1000) : NaN);
  const pt = torch(s);
  const fmt = (v: number) => (Number.isNaN(v) ? "n/a" : Math.round(v).toLocaleString("en-US"));
  const name = `T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`;
  for (
    const [pass, o, tf, py] of [["fwd", tps(t.of), tps(t.tf), pt?.fwd ?? NaN], [
      "fwd+bwd",
      tps(t.ob),
      tps(t.tb),
      pt?.fwdBwd ?? NaN,
    ]] as const
  ) {
    rows.push([
      name,
      pass,
      fmt(o),
      fmt(tf),
      Number.isNaN(tf) ? "n/a" : (o / tf).toFixed(2) + "x",
      fmt(py),
      Number.isNaN(py) ? "n/a" : (o / py).toFixed(2) + "x",
    ]);
  }
}
console.log(
  table(
    ["shape", "pass", "moejit tok/s", "tfjs tok/s", "vs tfjs", "torch-cpu tok/s", "vs torch"],
    rows,
  ),
);
