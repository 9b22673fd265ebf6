/**
 * Trains a small GELU MLP to separate three interleaved spirals: a whole training step (forward,
 * backward, SGD with momentum) compiled once with mj.jit and replayed.
 *
 *   deno run -A examples/spiral.ts [--steps 300] [--backend native|webgpu|cpu]
 */
import { parseArgs } from "node:util";
import * as mj from "../mod.ts";

const { values: flags } = parseArgs({
  options: {
    steps: { type: "string", default: "300" },
    hidden: { type: "string", default: "64" },
    lr: { type: "string", default: "0.3" },
    backend: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  console.log(
    "usage: deno run -A examples/spiral.ts [--steps 300] [--hidden 64] [--lr 0.3] [--backend native|webgpu|cpu]",
  );
  Deno.exit(0);
}
if (flags.backend) mj.setBackend(flags.backend as mj.BackendName);
const steps = Number(flags.steps), hidden = Number(flags.hidden), lr0 = Number(flags.lr);

// Three spirals of 200 points each, with a little noise (deterministic).
const perClass = 200, classes = 3, n = perClass * classes;
const xs = new Float32Array(n * 2), labels = new Int32Array(n);
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
for (let c = 0; c < classes; c++) {
  for (let i = 0; i < perClass; i++) {
    const r = i / perClass, t = c * 4 + 4 * r + 0.2 * (rnd() - 0.5);
    xs[(c * perClass + i) * 2] = r * Math.sin(t);
    xs[(c * perClass + i) * 2 + 1] = r * Math.cos(t);
    labels[c * perClass + i] = c;
  }
}
const x = mj.tensor(xs, [n, 2]);
const y = mj.oneHot(mj.tensor(labels, [n]), classes);

type Params = {
  w1: mj.Tensor;
  b1: mj.Tensor;
  w2: mj.Tensor;
  b2: mj.Tensor;
  w3: mj.Tensor;
  b3: mj.Tensor;
};
const init = (shape: number[], s: number) =>
  mj.randn(shape, { seed: s }).mul(Math.sqrt(2 / shape[0]));
let params: Params = await mj.realize({
  w1: init([2, hidden], 1),
  b1: mj.zeros([hidden]),
  w2: init([hidden, hidden], 2),
  b2: mj.zeros([hidden]),
  w3: init([hidden, classes], 3),
  b3: mj.zeros([classes]),
});
let velocity = await mj.realize(mj.mapTensors(params, (t) => mj.zerosLike(t)) as Params);

const logits = (p: Params, x: mj.Tensor) =>
  x.matmul(p.w1).add(p.b1).gelu().matmul(p.w2).add(p.b2).gelu().matmul(p.w3).add(p.b3);
const lossFn = (p: Params, x: mj.Tensor, y: mj.Tensor) =>
  logits(p, x).logSoftmax(-1).mul(y).sum(-1).mean().neg();

const step = mj.jit((p: Params, v: Params, x: mj.Tensor, y: mj.Tensor, lr: number) => {
  const [loss, [g]] = mj.valueAndGrad((p: Params) => lossFn(p, x, y))(p);
  const nv = {} as Params, np = {} as Params;
  for (const k of Object.keys(p) as (keyof Params)[]) {
    nv[k] = v[k].mul(0.9).add(g[k]);
    np[k] = p[k].sub(nv[k].mul(lr));
  }
  return { loss, p: np, v: nv };
});

console.log(
  `backend: ${await mj.backendName()}; ${n} points, MLP 2→${hidden}→${hidden}→${classes}`,
);
const t0 = performance.now();
for (let i = 1; i <= steps; i++) {
  const lr = lr0 * 0.5 * (1 + Math.cos(Math.PI * (i - 1) / steps)); // cosine decay: a number, not a recompile
  const r = await step(params, velocity, x, y, lr);
  params = r.p;
  velocity = r.v;
  if (i === 1 || i % 50 === 0 || i === steps) {
    console.log(
      `step ${String(i).padStart(4)}  loss ${(await r.loss.item()).toFixed(4)}  lr ${
        lr.toFixed(3)
      }`,
    );
  }
}
const pred = await logits(params, x).argmax(-1).data();
const acc = Array.from(pred).filter((p, i) => p === labels[i]).length / n;
const dt = (performance.now() - t0) / 1000;
const st = mj.stats();
console.log(`accuracy ${(100 * acc).toFixed(1)}% after ${steps} steps in ${dt.toFixed(1)} s`);
console.log(
  `runtime: ${st.stepsCompiled} steps compiled, ${st.pipelinesCompiled} pipelines, ${st.submits} submits`,
);
