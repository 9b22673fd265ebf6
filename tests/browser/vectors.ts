/**
 * Test vectors that run unchanged in Deno and in a browser tab: each case builds inputs from a
 * seeded generator on the host, runs ops (forward and gradients) on the current backend, and
 * returns every output as plain numbers. The browser tier runs them in Chromium and compares
 * with the same cases run in Deno in the same test.
 */
import * as mj from "../../browser.ts";

/** A case's outputs by name. */
export type Outputs = Record<string, number[]>;

/** Uniform numbers in [lo, hi) from a 32-bit seed (mulberry32): the same on every platform. */
export function hostRandom(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

function rnd(shape: number[], seed: number, lo = -1, hi = 1): mj.Tensor {
  return mj.tensor(hostRandom(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape);
}

async function collect(named: Record<string, mj.Tensor>): Promise<Outputs> {
  const out: Outputs = {};
  for (const [k, t] of Object.entries(named)) out[k] = Array.from(await t.data(), Number);
  return out;
}

/** Gradients of a parameter tree, flattened to "path" → tensor. */
function flatGrads(prefix: string, tree: unknown): Record<string, mj.Tensor> {
  const { paths, leaves } = mj.treeFlatten(tree);
  const out: Record<string, mj.Tensor> = {};
  leaves.forEach((l, i) => {
    if (l instanceof mj.Tensor) out[`${prefix}${paths[i]}`] = l;
  });
  return out;
}

function moeParams(T: number, d: number, E: number, F: number, seed: number) {
  return {
    x: rnd([T, d], seed),
    mix: rnd([T, d], seed + 5),
    params: {
      router: rnd([E, d], seed + 1),
      up: rnd([E, F, d], seed + 2, -0.5, 0.5),
      down: rnd([E, d, F], seed + 3, -0.5, 0.5),
      gate: rnd([E, F, d], seed + 4, -0.5, 0.5),
    } as mj.moe.MoeParams,
  };
}

/** The MoE layer's forward (y, counts, balancer losses) and every gradient. */
async function moeLayerCase(opts: mj.moe.LayerOptions, seed: number): Promise<Outputs> {
  const { x, mix, params } = moeParams(24, 8, 4, 12, seed);
  const f = (x: mj.Tensor, p: mj.moe.MoeParams) => {
    const r = mj.moe.layer(x, p, opts);
    const losses = Object.values(r.losses ?? {}) as mj.Tensor[];
    const total = losses.reduce((a, b) => a.add(b), r.y.mul(mix).sum());
    return [total, r] as const;
  };
  const [loss, [dx, dp], r] = mj.valueAndGrad(f, { hasAux: true })(x, params);
  return await collect({
    loss,
    y: r.y,
    counts: r.counts,
    dx,
    ...flatGrads("d.", dp),
  });
}

/** The cases by name. */
export const CASES: Record<string, () => Promise<Outputs>> = {
  async reductions() {
    const x = rnd([13, 37], 1);
    const long = rnd([3, 5000], 2);
    return await collect({
      sum0: x.sum(0),
      sum1: x.sum(1),
      sumAll: x.sum(),
      mean: x.mean(-1),
      max: x.max(0),
      min: x.min(1),
      argmax: x.argmax(1),
      argmin: x.argmin(0),
      var: x.var(-1),
      logsumexp: x.logsumexp(-1),
      longSum: long.sum(-1),
      longMax: long.max(-1),
    });
  },
  async softmax() {
    const x = rnd([9, 50], 3, -4, 4);
    const w = rnd([9, 50], 4);
    const f = (x: mj.Tensor) => x.softmax(-1).mul(w).sum().add(x.logSoftmax(-1).mul(w).sum());
    const [v, [dx]] = mj.valueAndGrad(f)(x);
    return await collect({ softmax: x.softmax(-1), logSoftmax: x.logSoftmax(0), v, dx });
  },
  async crossEntropy() {
    const logits = rnd([16, 31], 5, -3, 3);
    const targets = mj.tensor(Array.from({ length: 16 }, (_, i) => (i * 7) % 31), [16], {
      dtype: "i32",
    });
    const [v, [dl]] = mj.valueAndGrad((l: mj.Tensor) => mj.nn.crossEntropy(l, targets))(logits);
    return await collect({ loss: v, dlogits: dl });
  },
  async topk() {
    const x = rnd([10, 40], 6);
    const wide = rnd([2, 3000], 7);
    const { values, indices } = mj.topk(x, 5);
    const w = mj.topk(wide, 3);
    const [, [dx]] = mj.valueAndGrad((x: mj.Tensor) => mj.topk(x, 5).values.square().sum())(x);
    return await collect({
      values,
      indices,
      wideValues: w.values,
      wideIndices: w.indices,
      dx,
      kth: mj.kthLargest(wide, 7, -1),
    });
  },
  async elementwise() {
    const x = rnd([257], 8, -3, 3);
    const f = (x: mj.Tensor) =>
      x.gelu().add(x.silu()).add(x.tanh()).add(x.sigmoid()).add(x.softplus())
        .add(mj.erf(x)).add(x.abs().add(1).log()).add(x.exp().mul(0.01)).add(x.square().sqrt());
    const [v, [dx]] = mj.valueAndGrad((x: mj.Tensor) => f(x).sum())(x);
    return await collect({ y: f(x), v, dx, pow: x.abs().pow(1.5), cmp: mj.where(x.gt(0), x, 0) });
  },
  async matmul() {
    const a = rnd([2, 17, 24], 9);
    const b = rnd([24, 19], 10);
    const c = rnd([64, 96], 11);
    const d = rnd([40, 96], 12);
    const f = (a: mj.Tensor, b: mj.Tensor) => a.matmul(b).tanh().sum();
    const [v, [da, db]] = mj.valueAndGrad(f)(a, b);
    return await collect({ ab: a.matmul(b), v, da, db, cdT: c.matmul(d.transpose()) });
  },
  async indexing() {
    const x = rnd([12, 6], 13);
    const idx = mj.tensor([3, 0, 11, 3, 7], [5], { dtype: "i32" });
    const src = rnd([5, 6], 14);
    const f = (x: mj.Tensor) => mj.takeRows(x, idx).square().sum().add(x.cumsum(0).sum());
    const [, [dx]] = mj.valueAndGrad(f)(x);
    return await collect({
      rows: mj.takeRows(x, idx),
      scattered: mj.scatterAddRows(src, idx, 12),
      cumsum: x.cumsum(1),
      oneHot: mj.oneHot(idx, 12),
      dx,
    });
  },
  async random() {
    return await collect({
      randn: mj.randn([1000], { seed: 7 }),
      rand: mj.rand([333], { seed: 8 }),
    });
  },
  async attention() {
    const q = rnd([2, 2, 20, 8], 15), k = rnd([2, 2, 20, 8], 16), v = rnd([2, 2, 20, 8], 17);
    const w = rnd([2, 2, 20, 8], 18);
    const f = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
      mj.nn.attention(q, k, v, { causal: true }).mul(w).sum();
    const [val, [dq, dk, dv]] = mj.valueAndGrad(f)(q, k, v);
    return await collect({ out: mj.nn.attention(q, k, v), val, dq, dk, dv });
  },
  moeTopk: () => moeLayerCase({ k: 2 }, 21),
  moeDefault: () => moeLayerCase({ k: 2, estimator: "default" }, 22),
  moeSparseMixer: () => moeLayerCase({ k: 2, estimator: "sparsemixer", seed: 3 }, 23),
  moeDense: () => moeLayerCase({ k: 1, estimator: "dense" }, 24),
  moeAuxLoss: () => moeLayerCase({ k: 2, balance: [mj.balance.auxLoss({ alpha: 0.1 })] }, 25),
  moeBip: () => moeLayerCase({ k: 2, balance: [mj.balance.bip({ iters: 4 })] }, 26),
  moeLossFree: () => moeLayerCase({ k: 2, balance: [mj.balance.lossFree({ rate: 0.01 })] }, 27),
};

/** A tiny MoE language model of the training-step cases. */
export function tinyConfig(estimator: "topk" | "default" | "sparsemixer"): mj.nn.ModelConfig {
  return mj.nn.modelConfig({
    dModel: 16,
    nLayers: 1,
    nHeads: 2,
    maxSeqLen: 16,
    dFf: 16,
    experts: 4,
    topK: 2,
    estimator,
  });
}

/**
 * A training step's loss and gradients (forward, cross-entropy + balancer losses, backward),
 * then two compiled AdamW steps' losses.
 */
export async function trainingStep(
  estimator: "topk" | "default" | "sparsemixer",
): Promise<Outputs> {
  const config = tinyConfig(estimator);
  const params = mj.nn.initParams(config, 1);
  const B = 2, S = 16;
  const ids = (seed: number) =>
    mj.tensor(Array.from(hostRandom(B * S, seed, 0, 256), Math.floor), [B, S], { dtype: "i32" });
  const inputs = ids(31), targets = ids(32);
  const lossFn = (p: mj.nn.Params) => {
    const r = mj.nn.forward(p, inputs, config, {
      training: true,
      key: mj.tensor([1, 1], [2], { dtype: "u32" }),
    });
    const ce = mj.nn.crossEntropy(r.logits.reshape([-1, config.vocabSize]), targets.reshape([-1]));
    return Object.values(r.losses).reduce((a, b) => a.add(b), ce);
  };
  const [loss, [g]] = mj.valueAndGrad(lossFn)(params);
  const out = await collect({ loss, ...flatGrads("grad.", g) });
  const step = mj.train.trainStep(config, { optimizer: mj.optim.adamw(), seed: 5 });
  let state: mj.train.TrainState = {
    params,
    opt: mj.optim.adamw().init(params),
    layers: mj.train.initLayerState(params, config),
  };
  const losses: number[] = [];
  for (let i = 1; i <= 2; i++) {
    const r = await step(state, inputs, targets, 1e-2, i);
    state = r.state;
    losses.push(mj.train.unpackMetrics(await r.metrics.data(), config).loss);
  }
  out.stepLosses = losses;
  return out;
}

/** Runs cases by name (all by default) on the current backend. */
export async function runCases(
  names: string[] = Object.keys(CASES),
): Promise<Record<string, Outputs>> {
  const out: Record<string, Outputs> = {};
  for (const n of names) {
    const c = CASES[n];
    if (!c) throw new Error(`unknown case ${n}`);
    out[n] = await c();
  }
  return out;
}
