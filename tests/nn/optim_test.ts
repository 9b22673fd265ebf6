/**
 * Optimizers against host references: AdamW over several steps (bias correction, decoupled
 * weight decay, which parameters decay) eagerly, with tensor hyper-parameters, and inside
 * mj.jit where numbers are runtime scalars (no recompilation for a new learning rate);
 * gradient-norm clipping; the warmup + cosine schedule; and a short jitted training run.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, evalWide, prng, wideTensor } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import { numel, TINY_DENSE, tokenTensor, uniform } from "./reference.ts";

const isErr = (op: string, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof mj.MoejitError, `expected a MoejitError, got ${e}`);
  assert.equal(e.op, op);
  assert.match(e.message, re);
  return true;
};

// ---- a parameter tree and its host mirror ------------------------------------------------------

/** Paths and shapes of the test tree, in flatten order, with whether the default decays them. */
const LAYOUT: [string, number[], boolean][] = [
  ["embed", [5, 4], true],
  ["layers.0.attn.q", [3, 4], true],
  ["layers.0.attnNorm.weight", [4], false], // 1-D and named weight
  ["layers.0.proj.weight", [2, 3], false], // 2-D but named weight: the default excludes it
  ["layers.0.proj.bias", [2], false],
  ["scale", [3], false], // 1-D
  ["experts", [2, 3, 2], true], // 3-D
  ["bias", [2, 2], false], // a root path named bias
];

type Host = Map<string, Float64Array>;

function hostTree(seed: number, lo = -1, hi = 1): Host {
  return new Map(LAYOUT.map(([p, s], i) => [p, uniform(s, seed + i, lo, hi).data]));
}

/** Gradients of step `t`: random, with a few exact zeros (the update is then decay only). */
function hostGrads(t: number): Host {
  const g = hostTree(100 * (t + 1), -2, 2);
  for (const v of g.values()) v[0] = 0;
  return g;
}

function toTree(h: Host, wide: boolean): Record<string, unknown> {
  const tree: Record<string, unknown> = {};
  for (const [p, s] of LAYOUT) {
    const v = h.get(p)!;
    mj.nn.setPath(tree, p, wide ? wideTensor(v, s) : mj.tensor(Float32Array.from(v), s));
  }
  return tree;
}

function fromTree(tree: unknown, wide: boolean): Promise<Host> | Host {
  const f = mj.treeFlatten(tree);
  if (wide) return new Map(f.paths.map((p, i) => [p, evalWide(f.leaves[i] as mj.Tensor)[0]]));
  return Promise.all(f.leaves.map((l) => (l as mj.Tensor).data())).then((vs) =>
    new Map(f.paths.map((p, i) => [p, Float64Array.from(vs[i])]))
  );
}

/**
 * AdamW as in PyTorch: p ← p·(1 − lr·λ) where decayed; m, v moments; p ← p − lr·m̂/(√v̂ + ε).
 */
function adamwRef(
  p0: Host,
  grads: Host[],
  lrs: number[],
  o: { b1: number; b2: number; eps: number; wd: number; decays: (path: string) => boolean },
): Host[] {
  const p = new Map([...p0].map(([k, v]) => [k, Float64Array.from(v)]));
  const m = new Map([...p0].map(([k, v]) => [k, new Float64Array(v.length)]));
  const v2 = new Map([...p0].map(([k, v]) => [k, new Float64Array(v.length)]));
  const out: Host[] = [];
  grads.forEach((g, s) => {
    const t = s + 1, lr = lrs[s];
    for (const [k, pv] of p) {
      const gv = g.get(k)!, mv = m.get(k)!, vv = v2.get(k)!;
      for (let i = 0; i < pv.length; i++) {
        if (o.decays(k)) pv[i] *= 1 - lr * o.wd;
        mv[i] = o.b1 * mv[i] + (1 - o.b1) * gv[i];
        vv[i] = o.b2 * vv[i] + (1 - o.b2) * gv[i] * gv[i];
        const mh = mv[i] / (1 - o.b1 ** t), vh = vv[i] / (1 - o.b2 ** t);
        pv[i] -= (lr * mh) / (Math.sqrt(vh) + o.eps);
      }
    }
    out.push(new Map([...p].map(([k, v]) => [k, Float64Array.from(v)])));
  });
  return out;
}

