/**
 * Gradient estimators against their formulas (docs/methods.md §2 Default MoE, §5 GRIN /
 * SparseMixer-v2, §5.7 SparseMixer-v1). Expected outputs and gradients are computed in float64 by
 * tests/moe/reference.ts from the formulas alone; the library must match on the interpreter
 * (float64) and on each compiled backend, WebGPU and native (f32, 1e-4 relative). SparseMixer cases
 * use logits close together relative to ε, so that the drop rule keeps several experts, and
 * injected noise that steers the samples to non-argmax experts under either coin outcome.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, prng, wideTensor } from "../helpers.ts";
import { evaluate } from "../../src/interp/interpreter.ts";
import { everyBackendTest } from "../webgpu/harness.ts";
import {
  argmax,
  defaultRef,
  denseRouting,
  dot,
  dropRule,
  type Ema,
  type Inputs,
  logitsOf,
  type Mat,
  type Noise,
  type Result,
  type RouteOpts,
  type RoutingRef,
  run,
  selectionLogits,
  selectionRank,
  type SlotInfo,
  softmaxBack,
  sparseMixerV1Ref,
  sparseMixerV2Ref,
  topkRouting,
  zerosM,
} from "./reference.ts";

/** Where the library runs: the float64 interpreter, or a compiled backend (f32). */
type Backend = "wide" | "webgpu" | "native";

/**
 * A test on the float64 interpreter (`cpu: …`) and on each compiled backend. Of a table of
 * variants whose options are constants of the graph (each compiles its own C), the native backend
 * runs a representative subset: `native: false` leaves a variant to WebGPU.
 */
function estimatorTest(
  name: string,
  body: (b: Backend) => Promise<void>,
  opts: { native?: boolean } = {},
): void {
  everyBackendTest(
    name,
    (b) => body(b === "cpu" ? "wide" : b),
    opts.native === false ? { only: "webgpu" } : {},
  );
}

/** The variants the native backend runs: both k, every EMA reading, both modes, train and eval. */
const NATIVE_DEFAULT = ["1 mean forward", "2 scoredMean backwardOnly", "2 scoredWeighted forward"];
const NATIVE_V2 = ["2 0.1 train", "1 0.5 eval"];
const NATIVE_V1 = ["0.1 train", "0.5 eval"];

function inputs(seed: number, T = 5, d = 3, N = 4, f = 2): Inputs {
  const r = prng(seed);
  const u = (s = 1) => (r() * 2 - 1) * s;
  const mat = (a: number, b: number, s = 1) =>
    Array.from({ length: a }, () => Array.from({ length: b }, () => u(s)));
  return {
    T,
    d,
    N,
    f,
    x: mat(T, d),
    router: mat(N, d, 1.5),
    up: Array.from({ length: N }, () => mat(f, d, 0.8)),
    down: Array.from({ length: N }, () => mat(d, f, 0.8)),
    mix: mat(T, d),
  };
}

/**
 * Inputs whose logits sit close together relative to ε: x = [≈1, …], each router row
 * [≈2.5, ±spread, …], so z ≈ 2.5 plus a spread that grows with ε. The drop rule then keeps
 * several experts on most tokens and drops some on others.
 */
function closeInputs(seed: number, eps: number, T = 12, d = 3, N = 5, f = 2): Inputs {
  const r = prng(seed);
  const u = (s = 1) => (r() * 2 - 1) * s;
  const mat = (a: number, b: number, s = 1) =>
    Array.from({ length: a }, () => Array.from({ length: b }, () => u(s)));
  const A = 2.5, spread = 3 * eps * A * (1 + 2 * eps);
  return {
    T,
    d,
    N,
    f,
    x: Array.from({ length: T }, () => [1 + u(0.2), ...Array.from({ length: d - 1 }, () => u())]),
    router: Array.from(
      { length: N },
      () => [A + u(spread * 0.3), ...Array.from({ length: d - 1 }, () => u(spread))],
    ),
    up: Array.from({ length: N }, () => mat(f, d, 0.8)),
    down: Array.from({ length: N }, () => mat(d, f, 0.8)),
    mix: mat(T, d),
  };
}

const flat = (m: number[] | Mat | number[][][]): number[] => (m as unknown[]).flat(2) as number[];
const on = (b: Backend | "f32") => (d: number[], s: number[]) =>
  b === "wide" ? wideTensor(d, s) : mj.tensor(d, s);

