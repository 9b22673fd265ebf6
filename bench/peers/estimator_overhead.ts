/**
 * Estimator overhead: forward+backward time of the MoE layer with Default MoE and with
 * SparseMixer-v2 relative to the top-k layer, alternating the three in one process
 * (T=4096, d=256, E=8, f=512, k=2, GELU experts).
 *
 *   deno run -A bench/peers/estimator_overhead.ts [--rounds 5]
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { moejitMoe } from "./moe_moejit.ts";
import { alternate, median, table } from "./util.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
mj.setBackend("webgpu");
const s = { T: 4096, d: 256, E: 8, f: 512, k: 2 };
const variants = {
  topk: await moejitMoe(s),
  default: await moejitMoe(s, { estimator: "default" }),
  sparsemixer: await moejitMoe(s, { estimator: "sparsemixer", seed: 1 }),
};
const times = await alternate(
  Object.fromEntries(Object.entries(variants).map(([k, v]) => [k, { run: v.fwdBwd }])),
  Number(values.rounds),
);
const base = median(times.topk);
console.log(
  `adapter: ${
    (await mj.backendInfo())?.adapter.description
  }; T=${s.T} d=${s.d} E=${s.E} f=${s.f} k=${s.k}`,
);
console.log(table(
  ["estimator", "fwd+bwd ms", "tokens/s", "vs top-k"],
  Object.entries(times).map(([name, t]) => [
    name,
    median(t).toFixed(0),
    Math.round(s.T / (median(t) / 1000)).toLocaleString("en-US"),
    (median(t) / base).toFixed(3) + "x",
  ]),
));