const DEFAULTS = { b1: 0.9, b2: 0.95, eps: 1e-8, wd: 0.1 };
const defaultDecays = (path: string) => LAYOUT.find(([p]) => p === path)![2];
const LRS = [0.1, 0.05, 0.02];

function assertHostClose(got: Host, want: Host, tol: { rtol: number; atol: number }, msg: string) {
  assert.deepEqual([...got.keys()], [...want.keys()], msg);
  for (const [k, v] of want) assertClose(got.get(k)!, v, { ...tol, msg: `${msg} ${k}` });
}

// ---- AdamW ---------------------------------------------------------------------------------------

Deno.test("optim.defaultDecay: 2-D and larger, except paths ending in weight or bias", () => {
  for (const [p, s, d] of LAYOUT) assert.equal(mj.optim.defaultDecay(p, s), d, p);
  assert.equal(mj.optim.defaultDecay("layers.0.moe.down", [4, 8, 16]), true);
  assert.equal(mj.optim.defaultDecay("lmHead", [11, 8]), true);
  assert.equal(mj.optim.defaultDecay("finalNorm.weight", [8]), false);
  assert.equal(mj.optim.defaultDecay("weight", [8, 8]), false);
  assert.equal(
    mj.optim.defaultDecay("layers.0.myweight", [8, 8]),
    true,
    "a suffix, not a path segment",
  );
  assert.equal(mj.optim.defaultDecay("layers.0.weights", [8, 8]), true);
  assert.equal(mj.optim.defaultDecay("s", []), false);
});

Deno.test("optim.adamw: init gives zero moments with the parameters' structure", async () => {
  mj.setBackend("cpu");
  const params = toTree(hostTree(1), false);
  const st = mj.optim.adamw().init(params);
  for (const part of [st.m, st.v]) {
    const f = mj.treeFlatten(part), fp = mj.treeFlatten(params);
    assert.deepEqual(f.paths, fp.paths);
    for (let i = 0; i < f.leaves.length; i++) {
      const t = f.leaves[i] as mj.Tensor;
      assert.deepEqual(t.shape, (fp.leaves[i] as mj.Tensor).shape);
      assert.equal(t.dtype, "f32");
      assert.ok(Array.from(await t.data()).every((x) => x === 0));
    }
  }
});

Deno.test("optim.adamw: three eager steps match the host AdamW (float64 and f32)", async () => {
  mj.setBackend("cpu");
  const p0 = hostTree(1), grads = [0, 1, 2].map(hostGrads);
  const want = adamwRef(p0, grads, LRS, { ...DEFAULTS, decays: defaultDecays });
  for (const wide of [true, false]) {
    const opt = mj.optim.adamw();
    let params = toTree(p0, wide), state = opt.init(params);
    for (let s = 0; s < 3; s++) {
      ({ params, state } = opt.update(params, toTree(grads[s], wide), state, LRS[s], s + 1));
      const got = await fromTree(params, wide);
      // Wide: the hyper-parameters are f32 constants in the graph (0.9 → 0.89999998).
      assertHostClose(
        got,
        want[s],
        wide ? { rtol: 2e-6, atol: 1e-8 } : { rtol: 2e-5, atol: 2e-6 },
        `wide=${wide} step ${s + 1}`,
      );
    }
    // The moments are the running averages (m after 3 steps, for one leaf).
    const [m] = evalWide((state.m as { embed: mj.Tensor }).embed);
    const g = grads.map((h) => h.get("embed")!);
    const m3 = g[0].map((_, i) => 0.9 * (0.9 * (0.1 * g[0][i]) + 0.1 * g[1][i]) + 0.1 * g[2][i]);
    assertClose(m, m3, { rtol: 1e-5, atol: 1e-7 });
  }
  // The decay is really applied where expected: without it the decayed leaves differ.
  const noDecay = adamwRef(p0, grads, LRS, { ...DEFAULTS, decays: () => false })[2];
  const allDecay = adamwRef(p0, grads, LRS, { ...DEFAULTS, decays: () => true })[2];
  for (const [p, , d] of LAYOUT) {
    const diff = (a: Host) =>
      Math.max(...want[2].get(p)!.map((v, i) => Math.abs(v - a.get(p)![i])));
    assert.ok(
      d ? diff(noDecay) > 1e-3 : diff(allDecay) > 1e-3,
      `the reference tells decay apart for ${p}`,
    );
  }
});