/** The library's layer on the interpreter (float64) or a compiled backend: y and every gradient. */
async function library(
  I: Inputs,
  opts: mj.moe.LayerOptions,
  backend: Backend,
  extra: { omega?: number[] | null; ehat?: Mat } = {},
) {
  const T = on(backend);
  const x = T(flat(I.x), [I.T, I.d]);
  const params: mj.moe.MoeParams = {
    router: T(flat(I.router), [I.N, I.d]),
    up: T(flat(I.up), [I.N, I.f, I.d]),
    down: T(flat(I.down), [I.N, I.d, I.f]),
  };
  if (extra.omega) params.omega = T(extra.omega, [I.d]);
  const state = extra.ehat ? { ehat: T(flat(extra.ehat), [I.N, I.d]) } : undefined;
  const mix = T(flat(I.mix), [I.T, I.d]);
  const f = (x: mj.Tensor, p: mj.moe.MoeParams) => {
    const r = mj.moe.layer(x, p, { ...opts, ...(state ? { state } : {}) });
    return [r.y.mul(mix).sum(), { y: r.y, ehat: r.state.ehat ?? null }] as const;
  };
  const [, [dx, dp], aux] = mj.valueAndGrad(f, { hasAux: true })(x, params);
  const tensors = [
    aux.y,
    dx,
    dp.router,
    dp.up,
    dp.down,
    ...(dp.omega ? [dp.omega] : []),
    ...(aux.ehat ? [aux.ehat] : []),
  ];
  let vals: number[][];
  if (backend === "wide") {
    vals = evaluate(tensors.map((t) => t.node), { wide: true }).map((v) =>
      Array.from(v as Float64Array)
    );
  } else {
    mj.setBackend(backend);
    try {
      // One step for all of them (on the native backend each step is a compiled library).
      const values = await mj.realize(tensors);
      vals = await Promise.all(values.map(async (t) => Array.from(await t.data())));
    } finally {
      mj.setBackend("cpu");
    }
  }
  const [y, gx, gr, gu, gd, ...rest] = vals;
  return {
    y,
    dx: gx,
    drouter: gr,
    dup: gu,
    ddown: gd,
    domega: dp.omega ? rest.shift()! : null,
    ehat: aux.ehat ? rest.shift()! : null,
  };
}

function expectMatch(
  lib: Awaited<ReturnType<typeof library>>,
  ref: Result,
  tol: { rtol: number; atol: number },
  what: string,
  ehat?: Mat,
) {
  assertClose(lib.y, flat(ref.y), { ...tol, msg: `${what}: y` });
  assertClose(lib.dx, flat(ref.dx), { ...tol, msg: `${what}: dx` });
  assertClose(lib.drouter, flat(ref.drouter), { ...tol, msg: `${what}: drouter` });
  assertClose(lib.dup, flat(ref.dup), { ...tol, msg: `${what}: dup` });
  assertClose(lib.ddown, flat(ref.ddown), { ...tol, msg: `${what}: ddown` });
  if (ref.domega) assertClose(lib.domega!, ref.domega, { ...tol, msg: `${what}: domega` });
  if (ehat) assertClose(lib.ehat!, flat(ehat), { ...tol, msg: `${what}: ehat` });
}

// Float64 interpreter: the library's numeric constants (GELU's √½, …) are f32 even there, so ~1e-8.
const WIDE = { rtol: 1e-6, atol: 1e-8 };
const F32 = { rtol: 1e-4, atol: 1e-6 };
const TOL = { wide: WIDE, webgpu: F32, native: F32 };

/** Runs the library on backend `b` and compares with the reference. */
async function expectOn(
  b: Backend,
  I: Inputs,
  opts: (b: Backend) => mj.moe.LayerOptions,
  ref: Result,
  what: string,
  extra: { omega?: number[] | null; ehat?: Mat } = {},
  ehat?: Mat,
) {
  expectMatch(await library(I, opts(b), b, extra), ref, TOL[b], `${what} (${b})`, ehat);
}

/** A reference quantity that an option changes (so that ignoring the option fails the test). */
function assertDiffers(a: Result, b: Result, what: string) {
  const fields = ["y", "dx", "drouter", "dup", "ddown"] as const;
  const differs = fields.some((k) =>
    flat(a[k]).some((v, i) => Math.abs(v - flat(b[k])[i]) > 1e-4 * (1 + Math.abs(v)))
  );
  assert.ok(differs, `${what} has no effect on these inputs; the test would not notice it`);
}

// ---- Default MoE -------------------------------------------------------------------------------

const zeroEhat = (I: Inputs): Mat => Array.from({ length: I.N }, () => new Array(I.d).fill(0));

for (const k of [1, 2]) {
  for (const ema of ["mean", "scoredMean", "scoredWeighted"] as Ema[]) {
    for (const mode of ["forward", "backwardOnly"] as const) {
      estimatorTest(
        `default moe k=${k} ema=${ema} mode=${mode}: two steps carrying the EMA match the formulas`,
        async (b) => {
          const beta = 0.7;
          const opts = (): mj.moe.LayerOptions => ({
            k,
            estimator: "default",
            default: { beta, ema, mode },
          });
          // Step 1 from zeros, step 2 from step 1's defaults on new tokens.
          const I1 = inputs(11 + k),
            I2 = { ...inputs(31 + k), router: I1.router, up: I1.up, down: I1.down };
          const s1 = defaultRef(I1, k, ema, mode, beta, zeroEhat(I1));
          await expectOn(b, I1, opts, s1.ref, "step 1", { ehat: zeroEhat(I1) }, s1.ehat);
          const s2 = defaultRef(I2, k, ema, mode, beta, s1.ehat);
          await expectOn(b, I2, opts, s2.ref, "step 2", { ehat: s1.ehat }, s2.ehat);
        },
        { native: NATIVE_DEFAULT.includes(`${k} ${ema} ${mode}`) },
      );
    }
  }
}

