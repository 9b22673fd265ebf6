/**
 * The MoE layer's forward and forward+backward on WebGPU (tokens/s = T / time), at the shapes of
 * the MoE issue: T=4096, d=256, E=8, f=512, k=2 and T=4096, d=256, E=64, f=64, k=8, GELU experts.
 * Each timed call reads the loss back, as a training step would; a tokens/s table (medians) is
 * printed after Deno's summary. For the side-by-side run with
 * TensorFlow.js and PyTorch: `deno run -A bench/peers/compare_moe.ts`.
 */
import * as mj from "../mod.ts";
import { moejitMoe } from "./peers/moe_moejit.ts";

mj.setBackend("webgpu");

/** Wall times (ms) of every call, by bench name, for the tokens/s table printed at the end. */
const times = new Map<string, number[]>();
const tokensOf = new Map<string, number>();
function timed(name: string, tokens: number, fn: () => Promise<unknown>) {
  times.set(name, []);
  tokensOf.set(name, tokens);
  return async () => {
    const t0 = performance.now();
    await fn();
    times.get(name)!.push(performance.now() - t0);
  };
}
globalThis.addEventListener("unload", () => {
  const rows = [...times].filter(([, t]) => t.length > 0).map(([name, t]) => {
    const ms = [...t].sort((a, b) => a - b)[t.length >> 1];
    return `${name.padEnd(48)} ${ms.toFixed(1).padStart(9)} ms ${
      Math.round((tokensOf.get(name)! * 1000) / ms).toLocaleString("en-US").padStart(9)
    } tokens/s`;
  });
  console.log(`\nmoe layer, median per call (T tokens / time):\n${rows.join("\n")}`);
});

for (
  const s of [{ T: 4096, d: 256, E: 8, f: 512, k: 2 }, { T: 4096, d: 256, E: 64, f: 64, k: 8 }]
) {
  const name = `T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`;
  const m = await moejitMoe(s);
  await m.fwd();
  await m.fwdBwd();
  const fwd = `moe layer fwd ${name}`, fwdBwd = `moe layer fwd+bwd ${name}`;
  Deno.bench({ name: fwd, group: `moe ${name}`, n: 5, warmup: 1 }, timed(fwd, s.T, m.fwd));
  Deno.bench({ name: fwdBwd, group: `moe ${name}`, n: 5, warmup: 1 }, timed(fwdBwd, s.T, m.fwdBwd));
}

// Estimator overhead at the first shape: Default MoE and SparseMixer-v2 against top-k (the
// summary shows the ratios; targets ≤ 1.15× and ≤ 1.10×). Alternating run:
// `deno run -A bench/peers/estimator_overhead.ts`.
{
  const s = { T: 4096, d: 256, E: 8, f: 512, k: 2 };
  const group = "estimator overhead T=4096 d=256 E=8 f=512 k=2 fwd+bwd";
  for (
    const [name, opts] of [
      ["topk", {}],
      ["default", { estimator: "default" }],
      ["sparsemixer", { estimator: "sparsemixer", seed: 1 }],
    ] as const
  ) {
    const m = await moejitMoe(s, opts as Partial<mj.moe.LayerOptions>);
    await m.fwdBwd();
    Deno.bench(
      { name: `${name}`, group, baseline: name === "topk", n: 5, warmup: 1 },
      timed(`${name} fwd+bwd T=${s.T} E=${s.E}`, s.T, m.fwdBwd),
    );
  }
}
