/**
 * Load balancing under a skewed router: a MoE layer (16 experts, top-2, 4096 tokens) whose
 * router logits carry a fixed bias toward two experts is trained on a regression task with each
 * balancer — none, auxiliary loss, loss-free bias, BIP — and MaxVio_batch is recorded every step.
 * Writes a table (text and Markdown: MaxVio at a few steps, its mean, its maximum after step 1,
 * and the first step at which it is ≤ 0.1), the MaxVio of every step of every method (CSV and
 * JSON) and an SVG plot of MaxVio per step.
 *
 *   deno run -A examples/balance.ts [--steps 300] [--skew 2] [--out out/balance]
 */
import { parseArgs } from "node:util";
import * as mj from "../mod.ts";
import { lineChart } from "../src/io/svg.ts";
import { writeFileAtomic } from "../src/io/files.ts";

const { values: flags } = parseArgs({
  options: {
    steps: { type: "string", default: "300" },
    tokens: { type: "string", default: "4096" },
    experts: { type: "string", default: "16" },
    "top-k": { type: "string", default: "2" },
    skew: { type: "string", default: "2" },
    lr: { type: "string", default: "0.05" },
    out: { type: "string", default: "out/balance" },
    backend: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log(
    "usage: deno run -A examples/balance.ts [--steps 300] [--tokens 4096] [--experts 16] [--top-k 2] " +
      "[--skew 2] [--lr 0.05] [--out out/balance] [--backend native|webgpu|cpu]",
  );
  Deno.exit(0);
}
if (flags.backend) mj.setBackend(flags.backend as mj.BackendName);
const steps = Number(flags.steps),
  T = Number(flags.tokens),
  N = Number(flags.experts),
  k = Number(flags["top-k"]);
const skew = Number(flags.skew), lr = Number(flags.lr);
const d = 32, f = 32;

// Inputs: feature 0 is a constant 1; the router's weights on it are a fixed bias (+skew for
// experts 0 and 1), excluded from training, so the skew is permanent.
const x = await mj.realize(mj.concat([mj.ones([T, 1]), mj.randn([T, d - 1], { seed: 1 })], 1));
const teacher = {
  router: mj.randn([N, d], { seed: 11 }),
  up: mj.randn([N, f, d], { seed: 12 }).mul(1 / Math.sqrt(d)),
  down: mj.randn([N, d, f], { seed: 13 }).mul(1 / Math.sqrt(f)),
};
const target = await mj.realize(mj.moe.layer(x, teacher, { topK: k }).y);
const fixedColumn = mj.tensor(Array.from({ length: N }, (_, i) => (i < 2 ? skew : 0))).reshape([
  N,
  1,
]);
const learnable = mj.concat([mj.zeros([N, 1]), mj.ones([N, d - 1])], 1); // gradient mask

type P = { router: mj.Tensor; up: mj.Tensor; down: mj.Tensor };
const init = async (): Promise<P> =>
  await mj.realize({
    router: mj.concat([fixedColumn, mj.randn([N, d - 1], { seed: 2 }).mul(0.1)], 1),
    up: mj.randn([N, f, d], { seed: 3 }).mul(1 / Math.sqrt(d)),
    down: mj.randn([N, d, f], { seed: 4 }).mul(1 / Math.sqrt(f)),
  });

const methods: [string, mj.balance.Balancer[]][] = [
  ["none", []],
  ["aux loss (α=0.01)", [mj.balance.auxLoss({ alpha: 0.01 })]],
  ["loss-free (u=1e-3)", [mj.balance.lossFree({ rate: 1e-3 })]],
  ["BIP (T=4)", [mj.balance.bip({ iters: 4 })]],
];

console.log(
  `backend ${await mj
    .backendName()}: ${T} tokens, ${N} experts, top-${k}, router skew +${skew} toward experts 0 and 1, ${steps} steps`,
);
const results: { name: string; vio: number[]; loss: number[]; seconds: number }[] = [];
for (const [name, balance] of methods) {
  const step = mj.jit((p: P, v: P, state: mj.moe.LayerState, lr: number) => {
    const lossFn = (p: P) => {
      const r = mj.moe.layer(x, p, { topK: k, balance, state });
      const mse = r.y.sub(target).square().mean();
      const total = Object.values(r.losses).reduce((a, b) => a.add(b), mse);
      return [total, { mse, r }] as const;
    };
    const [, [g], aux] = mj.valueAndGrad(lossFn, { hasAux: true })(p);
    const grad = { router: g.router.mul(learnable), up: g.up, down: g.down };
    const nv = {
      router: v.router.mul(0.9).add(grad.router),
      up: v.up.mul(0.9).add(grad.up),
      down: v.down.mul(0.9).add(grad.down),
    };
    const np = {
      router: p.router.sub(nv.router.mul(lr)),
      up: p.up.sub(nv.up.mul(lr)),
      down: p.down.sub(nv.down.mul(lr)),
    };
    return {
      p: np,
      v: nv,
      state: aux.r.state,
      mse: aux.mse,
      maxVio: mj.balance.metrics(aux.r).max_vio,
    };
  });
  let p = await init();
  let v = await mj.realize({
    router: mj.zerosLike(p.router),
    up: mj.zerosLike(p.up),
    down: mj.zerosLike(p.down),
  });
  let state: mj.moe.LayerState = {};
  const vio: number[] = [], loss: number[] = [];
  const t0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    const r = await step(p, v, state, lr);
    ({ p, v, state } = r);
    vio.push(await r.maxVio.item());
    loss.push(await r.mse.item());
    if (i === 1 || i % 50 === 0) {
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `  ${name.padEnd(20)} step ${String(i).padStart(4)}  MaxVio ${
            vio[i - 1].toFixed(3)
          }  mse ${loss[i - 1].toFixed(4)}\n`,
        ),
      );
    }
  }
  results.push({ name, vio, loss, seconds: (performance.now() - t0) / 1000 });
}