estimatorTest(
  "default moe: an expert with no tokens keeps its default vector (k = 1, 2; every EMA reading)",
  async (b) => {
    const I = inputs(5);
    I.x.forEach((_, t) => (I.x[t] = I.x[t].map((v) => Math.abs(v) + 0.5))); // positive inputs
    I.router[3] = [-5, -5, -5]; // expert 3 never wins, not even a second slot
    const start: Mat = zeroEhat(I).map((row, i) => row.map((_, c) => 0.1 * (i + 1) + 0.01 * c));
    for (const k of [1, 2]) {
      for (const ema of ["mean", "scoredMean", "scoredWeighted"] as Ema[]) {
        const s = defaultRef(I, k, ema, "forward", 0.9, start);
        assert.ok(!s.counts.includes(3), "expert 3 is unused");
        const l = await library(I, { k, estimator: "default", default: { ema } }, b, {
          ehat: start,
        });
        expectMatch(l, s.ref, TOL[b], `no-token expert k=${k} ${ema} (${b})`, s.ehat);
        // Bit for bit (its f32 rounding on a compiled backend): the vector is kept, not recomputed.
        const kept = b === "wide" ? start[3] : start[3].map(Math.fround);
        assertClose(l.ehat!.slice(9, 12), kept, { rtol: 0, atol: 0 });
      }
    }
  },
);

estimatorTest(
  "default moe: eval is plain top-k unless evalDefaults, and never updates the EMA",
  async (b) => {
    const I = inputs(8);
    const start: Mat = zeroEhat(I).map((row, i) => row.map((_, c) => 0.2 * i - 0.1 * c));
    const plain = run(I, topkRouting(I, 2));
    const base = topkRouting(I, 2);
    const withDefaults: RoutingRef = {
      ...base,
      // y gains Σ_{i∉A} π_i ê_i; as in training, the router sees ⟨∂L/∂y, ê_i⟩ for those i.
      extra: base.pi.map((p, t) =>
        start[0].map((_, c) =>
          p.reduce((s, pi, i) => s + (base.sel[t].includes(i) ? 0 : pi * start[i][c]), 0)
        )
      ),
      routerGrad: (g) =>
        base.pi.map((p, t) => {
          const v = p.map((_, i) => (base.sel[t].includes(i) ? 0 : dot(I.mix[t], start[i])));
          base.sel[t].forEach((i, j) => (v[i] += g[t][j]));
          return softmaxBack(p, v);
        }),
    };
    const l = await library(I, { k: 2, estimator: "default", training: false }, b, {
      ehat: start,
    });
    expectMatch(l, plain, TOL[b], `eval (${b})`, start);
    const d = await library(
      I,
      { k: 2, estimator: "default", training: false, default: { evalDefaults: true } },
      b,
      { ehat: start },
    );
    expectMatch(d, run(I, withDefaults), TOL[b], `evalDefaults (${b})`, start);
  },
);

