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