Deno.test("optim.adamw: custom betas, eps, weight decay and decay rule; tensor lr and step", async () => {
  mj.setBackend("cpu");
  const p0 = hostTree(2), grads = [0, 1, 2].map(hostGrads);
  const seen: [string, number[]][] = [];
  const decay = (path: string, shape: readonly number[]) => {
    seen.push([path, [...shape]]);
    return path === "scale" || path.startsWith("layers.0.proj");
  };
  const o = { beta1: 0.5, beta2: 0.8, eps: 0.3, weightDecay: 0.7 };
  const want = adamwRef(p0, grads, LRS, {
    b1: 0.5,
    b2: 0.8,
    eps: 0.3,
    wd: 0.7,
    decays: (p) => p === "scale" || p.startsWith("layers.0.proj"),
  });
  const opt = mj.optim.adamw({ ...o, decay });
  let params = toTree(p0, true), state = opt.init(params);
  for (let s = 0; s < 3; s++) {
    const lr = wideTensor([LRS[s]], []), step = wideTensor([s + 1], []);
    ({ params, state } = opt.update(params, toTree(grads[s], true), state, lr, step));
    assertHostClose(
      await fromTree(params, true),
      want[s],
      { rtol: 2e-6, atol: 1e-8 },
      `step ${s + 1}`,
    );
  }
  assert.deepEqual(
    seen.slice(0, LAYOUT.length),
    LAYOUT.map(([p, s]) => [p, s]),
    "decay sees every path and shape",
  );
  // weightDecay 0: nothing decays, whatever the rule says.
  const none = mj.optim.adamw({ weightDecay: 0, decay: () => true });
  const r = none.update(
    toTree(p0, true),
    toTree(grads[0], true),
    none.init(toTree(p0, true)),
    0.1,
    1,
  );
  const wantNone = adamwRef(p0, [grads[0]], [0.1], { ...DEFAULTS, wd: 0, decays: () => true })[0];
  assertHostClose(
    await fromTree(r.params, true),
    wantNone,
    { rtol: 2e-6, atol: 1e-8 },
    "weightDecay 0",
  );
});

Deno.test("optim.adamw: non-tensor leaves pass through; misuse is a clear error", () => {
  mj.setBackend("cpu");
  const opt = mj.optim.adamw();
  const params = { w: mj.ones([2]), tag: "frozen", n: [3] };
  const st = opt.init(params);
  assert.equal((st.m as typeof params).tag, "frozen");
  const r = opt.update(params, { w: mj.ones([2]), tag: "frozen", n: [3] }, st, 0.1, 1);
  assert.equal(r.params.tag, "frozen");
  assert.deepEqual(r.params.n, [3]);
  assert.throws(
    () => mj.optim.adamw({ lr: 0.1 } as unknown as mj.optim.AdamWOptions),
    isErr("optim.adamw", /unknown option "lr"; expected beta1, beta2, eps, weightDecay, decay/),
  );
  assert.throws(
    () => mj.optim.adamw({ beta1: 1 }),
    isErr("optim.adamw", /beta1 must be in \[0, 1\), got 1/),
  );
  assert.throws(
    () => mj.optim.adamw({ beta2: -0.1 }),
    isErr("optim.adamw", /beta2 must be in \[0, 1\), got -0\.1/),
  );
  assert.throws(
    () => mj.optim.adamw({ beta1: NaN }),
    isErr("optim.adamw", /beta1 must be in \[0, 1\)/),
  );
  assert.throws(
    () => mj.optim.adamw({ eps: 0 }),
    isErr("optim.adamw", /eps must be positive, got 0/),
  );
  assert.throws(
    () => mj.optim.adamw({ weightDecay: -0.1 }),
    isErr("optim.adamw", /weightDecay must be ≥ 0/),
  );
  mj.optim.adamw({ beta1: 0, beta2: 0 }); // the bounds are [0, 1)
  const p = { a: mj.ones([2]), b: mj.ones([3]) };
  assert.throws(
    () => opt.update(p, { a: mj.ones([2]) } as unknown as typeof p, opt.init(p), 0.1, 1),
    isErr("optim.adamw", /params, grads and state must have the same structure/),
  );
});