Deno.test("default moe: with β = 1 (no EMA movement) the whole layer passes finite differences, the router included", () => {
  // The default term's backward is a declared estimator; with β = 1 the defaults are constants
  // of the forward, so x, the experts and the router all pass — the router because Eq. 8 is
  // then the true gradient of y = topk + Σ_unselected π ê.
  const I = inputs(3);
  const ehat = zeroEhat(I).map((row, i) => row.map((_, c) => 0.3 * i - 0.2 * c));
  checkGradFD(
    (x, router, up, down) =>
      mj.moe.layer(x, { router, up, down }, {
        k: 2,
        estimator: "default",
        default: { beta: 1 },
        state: { ehat: wideTensor(flat(ehat), [I.N, I.d]) },
      })
        .y.mul(wideTensor(flat(I.mix), [I.T, I.d])).sum(),
    [
      { data: flat(I.x), shape: [I.T, I.d] },
      { data: flat(I.router), shape: [I.N, I.d] },
      { data: flat(I.up), shape: [I.N, I.f, I.d] },
      { data: flat(I.down), shape: [I.N, I.d, I.f] },
    ],
    { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
  );
});

// ---- SparseMixer-v2 (GRIN) and v1 ----------------------------------------------------------------

function noiseOf(seed: number, k: number, T: number, N: number): Noise {
  const r = prng(seed);
  const exponential = Array.from(
    { length: k },
    () => Array.from({ length: T }, () => Array.from({ length: N }, () => -Math.log(1 - r()))),
  );
  const uniform = Array.from({ length: k }, () => Array.from({ length: T }, () => r()));
  return { exponential, uniform };
}

/**
 * Noise that steers the sampling: for token t and slot j, plan (t + 3j) mod 6 picks the slot's
 * argmax or another kept expert (its exponential draw is made tiny, so its Gumbel term wins by
 * a wide margin) and a coin draw, so that every slot sees non-argmax samples with either coin
 * outcome of v2 (threshold 0.75) and of v1 (threshold 0.5). The masks come from the same drop
 * rule as the references, replayed slot by slot.
 */
function steeringNoise(I: Inputs, k: number, eps: number, seed: number, o: RouteOpts = {}): Noise {
  const r = prng(seed);
  const plans: [boolean, number][] = [
    [false, 0.2], // the argmax with a low coin: c = 1 by δ alone
    [true, 0.9], // another expert, coin high for both
    [true, 0.2], // another expert, coin low for both
    [true, 0.6], // another expert, low for v2 (≤ 0.75), high for v1 (> 0.5)
    [true, 0.3],
    [true, 0.8],
  ];
  const z = logitsOf(I);
  const exponential = Array.from({ length: k }, () => zerosM(I.T, I.N));
  const uniform = zerosM(k, I.T);
  for (let t = 0; t < I.T; t++) {
    const zs = selectionLogits(z[t], o.bias, o.score ?? "softmax");
    const rank = selectionRank(z[t], o.bias, o.score ?? "softmax");
    let removed = -1;
    for (let j = 0; j < k; j++) {
      const { dropped } = dropRule(zs, removed, eps);
      const masked = zs.map((v, i) => (dropped[i] ? -Infinity : v));
      const top = argmax(rank.map((v, i) => (dropped[i] ? -Infinity : v)));
      const [other, u] = plans[(t + 3 * j) % plans.length];
      const others = masked.map((_, i) => i).filter((i) => masked[i] !== -Infinity && i !== top);
      const target = other && others.length ? others[(t >> 1) % others.length] : top;
      for (let i = 0; i < I.N; i++) exponential[j][t][i] = i === target ? 1e-4 : 0.5 + r();
      uniform[j][t] = u;
      removed = target;
    }
  }
  return { exponential, uniform };
}

function noiseTensors(n: Noise, k: number, T: number, N: number, backend: Backend | "f32") {
  const mk = on(backend);
  return {
    exponential: mk(n.exponential.flat(2), [k, T, N]),
    uniform: mk(n.uniform.flat(), [k, T]),
  };
}

/**
 * The cases exercise what they claim: in every slot the mask keeps several experts on several
 * tokens and drops some somewhere; in training, non-argmax samples occur with both coin
 * outcomes (c = 1 by the coin, and the low c) and an argmax sample with a losing coin (c = 1 by
 * δ). The decisions are far from their thresholds, so f32 makes the same ones.
 */
function assertCoverage(
  r: { info: SlotInfo[][]; margin: number },
  k: number,
  training: boolean,
  coin: number,
  what: string,
) {
  assert.ok(r.margin > 2e-5, `${what}: a decision is within ${r.margin} of its threshold`);
  for (let j = 0; j < k; j++) {
    const s = r.info.map((row) => row[j]);
    const slot = `${what} slot ${j + 1}`;
    assert.ok(s.filter((x) => x.kept > 1).length >= 3, `${slot}: the mask keeps several experts`);
    assert.ok(s.some((x) => x.dropped > 0), `${slot}: the mask drops an expert somewhere`);
    if (!training) continue;
    const high = s.filter((x) => x.D !== x.top && x.c === 1).length;
    const low = s.filter((x) => x.D !== x.top && x.c < 1).length;
    const byDelta = s.filter((x) => x.D === x.top && x.u <= coin).length;
    assert.ok(high >= 2, `${slot}: ${high} non-argmax samples with a winning coin`);
    assert.ok(low >= 2, `${slot}: ${low} non-argmax samples with a losing coin`);
    assert.ok(byDelta >= 1, `${slot}: no argmax sample with a losing coin`);
  }
}

for (const k of [1, 2]) {
  for (const eps of [0.01, 0.1, 0.5]) {
    for (const training of [true, false]) {
      estimatorTest(
        `sparsemixer-v2 k=${k} ε=${eps} ${
          training ? "train" : "eval"
        }: forward and gradients match §5`,
        async (b) => {
          const I = closeInputs(200 + k * 10 + Math.round(eps * 100), eps);
          const n = steeringNoise(I, k, eps, 7 + k);
          const r = sparseMixerV2Ref(I, k, eps, training, n, "code");
          assertCoverage(r, k, training, 0.75, `v2 k=${k} ε=${eps}`);
          const opts = (b: Backend): mj.moe.LayerOptions => ({
            k,
            estimator: "sparsemixer",
            jitterEps: eps,
            training,
            ...(training ? { noise: noiseTensors(n, k, I.T, I.N, b) } : {}),
          });
          await expectOn(b, I, opts, r.ref, "v2");
        },
        { native: NATIVE_V2.includes(`${k} ${eps} ${training ? "train" : "eval"}`) },
      );
    }
  }
}

estimatorTest("sparsemixer-v2: the paper's expert gradient (no c) as an option", async (b) => {
  const I = closeInputs(77, 0.5);
  const n = steeringNoise(I, 2, 0.5, 9);
  const paper = sparseMixerV2Ref(I, 2, 0.5, true, n, "paper");
  assertCoverage(paper, 2, true, 0.75, "paper");
  await expectOn(
    b,
    I,
    (b) => ({
      k: 2,
      estimator: "sparsemixer",
      jitterEps: 0.5,
      noise: noiseTensors(n, 2, I.T, I.N, b),
      expertGrad: "paper",
    }),
    paper.ref,
    "paper",
  );
  assertDiffers(paper.ref, sparseMixerV2Ref(I, 2, 0.5, true, n, "code").ref, "expertGrad");
}, { native: false });

Deno.test("sparsemixer-v2: the gate is stochastic in training (c = 0.3333 for non-argmax samples without the coin)", async () => {
  const I = inputs(5, 40, 3, 6, 2);
  const r = mj.moe.route(mj.tensor(flat(logitsOf(I)), [40, 6]), {
    k: 1,
    estimator: "sparsemixer",
    jitterEps: 0.5,
    seed: 3,
  });
  const scale = Array.from(await r.scale.data());
  assert.ok(scale.every((c) => c === 1 || Math.abs(c - 0.3333) < 1e-6), "c ∈ {0.3333, 1}");
  assert.ok(scale.some((c) => c < 1) && scale.some((c) => c === 1), "both values occur");
});

for (const eps of [0.01, 0.1, 0.5]) {
  for (const training of [true, false]) {
    estimatorTest(
      `sparsemixer-v1 ε=${eps} ${
        training ? "train" : "eval"
      }: mid-point rule, ×2 backward, per-channel ω`,
      async (b) => {
        const I = closeInputs(300 + Math.round(eps * 100), eps);
        const n = steeringNoise(I, 1, eps, 4);
        const omega = [1.1, 0.7, -0.4];
        const r = sparseMixerV1Ref(I, eps, training, n, omega);
        assertCoverage(r, 1, training, 0.5, `v1 ε=${eps}`);
        const opts = (b: Backend): mj.moe.LayerOptions => ({
          k: 1,
          estimator: "sparsemixer-v1",
          jitterEps: eps,
          training,
          ...(training ? { noise: noiseTensors(n, 1, I.T, I.N, b) } : {}),
        });
        await expectOn(b, I, opts, r.ref, "v1", { omega });
      },
      { native: NATIVE_V1.includes(`${eps} ${training ? "train" : "eval"}`) },
    );
  }
}

Deno.test("sparsemixer-v1: ε defaults to 0.1", async () => {
  const I = closeInputs(310, 0.1);
  const n = steeringNoise(I, 1, 0.1, 4);
  const r = sparseMixerV1Ref(I, 0.1, true, n, null);
  assertCoverage(r, 1, true, 0.5, "v1 default ε");
  expectMatch(
    await library(I, {
      k: 1,
      estimator: "sparsemixer-v1",
      noise: noiseTensors(n, 1, I.T, I.N, "wide"),
    }, "wide"),
    r.ref,
    WIDE,
    "v1 default ε",
  );
});

// ---- every estimator × bias, normalize, sigmoid scores ------------------------------------------

const BIAS = [0.0625, -0.125, 0, 0.03125, -0.0625]; // exact in f32; score-space sized
const OPTION_SETS: [string, RouteOpts][] = [
  ["bias", { bias: BIAS }],
  ["normalize", { normalize: true }],
  ["sigmoid", { score: "sigmoid" }],
  ["bias+normalize+sigmoid", { bias: BIAS, normalize: true, score: "sigmoid" }],
];

/** Route options for the library from the reference's. */
function routeOpts(o: RouteOpts, b: Backend): Partial<mj.moe.LayerOptions> {
  return {
    ...(o.bias ? { bias: on(b)(o.bias, [o.bias.length]) } : {}),
    ...(o.normalize ? { normalize: true } : {}),
    ...(o.score ? { score: o.score } : {}),
  };
}

/** An estimator's reference and library options for route options `o` (set `name`). */
type EstimatorCase = (I: Inputs, o: RouteOpts, name: string) => {
  ref: Result;
  opts: (b: Backend) => mj.moe.LayerOptions;
  extra?: { omega?: number[] | null; ehat?: Mat };
  ehat?: Mat;
};

const OPTION_EPS = 0.5;
const START_EHAT: Mat = Array.from({ length: 5 }, (_, i) => [0.3 * i - 0.5, 0.2 - 0.1 * i, 0.15]);
/** Default MoE's EMA reading per option set (the scored ones see the sigmoid scores too). */
const EMA_FOR: Record<string, Ema> = {
  bias: "mean",
  normalize: "scoredWeighted",
  sigmoid: "scoredMean",
  "bias+normalize+sigmoid": "scoredWeighted",
};

const ESTIMATOR_CASES: Record<string, EstimatorCase> = {
  topk: (I, o) => ({
    ref: run(I, topkRouting(I, 2, o)),
    opts: (b) => ({ k: 2, ...routeOpts(o, b) }),
  }),
  dense: (I, o) => ({
    ref: run(I, denseRouting(I, 2, o)),
    opts: (b) => ({ k: 2, estimator: "dense", ...routeOpts(o, b) }),
  }),
  default: (I, o, name) => {
    const ema = EMA_FOR[name];
    const s = defaultRef(I, 2, ema, "forward", 0.6, START_EHAT, o);
    return {
      ref: s.ref,
      ehat: s.ehat,
      extra: { ehat: START_EHAT },
      opts: (b) => ({
        k: 2,
        estimator: "default",
        default: { beta: 0.6, ema },
        ...routeOpts(o, b),
      }),
    };
  },
  sparsemixer: (I, o) => {
    const n = steeringNoise(I, 2, OPTION_EPS, 13, o);
    const r = sparseMixerV2Ref(I, 2, OPTION_EPS, true, n, "code", o);
    assertCoverage(r, 2, true, 0.75, `v2 ${JSON.stringify(o)}`);
    return {
      ref: r.ref,
      opts: (b) => ({
        k: 2,
        estimator: "sparsemixer",
        jitterEps: OPTION_EPS,
        noise: noiseTensors(n, 2, I.T, I.N, b),
        ...routeOpts(o, b),
      }),
    };
  },
  "sparsemixer-v1": (I, o) => {
    const n = steeringNoise(I, 1, OPTION_EPS, 17, o);
    const omega = [0.9, -0.6, 1.3];
    const r = sparseMixerV1Ref(I, OPTION_EPS, true, n, omega, o);
    assertCoverage(r, 1, true, 0.5, `v1 ${JSON.stringify(o)}`);
    return {
      ref: r.ref,
      extra: { omega },
      opts: (b) => ({
        k: 1,
        estimator: "sparsemixer-v1",
        jitterEps: OPTION_EPS,
        noise: noiseTensors(n, 1, I.T, I.N, b),
        ...routeOpts(o, b),
      }),
    };
  },
};

for (const [estimator, make] of Object.entries(ESTIMATOR_CASES)) {
  estimatorTest(
    `estimators: ${estimator} with bias, normalize, sigmoid scores and all three: forward and every gradient match the reference`,
    async (b) => {
      const I = closeInputs(21, OPTION_EPS, 10);
      // On native the set with all three options (each set compiles its own C).
      for (const [name, o] of b === "native" ? OPTION_SETS.slice(-1) : OPTION_SETS) {
        const c = make(I, o, name);
        if (!name.includes("+")) {
          // Without the option the reference differs, so ignoring it cannot pass.
          const without = make(I, {}, name);
          assertDiffers(c.ref, without.ref, `${estimator}: ${name}`);
        }
        await expectOn(b, I, c.opts, c.ref, `${estimator} ${name}`, c.extra, c.ehat);
      }
    },
  );
}

// ---- finite differences away from the estimator --------------------------------------------------

Deno.test("estimators: the expert paths of every estimator still pass finite differences", () => {
  // With the routing held fixed (eval, or injected noise) the expert parameters and x's expert
  // path are true gradients; the router is excluded only where the rule is an estimator.
  const I = inputs(12, 5, 3, 4, 2);
  const n = noiseOf(2, 2, I.T, I.N);
  for (
    const opts of [
      { k: 2, estimator: "sparsemixer", noise: noiseTensors(n, 2, I.T, I.N, "wide") },
      { k: 1, estimator: "sparsemixer-v1", noise: noiseTensors(n, 1, I.T, I.N, "wide") },
      { k: 2, estimator: "default" },
    ] as mj.moe.LayerOptions[]
  ) {
    const router = wideTensor(flat(I.router), [I.N, I.d]);
    checkGradFD(
      (up, down) =>
        mj.moe.layer(wideTensor(flat(I.x), [I.T, I.d]), { router, up, down }, {
          ...opts,
          ...(opts.estimator === "default" ? { default: { beta: 1 } } : {}),
        }).y.mul(wideTensor(flat(I.mix), [I.T, I.d])).sum(),
      [{ data: flat(I.up), shape: [I.N, I.f, I.d] }, {
        data: flat(I.down),
        shape: [I.N, I.d, I.f],
      }],
      { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
    );
  }
});

Deno.test("sparsemixer-v1: ω (a trained parameter) passes finite differences in training, with the experts", () => {
  // y = (Σ c·p_D·E_D(x)) ⊙ ω: ω's gradient is the true one; with the noise injected the
  // routing and c are fixed, so ω, the expert weights and x's expert path all pass.
  const I = closeInputs(33, 0.5, 8);
  const n = steeringNoise(I, 1, 0.5, 5);
  const r = sparseMixerV1Ref(I, 0.5, true, n, [1, 1, 1]);
  assertCoverage(r, 1, true, 0.5, "ω FD");
  const router = wideTensor(flat(I.router), [I.N, I.d]);
  const noise = noiseTensors(n, 1, I.T, I.N, "wide");
  checkGradFD(
    (up, down, omega) =>
      mj.moe.layer(wideTensor(flat(I.x), [I.T, I.d]), { router, up, down, omega }, {
        k: 1,
        estimator: "sparsemixer-v1",
        jitterEps: 0.5,
        noise,
      }).y.mul(wideTensor(flat(I.mix), [I.T, I.d])).sum(),
    [
      { data: flat(I.up), shape: [I.N, I.f, I.d] },
      { data: flat(I.down), shape: [I.N, I.d, I.f] },
      { data: [1.2, -0.7, 0.4], shape: [I.d] },
    ],
    { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
  );
});

Deno.test("sparsemixer v2 and v1 in eval: the router path is the true gradient (finite differences)", () => {
  // §5.6: eval is the argmax with masked-softmax weights and c = 1 — a deterministic function
  // whose selection and mask are locally constant — so the estimator's backward g·p_D·(1[j=D] −
  // p_j) (v2) and autodiff through the masked softmax (v1) are its true gradient, for x and the
  // router as well as the experts (and ω).
  for (
    const [k, estimator] of [[1, "sparsemixer"], [2, "sparsemixer"], [1, "sparsemixer-v1"]] as const
  ) {
    const I = closeInputs(44 + k, 0.5, 8);
    const what = `${estimator} k=${k} eval`;
    const r = estimator === "sparsemixer"
      ? sparseMixerV2Ref(I, k, 0.5, false, null)
      : sparseMixerV1Ref(I, 0.5, false, null, null);
    assertCoverage(r, k, false, 0, what);
    assert.ok(r.margin > 1e-3, `${what}: a decision is within ${r.margin} of its threshold`);
    const v1 = estimator === "sparsemixer-v1";
    checkGradFD(
      (x, router, up, down, ...omega) =>
        mj.moe.layer(x, { router, up, down, ...(v1 ? { omega: omega[0] } : {}) }, {
          k,
          estimator,
          jitterEps: 0.5,
          training: false,
        }).y.mul(wideTensor(flat(I.mix), [I.T, I.d])).sum(),
      [
        { data: flat(I.x), shape: [I.T, I.d] },
        { data: flat(I.router), shape: [I.N, I.d] },
        { data: flat(I.up), shape: [I.N, I.f, I.d] },
        { data: flat(I.down), shape: [I.N, I.d, I.f] },
        ...(v1 ? [{ data: [1.2, -0.7, 0.4], shape: [I.d] }] : []),
      ],
      { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
    );
  }
});

// ---- errors ---------------------------------------------------------------------------------------

Deno.test("estimators: bad options are clear errors", () => {
  const x = mj.zeros([4, 3]);
  const p = { router: mj.zeros([3, 3]), up: mj.zeros([3, 2, 3]), down: mj.zeros([3, 3, 2]) };
  assert.throws(
    () => mj.moe.layer(x, p, { topK: 3, estimator: "sparsemixer" }),
    /supports topK 1 or 2/,
  );
  assert.throws(() => mj.moe.layer(x, p, { k: 2, estimator: "sparsemixer-v1" }), /top-1 only/);
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, estimator: "grin" as "topk" }),
    /estimator must be one of "topk", "dense", "default", "sparsemixer", "sparsemixer-v1"/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, estimator: "default", default: { beta: 2 } }),
    /default\.beta must be a number in \[0, 1\]/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, default: { beta: 0.5 } }),
    /configures estimator "default"/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, jitterEps: 0.1 }),
    /jitterEps applies to the sparsemixer estimators/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, estimator: "default", state: { ehat: mj.zeros([2, 3]) } }),
    /state\.ehat must be f32\[3, 3\]/,
  );
  assert.throws(
    () =>
      mj.moe.route(mj.zeros([4, 3]), {
        k: 1,
        estimator: "sparsemixer",
        noise: { exponential: mj.zeros([1, 4, 2]), uniform: mj.zeros([1, 4]) },
      }),
    /noise\.exponential must be f32\[1, 4, 3\]/,
  );
});

