/**
 * BIP's overhead on the MoE layer's forward+backward (T=4096, d=256, E=64, f=64, k=8), plus
 * loss-free and the auxiliary loss for reference, alternating in one process. Each step does a
 * training step's balancer work: the aux loss is part of the differentiated loss, and the
 * loss-free bias and BIP prices are carried in and updated.
 *
 *   deno run -A bench/peers/balance_overhead.ts [--rounds 5]
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { moejitMoe } from "./moe_moejit.ts";
import { alternate, median, table } from "./util.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
mj.setBackend("webgpu");
const s = { T: 4096, d: 256, E: 64, f: 64, k: 8 };
// Every variant runs as in training: balancer losses are added to the differentiated loss, and
// the layer state (loss-free bias, BIP prices) is fed in and its update returned, step to step.
const train = { carryState: true };
const variants: Record<string, Awaited<ReturnType<typeof moejitMoe>>> = {
  none: await moejitMoe(s, {}, train),
  "bip T=4": await moejitMoe(s, { balance: [mj.balance.bip({ iters: 4 })] }, train),
  "loss-free": await moejitMoe(s, { balance: [mj.balance.lossFree()] }, train),
  "aux loss": await moejitMoe(s, { balance: [mj.balance.auxLoss()] }, train),
};
const times = await alternate(
  Object.fromEntries(Object.entries(variants).map(([k, v]) => [k, { run: v.fwdBwd }])),
  Number(values.rounds),
);
const base = median(times.none);
console.log(
  `adapter: ${
    (await mj.backendInfo())?.adapter.description
  }; T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`,
);
console.log(table(
  ["balancer", "fwd+bwd ms", "vs none"],
  Object.entries(times).map((
    [name, t],
  ) => [name, median(t).toFixed(0), (median(t) / base).toFixed(3) + "x"]),
));