/** A jitted AdamW step counting its traces. */
function jittedStep() {
  const opt = mj.optim.adamw();
  let traces = 0;
  const step = mj.jit(
    (
      params: Record<string, unknown>,
      grads: Record<string, unknown>,
      state: mj.optim.AdamWState<Record<string, unknown>>,
      lr: number,
      t: number,
    ) => {
      traces++;
      return opt.update(params, grads, state, lr, t);
    },
  );
  return { opt, step, traces: () => traces };
}

Deno.test("optim.adamw inside mj.jit (cpu): lr and step are runtime scalars, one trace for all steps", async () => {
  mj.setBackend("cpu");
  const p0 = hostTree(3), grads = [0, 1, 2].map(hostGrads);
  const want = adamwRef(p0, grads, LRS, { ...DEFAULTS, decays: defaultDecays });
  const { opt, step, traces } = jittedStep();
  let params = toTree(p0, false), state = opt.init(params);
  for (let s = 0; s < 3; s++) {
    ({ params, state } = await step(params, toTree(grads[s], false), state, LRS[s], s + 1));
    assertHostClose(
      await fromTree(params, false),
      want[s],
      { rtol: 2e-5, atol: 2e-6 },
      `step ${s + 1}`,
    );
  }
  assert.equal(traces(), 1, "a new lr or step number does not retrace");
  // The same inputs with two different learning rates give the two host answers.
  const one = adamwRef(p0, [grads[0]], [0.3], { ...DEFAULTS, decays: defaultDecays })[0];
  const two = adamwRef(p0, [grads[0]], [0.003], { ...DEFAULTS, decays: defaultDecays })[0];
  const st0 = opt.init(toTree(p0, false));
  const a = await step(toTree(p0, false), toTree(grads[0], false), st0, 0.3, 1);
  const b = await step(toTree(p0, false), toTree(grads[0], false), st0, 0.003, 1);
  assertHostClose(await fromTree(a.params, false), one, { rtol: 2e-5, atol: 2e-6 }, "lr 0.3");
  assertHostClose(await fromTree(b.params, false), two, { rtol: 2e-5, atol: 2e-6 }, "lr 0.003");
  assert.equal(traces(), 1);
});

gpuTest("optim.adamw inside mj.jit: a new lr compiles nothing; values match the host", async () => {
  mj.setBackend(backend());
  try {
    const p0 = hostTree(4), grads = [0, 1, 2].map(hostGrads);
    const want = adamwRef(p0, grads, LRS, { ...DEFAULTS, decays: defaultDecays });
    const { opt, step, traces } = jittedStep();
    let params = toTree(p0, false), state = opt.init(params);
    let compiled = 0;
    for (let s = 0; s < 3; s++) {
      const before = mj.stats();
      ({ params, state } = await step(params, toTree(grads[s], false), state, LRS[s], s + 1));
      const after = mj.stats();
      if (s === 0) compiled = after.stepsCompiled - before.stepsCompiled;
      else {
        assert.equal(
          after.stepsCompiled,
          before.stepsCompiled,
          `step ${s + 1}: no new compiled step`,
        );
        assert.equal(
          after.pipelinesCompiled,
          before.pipelinesCompiled,
          `step ${s + 1}: no new pipelines`,
        );
      }
      assertHostClose(
        await fromTree(params, false),
        want[s],
        { rtol: 1e-4, atol: 1e-5 },
        `step ${s + 1}`,
      );
    }
    assert.ok(compiled >= 1, "the first call compiles");
    assert.equal(traces(), 1);
  } finally {
    mj.setBackend("cpu");
  }
});