const marks = [1, 10, 50, 100, 200, steps].filter((s, i, a) => s <= steps && a.indexOf(s) === i);
/** The first step (1-based) at which MaxVio_batch is ≤ 0.1, or "never". */
const firstBalanced = (vio: number[]) => {
  const i = vio.findIndex((v) => v <= 0.1);
  return i < 0 ? "never" : String(i + 1);
};
const header = [
  "method",
  ...marks.map((s) => `MaxVio@${s}`),
  "mean MaxVio",
  "max MaxVio after step 1",
  "first step ≤ 0.1",
  "final mse",
  "s",
];
const rows = results.map((r) => [
  r.name,
  ...marks.map((s) => r.vio[s - 1].toFixed(3)),
  (r.vio.reduce((a, b) => a + b, 0) / r.vio.length).toFixed(3),
  r.vio.length > 1 ? Math.max(...r.vio.slice(1)).toFixed(3) : "-",
  firstBalanced(r.vio),
  r.loss[r.loss.length - 1].toFixed(4),
  r.seconds.toFixed(1),
]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) =>
  r.map((c, i) => (i ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ");
console.log(
  [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n"),
);

const md = [
  `| ${header.join(" | ")} |`,
  `|${header.map(() => "---").join("|")}|`,
  ...rows.map((r) => `| ${r.join(" | ")} |`),
].join("\n");
await writeFileAtomic(
  `${flags.out}/balance.md`,
  `# Balancing under a skewed router\n\n${T} tokens, ${N} experts, top-${k}, skew +${skew}\n\n${md}\n`,
);
// MaxVio_batch of every step of every method: a CSV (one column per method) and a JSON file.
const csvField = (v: string) => (/[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
await writeFileAtomic(
  `${flags.out}/max_vio.csv`,
  [
    ["step", ...results.map((r) => r.name)].map(csvField).join(","),
    ...Array.from({ length: steps }, (_, i) => [i + 1, ...results.map((r) => r.vio[i])].join(",")),
  ].join("\n") + "\n",
);
await writeFileAtomic(
  `${flags.out}/max_vio.json`,
  JSON.stringify(
    {
      tokens: T,
      experts: N,
      topK: k,
      skew,
      lr,
      steps,
      backend: await mj.backendName(),
      methods: results.map((r) => ({
        name: r.name,
        maxVio: r.vio,
        mse: r.loss,
        firstStepAtMost0_1: r.vio.findIndex((v) => v <= 0.1) + 1 || null,
        seconds: r.seconds,
      })),
    },
    null,
    2,
  ) + "\n",
);
await writeFileAtomic(
  `${flags.out}/max_vio.svg`,
  lineChart(results.map((r) => ({ name: r.name, y: r.vio.map((v) => Math.max(v, 1e-3)) })), {
    title: `MaxVio per step (${N} experts, top-${k}, skewed router)`,
    xLabel: "step",
    yLabel: "MaxVio (batch)",
    logY: true,
  }),
);
console.log(
  `wrote ${flags.out}/balance.md, ${flags.out}/max_vio.csv, ${flags.out}/max_vio.json and ${flags.out}/max_vio.svg`,
);