// ---- custom estimators ----------------------------------------------------------------------------

estimatorTest(
  "estimators: a custom estimator function's own backward reaches the router",
  async (b) => {
    const gateRule = mj.customVjp({
      name: "test.uniformGate",
      fwd: (scores: mj.Tensor, indices: mj.Tensor) => scores.gather(-1, indices),
      // Each slot's gradient goes to every score equally (deliberately not the true gradient).
      bwd: (
        _s,
        g,
        [scores],
      ) => [(g as mj.Tensor).sum(-1, true).broadcastTo((scores as mj.Tensor).shape), null],
      estimator: true,
    });
    const est: mj.moe.EstimatorFn = ({ scores, selection, k }) => {
      const indices = selection.topk(k).indices;
      return { indices, weights: gateRule(scores, indices) };
    };
    const I = inputs(41);
    const base = topkRouting(I, 2);
    const R: RoutingRef = {
      ...base,
      routerGrad: (g) => base.pi.map((p, t) => softmaxBack(p, p.map(() => g[t][0] + g[t][1]))),
    };
    await expectOn(b, I, () => ({ k: 2, estimator: est }), run(I, R), "custom");
  },
);

Deno.test("estimators: a custom estimator receives key, seed, noise and jitterEps for sampling", async () => {
  const I = inputs(42, 6, 3, 4, 2);
  const logits = mj.tensor(flat(logitsOf(I)), [I.T, I.N]);
  const seen: mj.moe.EstimatorContext[] = [];
  // Gumbel-max over the logits with the injected exponential draws, or fresh ones from the key.
  const sampler: mj.moe.EstimatorFn = (ctx) => {
    seen.push(ctx);
    const e = ctx.noise
      ? ctx.noise.exponential.slice([0])
      : mj.rand([I.T, I.N], { key: ctx.key }).neg().add(1).log().neg();
    const indices = ctx.logits.sub(e.log()).topk(ctx.k).indices;
    return { indices, weights: ctx.scores.gather(-1, indices) };
  };
  const n = noiseOf(3, 1, I.T, I.N);
  const noise = noiseTensors(n, 1, I.T, I.N, "f32");
  const r1 = mj.moe.route(logits, { k: 1, estimator: sampler, noise, jitterEps: 0.2, seed: 9 });
  assert.equal(seen[0].noise, noise);
  assert.equal(seen[0].jitterEps, 0.2);
  assert.equal(seen[0].seed, 9);
  assert.equal(seen[0].key, undefined);
  const expected = logitsOf(I).map((z, t) =>
    z.map((v, i) => v - Math.log(n.exponential[0][t][i])).reduce(
      (b, v, i, a) => (v > a[b] ? i : b),
      0,
    )
  );
  assert.deepEqual(Array.from(await r1.indices.data()), expected, "the injected draws decide");
  const key = mj.tensor([4, 1], [2], { dtype: "i32" });
  const r2 = mj.moe.route(logits, { k: 1, estimator: sampler, key });
  assert.equal(seen[1].key, key);
  assert.equal(seen[1].noise, undefined);
  const u = Array.from(await mj.rand([I.T, I.N], { key }).data());
  const fromKey = logitsOf(I).map((z, t) =>
    z.map((v, i) => v - Math.log(-Math.log(1 - u[t * I.N + i]))).reduce(
      (b, v, i, a) => (v > a[b] ? i : b),
      0,
    )
  );
  assert.deepEqual(Array.from(await r2.indices.data()), fromKey, "draws from the given key");
  // moe.layer passes them through as well.
  const x = mj.tensor(flat(I.x), [I.T, I.d]);
  mj.moe.layer(x, {
    router: mj.tensor(flat(I.router), [I.N, I.d]),
    up: mj.tensor(flat(I.up), [I.N, I.f, I.d]),
    down: mj.tensor(flat(I.down), [I.N, I.d, I.f]),
  }, { k: 1, estimator: sampler, key, jitterEps: 0.3 });
  assert.equal(seen[2].key, key);
  assert.equal(seen[2].jitterEps, 0.3);
  assert.equal(seen[2].training, true);
});

Deno.test("examples/custom_estimator.ts runs as a user runs it", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../examples/custom_estimator.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr).slice(-2000));
  const losses = [...text.matchAll(/step +(\d+) +loss (\d+\.\d+)/g)].map((m) => Number(m[2]));
  assert.equal(losses.length, 5, text);
  assert.ok(losses.every(Number.isFinite) && losses[4] < losses[0], `loss falls: ${losses}`);
  const counts = text.match(/tokens per expert: ([\d ]+)/)![1].trim().split(" ").map(Number);
  assert.equal(counts.length, 8);
  assert.equal(counts.reduce((a, b) => a + b, 0), 256 * 2, "every token reaches k = 2 experts");
});