// ---- gradient clipping ------------------------------------------------------------------------------

Deno.test("optim.clipGradNorm: returns the pre-clip global norm; scales only above maxNorm", async () => {
  mj.setBackend("cpu");
  const a = uniform([3, 4], 201, -2, 2), c = uniform([5], 202, -2, 2);
  const norm = Math.sqrt([...a.data, ...c.data].reduce((s, v) => s + v * v, 0));
  const tree = () => ({
    a: mj.tensor(Float32Array.from(a.data), a.shape),
    b: { c: mj.tensor(Float32Array.from(c.data), c.shape) },
    n: 3,
  });
  // Above: scaled by maxNorm/(norm + 1e-6), direction kept, new norm ≈ maxNorm.
  const max = norm / 3;
  const r = mj.optim.clipGradNorm(tree(), max);
  assert.deepEqual(r.norm.shape, []);
  assertClose([await r.norm.item()], [norm], { rtol: 1e-6 });
  const s = max / (norm + 1e-6);
  assertClose(await r.grads.a.data(), a.data.map((v) => v * s), { rtol: 1e-6, atol: 1e-7 });
  assertClose(await r.grads.b.c.data(), c.data.map((v) => v * s), { rtol: 1e-6, atol: 1e-7 });
  assert.equal(r.grads.n, 3);
  const clipped = [...(await r.grads.a.data()), ...(await r.grads.b.c.data())];
  assertClose([Math.sqrt(clipped.reduce((q, v) => q + v * v, 0))], [max], { rtol: 1e-5 });
  // Below: untouched, bit for bit.
  const u = mj.optim.clipGradNorm(tree(), norm * 1.5);
  assertClose([await u.norm.item()], [norm], { rtol: 1e-6 });
  assert.deepEqual(Array.from(await u.grads.a.data()), Array.from(Float32Array.from(a.data)));
  assert.deepEqual(Array.from(await u.grads.b.c.data()), Array.from(Float32Array.from(c.data)));
  // No tensors: norm 0.
  assert.equal(await mj.optim.clipGradNorm({ x: 1 }, 1).norm.item(), 0);
  // Zero gradients stay zero (no division by zero).
  assert.deepEqual(Array.from(await mj.optim.clipGradNorm([mj.zeros([3])], 1).grads[0].data()), [
    0,
    0,
    0,
  ]);
  for (const bad of [0, -1, NaN]) {
    assert.throws(
      () => mj.optim.clipGradNorm(tree(), bad),
      isErr("optim.clipGradNorm", /maxNorm must be positive/),
    );
  }
});

// ---- learning-rate schedule ------------------------------------------------------------------------

