/**
 * Balancer overhead on the MoE layer's forward+backward at T=4096, d=256, E=64, f=64, k=8
 * (target: BIP with T = 4 adds at most 10 %). The summary shows the ratios. Alternating
 * side-by-side run: `deno run -A bench/peers/balance_overhead.ts`.
 */
import * as mj from "../mod.ts";
import { moejitMoe } from "./peers/moe_moejit.ts";

mj.setBackend("webgpu");
const s = { T: 4096, d: 256, E: 64, f: 64, k: 8 };
const group = "balancers T=4096 d=256 E=64 f=64 k=8 fwd+bwd";
for (
  const [name, balance] of [
    ["none", []],
    ["bip T=4", [mj.balance.bip({ iters: 4 })]],
    ["loss-free", [mj.balance.lossFree()]],
    ["aux loss", [mj.balance.auxLoss()]],
  ] as const
) {
  // As in training: balancer losses join the differentiated loss, and the layer state (loss-free
  // bias, BIP prices) is carried in and its update returned, so no row's work is optimised away.
  const m = await moejitMoe(s, { balance: balance as unknown as mj.balance.Balancer[] }, {
    carryState: true,
  });
  await m.fwdBwd();
  Deno.bench({ name, group, baseline: name === "none", n: 5, warmup: 1 }, async () => {
    await m.fwdBwd();
  });
}

// The radix select at BIP's design size: the 8,193rd largest of 65,536 rows, 64 columns.
{
  const x = await mj.realize(mj.rand([65536, 64], { seed: 1 }));
  const sel = mj.jit((x: mj.Tensor) => mj.kthLargest(x, 8193, 0));
  await (await sel(x)).data();
  Deno.bench({ name: "kthLargest 65536x64 rank 8193", n: 5, warmup: 1 }, async () => {
    await (await sel(x)).data();
  });
}
