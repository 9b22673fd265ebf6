/**
 * The MoE layer's forward and forward+backward on WebGPU (tokens/s = T / time), at the shapes of
 * the MoE issue: T=4096, d=256, E=8, f=512, k=2 and T=4096, d=256, E=64, f=64, k=8, GELU experts.
 * Each timed call reads the loss back, as a training step would. For the side-by-side run with
 * TensorFlow.js and PyTorch: `deno run -A bench/peers/compare_moe.ts`.
 */
import * as mj from "../mod.ts";
import { moejitMoe } from "./peers/moe_moejit.ts";

mj.setBackend("webgpu");

for (
  const s of [{ T: 4096, d: 256, E: 8, f: 512, k: 2 }, { T: 4096, d: 256, E: 64, f: 64, k: 8 }]
) {
  const name = `T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`;
  const m = await moejitMoe(s);
  await m.fwd();
  await m.fwdBwd();
  Deno.bench({ name: `moe layer fwd ${name}`, group: `moe ${name}`, n: 5, warmup: 1 }, async () => {
    await m.fwd();
  });
  Deno.bench(
    { name: `moe layer fwd+bwd ${name}`, group: `moe ${name}`, n: 5, warmup: 1 },
    async () => {
      await m.fwdBwd();
    },
  );
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
    Deno.bench({ name: `${name}`, group, baseline: name === "topk", n: 5, warmup: 1 }, async () => {
      await m.fwdBwd();
    });
  }
}