Deno.test("optim.cosineSchedule: linear warmup, peak at warmup, cosine to minLr at total", () => {
  const lr = 3e-3, warmup = 10, total = 110;
  const ref = (s: number, minLr: number) =>
    s <= warmup ? (lr * s) / warmup : minLr +
      ((lr - minLr) / 2) *
        (1 + Math.cos((Math.PI * Math.min(s - warmup, total - warmup)) / (total - warmup)));
  const f = mj.optim.cosineSchedule({ lr, warmup, total });
  for (let s = 0; s <= 130; s++) {
    assertClose([f(s)], [ref(s, lr / 10)], { rtol: 1e-12, atol: 1e-15, msg: `step ${s}` });
  }
  assertClose([f(1)], [lr / warmup], { rtol: 1e-12 });
  assert.equal(f(warmup), lr);
  assertClose([f(total)], [lr / 10], { rtol: 1e-12 }); // default minLr = lr/10
  assertClose([f(60)], [(lr + lr / 10) / 2], { rtol: 1e-12 }); // halfway
  assertClose([f(1000)], [lr / 10], { rtol: 1e-12 });
  for (let s = 1; s < warmup; s++) assert.ok(f(s + 1) > f(s), `warmup increases at ${s}`);
  for (let s = warmup; s < total; s++) assert.ok(f(s + 1) < f(s), `decay decreases at ${s}`);
  for (let s = 0; s < 200; s++) assert.ok(f(s) <= lr);
  const g = mj.optim.cosineSchedule({ lr, warmup, total, minLr: 0 });
  assert.equal(g(total), 0);
  assertClose([g(60)], [lr / 2], { rtol: 1e-12 });
  // No warmup: the first step is already decaying.
  const h = mj.optim.cosineSchedule({ lr: 1, warmup: 0, total: 4, minLr: 0 });
  assertClose([1, 2, 3, 4].map(h), [
    0.5 * (1 + Math.cos(Math.PI / 4)),
    0.5,
    0.5 * (1 + Math.cos((3 * Math.PI) / 4)),
    0,
  ], { atol: 1e-12 });
  for (
    const bad of [
      { lr: 0, warmup: 1, total: 2 },
      { lr: 1, warmup: -1, total: 2 },
      { lr: 1, warmup: 1, total: 0 },
      { lr: 1, warmup: 1, total: 2, minLr: -1 },
    ]
  ) {
    assert.throws(
      () => mj.optim.cosineSchedule(bad),
      isErr("optim.cosineSchedule", /expected lr > 0, minLr ≥ 0, warmup ≥ 0, total ≥ 1/),
    );
  }
});

// ---- a short training run ------------------------------------------------------------------------

Deno.test("a jitted step (grad → clip → adamw) on the dense model lowers the loss and traces once", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...TINY_DENSE, initStd: 0.2 });
  const r = prng(5);
  const toks = Array.from(
    { length: 2 },
    () => Array.from({ length: 6 }, () => Math.floor(r() * 11)),
  );
  const inputs = tokenTensor(toks.map((t) => t.slice(0, -1)));
  const targets = mj.tensor(toks.flatMap((t) => t.slice(1)), undefined, { dtype: "i32" });
  const opt = mj.optim.adamw({ weightDecay: 0.01 });
  const sched = mj.optim.cosineSchedule({ lr: 3e-2, warmup: 2, total: 10 });
  let traces = 0;
  const step = mj.jit(
    (params: mj.nn.Params, state: mj.optim.AdamWState<mj.nn.Params>, lr: number, t: number) => {
      traces++;
      const [loss, [g]] = mj.valueAndGrad((p: mj.nn.Params) => {
        const { logits } = mj.nn.forward(p, inputs, c);
        return mj.nn.crossEntropy(logits.reshape([-1, c.vocabSize]), targets);
      })(params);
      const { grads, norm } = mj.optim.clipGradNorm(g, 1.0);
      return { ...opt.update(params, grads, state, lr, t), loss, norm };
    },
  );
  let params = await mj.realize(mj.nn.initParams(c, 0));
  let state = opt.init(params);
  const losses: number[] = [];
  for (let s = 1; s <= 10; s++) {
    const out = await step(params, state, sched(s), s);
    params = out.params as mj.nn.Params;
    state = out.state as mj.optim.AdamWState<mj.nn.Params>;
    losses.push(await out.loss.item());
    assert.ok((await out.norm.item()) > 0);
  }
  assert.equal(traces, 1);
  assert.ok(losses[9] < losses[0] - 0.2, `loss ${losses.map((l) => l.toFixed(3)).join(" → ")}`);
  assert.equal(numel((params.embed as mj.Tensor).shape), 88);
});
