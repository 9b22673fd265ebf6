/**
 * Gradient estimators against their formulas (algorithms.md §2 Default MoE, §5 GRIN /
 * SparseMixer-v2, §5.7 SparseMixer-v1). Expected outputs and gradients are computed in float64
 * by tests/moe/reference.ts from the formulas alone; the library must match on the interpreter
 * (float64) and on WebGPU (f32, 1e-4 relative).
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, prng, wideTensor } from "../helpers.ts";
import { evaluate } from "../../src/interp/interpreter.ts";
import { acquireGpu } from "../../src/runtime/device.ts";
import {
  dot,
  type Inputs,
  logitsOf,
  type Mat,
  type Result,
  type RoutingRef,
  run,
  softmax,
  softmaxBack,
  topkRouting,
} from "./reference.ts";

const gpu = (await acquireGpu()) !== null;
const f32 = Math.fround;

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

const flat = (m: number[] | Mat | number[][][]): number[] => (m as unknown[]).flat(2) as number[];

/** The library's layer on the interpreter (float64) or WebGPU: y and every gradient. */
async function library(
  I: Inputs,
  opts: mj.moe.LayerOptions,
  backend: "wide" | "webgpu",
  extra: { omega?: number[]; ehat?: Mat } = {},
) {
  const T = (d: number[], s: number[]) => (backend === "wide" ? wideTensor(d, s) : mj.tensor(d, s));
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
    mj.setBackend("webgpu");
    vals = [];
    for (const t of tensors) vals.push(Array.from(await t.data()));
    mj.setBackend("cpu");
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

// ---- Default MoE -------------------------------------------------------------------------------

type Ema = "mean" | "scoredMean" | "scoredWeighted";

/** Default MoE from §2.1–2.2: EMA first (experts with no token keep their vector), then use it. */
function defaultRef(
  I: Inputs,
  k: number,
  ema: Ema,
  mode: "forward" | "backwardOnly",
  beta: number,
  ehat: Mat,
) {
  const base = topkRouting(I, k);
  const outs = run(I, base).outs;
  const newEhat = ehat.map((row, i) => {
    let cnt = 0, wsum = 0;
    const s = new Array(I.d).fill(0);
    base.sel.forEach((sel, t) =>
      sel.forEach((e, j) => {
        if (e !== i) return;
        cnt++;
        const pi = base.pi[t][i];
        wsum += pi;
        for (let c = 0; c < I.d; c++) s[c] += (ema === "mean" ? 1 : pi) * outs[t][j][c];
      })
    );
    if (cnt === 0) return [...row];
    const mean = s.map((v) => v / (ema === "scoredWeighted" ? wsum : cnt));
    return row.map((v, c) => beta * v + (1 - beta) * mean[c]);
  });
  const unsel = (t: number, i: number) => !base.sel[t].includes(i);
  const extra = mode === "forward"
    ? base.pi.map((p, t) =>
      Array.from(
        { length: I.d },
        (_, c) => p.reduce((s, pi, i) => s + (unsel(t, i) ? pi * newEhat[i][c] : 0), 0),
      )
    )
    : null;
  const R: RoutingRef = {
    ...base,
    extra,
    // Eq. 8: the router sees E_i(x_t) for selected experts and ê_i for the others.
    routerGrad: (g) =>
      base.pi.map((p, t) => {
        const v = p.map((_, i) => (unsel(t, i) ? dot(I.mix[t], newEhat[i]) : 0));
        base.sel[t].forEach((i, j) => (v[i] += g[t][j]));
        return softmaxBack(p, v);
      }),
  };
  return { ref: run(I, R), ehat: newEhat, counts: base.sel.flat() };
}

const zeroEhat = (I: Inputs): Mat => Array.from({ length: I.N }, () => new Array(I.d).fill(0));

for (const k of [1, 2]) {
  for (const ema of ["mean", "scoredMean", "scoredWeighted"] as Ema[]) {
    for (const mode of ["forward", "backwardOnly"] as const) {
      Deno.test(`default moe k=${k} ema=${ema} mode=${mode}: two steps carrying the EMA match the formulas`, async () => {
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
        const l1 = await library(I1, opts(), "wide", { ehat: zeroEhat(I1) });
        expectMatch(l1, s1.ref, WIDE, "step 1", s1.ehat);
        const s2 = defaultRef(I2, k, ema, mode, beta, s1.ehat);
        const l2 = await library(I2, opts(), "wide", { ehat: s1.ehat });
        expectMatch(l2, s2.ref, WIDE, "step 2", s2.ehat);
        if (gpu) {
          expectMatch(
            await library(I2, opts(), "webgpu", { ehat: s1.ehat }),
            s2.ref,
            F32,
            "step 2 webgpu",
            s2.ehat,
          );
        }
      });
    }
  }
}

Deno.test("default moe: an expert with no tokens keeps its default vector", async () => {
  const I = inputs(5);
  I.router[3] = I.router[3].map(() => 0);
  I.x.forEach((_, t) => (I.x[t] = I.x[t].map((v) => Math.abs(v) + 0.5))); // positive inputs
  I.router[3] = [-5, -5, -5]; // expert 3 never wins
  const start: Mat = zeroEhat(I).map((row, i) => row.map((_, c) => 0.1 * (i + 1) + 0.01 * c));
  const s = defaultRef(I, 1, "mean", "forward", 0.9, start);
  assert.ok(!s.counts.includes(3), "expert 3 is unused");
  const l = await library(I, { k: 1, estimator: "default" }, "wide", { ehat: start });
  expectMatch(l, s.ref, WIDE, "no-token expert", s.ehat);
  assertClose(l.ehat!.slice(9, 12), start[3], { rtol: 0, atol: 0 });
});

Deno.test("default moe: eval is plain top-k unless evalDefaults, and never updates the EMA", async () => {
  const I = inputs(8);
  const start: Mat = zeroEhat(I).map((row, i) => row.map((_, c) => 0.2 * i - 0.1 * c));
  const plain = run(I, topkRouting(I, 2));
  const l = await library(I, { k: 2, estimator: "default", training: false }, "wide", {
    ehat: start,
  });
  assertClose(l.y, flat(plain.y), WIDE);
  assertClose(l.ehat!, flat(start), { rtol: 0, atol: 0 });
  const withDefaults = await library(
    I,
    { k: 2, estimator: "default", training: false, default: { evalDefaults: true } },
    "wide",
    { ehat: start },
  );
  const base = topkRouting(I, 2);
  const expected = plain.y.map((row, t) =>
    row.map((v, c) =>
      v + base.pi[t].reduce((s, p, i) => s + (base.sel[t].includes(i) ? 0 : p * start[i][c]), 0)
    )
  );
  assertClose(withDefaults.y, flat(expected), WIDE);
});

Deno.test("default moe: with β = 1 (no EMA movement) the whole layer passes finite differences except the router", () => {
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

// ---- SparseMixer-v2 (GRIN) ------------------------------------------------------------------------

function noiseOf(seed: number, k: number, T: number, N: number) {
  const r = prng(seed);
  const exponential = Array.from(
    { length: k },
    () => Array.from({ length: T }, () => Array.from({ length: N }, () => -Math.log(1 - r()))),
  );
  const uniform = Array.from({ length: k }, () => Array.from({ length: T }, () => r()));
  return { exponential, uniform };
}

const argmax = (v: number[]) => v.reduce((b, x, i) => (x > v[b] ? i : b), 0);

/** §5.2–5.6 from the code: drop rule, Gumbel-max, coin, constants, slot-2 masking, no renorm. */
function sparseMixerV2Ref(
  I: Inputs,
  k: number,
  eps: number,
  training: boolean,
  noise: ReturnType<typeof noiseOf>,
  expertGrad: "code" | "paper",
) {
  const z = logitsOf(I);
  const sel: number[][] = [],
    w: number[][] = [],
    scale: number[][] = [],
    ps: number[][][] = [],
    pD: number[][] = [];
  for (let t = 0; t < I.T; t++) {
    sel.push([]), w.push([]), scale.push([]), ps.push([]), pD.push([]);
    let removed = -1;
    for (let j = 0; j < k; j++) {
      const zj = z[t].map((v, i) => (i === removed ? -Infinity : v));
      const thr = Math.max(...zj);
      const masked = z[t].map((
        v,
        i,
      ) => (i === removed || (thr - v) / Math.max(Math.abs(v), thr) > 2 * eps ? -Infinity : v));
      const p = softmax(masked);
      const D = training
        ? argmax(masked.map((v, i) => v - Math.log(noise.exponential[j][t][i])))
        : argmax(zj);
      const c = training
        ? (D === argmax(p) || noise.uniform[j][t] > 0.75 ? f32(0.6667) + f32(0.3333) : f32(0.3333))
        : 1;
      sel[t].push(D), w[t].push(c * p[D]), scale[t].push(c), ps[t].push(p), pD[t].push(p[D]);
      removed = D;
    }
  }
  const R: RoutingRef = {
    sel,
    w,
    expertScale: expertGrad === "code" ? w : pD,
    // ∂L/∂z_j = Σ_slot g·p_D·(1[j=D] − p_j): no c in the backward.
    routerGrad: (g) =>
      z.map((_, t) => {
        const dz = new Array(I.N).fill(0);
        for (let j = 0; j < k; j++) {
          const p = ps[t][j], D = sel[t][j];
          for (let i = 0; i < I.N; i++) dz[i] += g[t][j] * p[D] * ((i === D ? 1 : 0) - p[i]);
        }
        return dz;
      }),
  };
  return run(I, R);
}

function noiseTensors(
  n: ReturnType<typeof noiseOf>,
  k: number,
  T: number,
  N: number,
  backend: "wide" | "webgpu",
) {
  const mk = (
    d: number[],
    s: number[],
  ) => (backend === "wide" ? wideTensor(d, s) : mj.tensor(d, s));
  return {
    exponential: mk(n.exponential.flat(2), [k, T, N]),
    uniform: mk(n.uniform.flat(), [k, T]),
  };
}

for (const k of [1, 2]) {
  for (const eps of [0.01, 0.1, 0.5]) {
    for (const training of [true, false]) {
      Deno.test(`sparsemixer-v2 k=${k} ε=${eps} ${training ? "train" : "eval"}: forward and gradients match §5`, async () => {
        const I = inputs(100 + k * 10 + Math.round(eps * 100), 6, 3, 5, 2);
        const n = noiseOf(7 + k, k, I.T, I.N);
        const ref = sparseMixerV2Ref(I, k, eps, training, n, "code");
        const opts = (b: "wide" | "webgpu"): mj.moe.LayerOptions => ({
          k,
          estimator: "sparsemixer",
          jitterEps: eps,
          training,
          ...(training ? { noise: noiseTensors(n, k, I.T, I.N, b) } : {}),
        });
        expectMatch(await library(I, opts("wide"), "wide"), ref, WIDE, "interpreter");
        if (gpu) expectMatch(await library(I, opts("webgpu"), "webgpu"), ref, F32, "webgpu");
      });
    }
  }
}

Deno.test("sparsemixer-v2: the paper's expert gradient (no c) as an option", async () => {
  const I = inputs(77, 6, 3, 5, 2);
  const n = noiseOf(9, 2, I.T, I.N);
  const ref = sparseMixerV2Ref(I, 2, 0.5, true, n, "paper");
  const lib = await library(I, {
    k: 2,
    estimator: "sparsemixer",
    jitterEps: 0.5,
    noise: noiseTensors(n, 2, I.T, I.N, "wide"),
    expertGrad: "paper",
  }, "wide");
  expectMatch(lib, ref, WIDE, "paper");
  const code = sparseMixerV2Ref(I, 2, 0.5, true, n, "code");
  assert.ok(
    flat(code.dup).some((v, i) => Math.abs(v - flat(ref.dup)[i]) > 1e-6),
    "the two forms differ",
  );
});

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

// ---- SparseMixer-v1 -----------------------------------------------------------------------------

function sparseMixerV1Ref(
  I: Inputs,
  eps: number,
  training: boolean,
  noise: ReturnType<typeof noiseOf>,
  omega: number[],
) {
  const z = logitsOf(I);
  const sel: number[][] = [], w: number[][] = [], ps: number[][] = [];
  for (let t = 0; t < I.T; t++) {
    const thr = Math.max(...z[t]);
    const masked = z[t].map((
      v,
    ) => ((thr - v) / Math.max(Math.abs(v), thr) > 2 * eps ? -Infinity : v));
    const p = softmax(masked);
    const D = training
      ? argmax(masked.map((v, i) => v - Math.log(noise.exponential[0][t][i])))
      : argmax(z[t]);
    const c = training ? (D === argmax(z[t]) || noise.uniform[0][t] > 0.5 ? 1 : 0.5) : 1;
    sel.push([D]), w.push([c * p[D]]), ps.push(p);
  }
  const R: RoutingRef = {
    sel,
    w,
    expertScale: w,
    omega,
    // The c-multiplication's backward is ×2 in training; then the masked softmax's Jacobian.
    routerGrad: (g) =>
      z.map((_, t) => {
        const v = new Array(I.N).fill(0);
        v[sel[t][0]] = (training ? 2 : 1) * g[t][0];
        return softmaxBack(ps[t], v);
      }),
  };
  return run(I, R);
}

for (const training of [true, false]) {
  Deno.test(`sparsemixer-v1 ${training ? "train" : "eval"}: mid-point rule, ×2 backward, per-channel ω`, async () => {
    const I = inputs(300, 6, 3, 5, 2);
    const n = noiseOf(4, 1, I.T, I.N);
    const omega = [1.1, 0.7, -0.4];
    const ref = sparseMixerV1Ref(I, 0.1, training, n, omega);
    const opts = (b: "wide" | "webgpu"): mj.moe.LayerOptions => ({
      k: 1,
      estimator: "sparsemixer-v1",
      training,
      ...(training ? { noise: noiseTensors(n, 1, I.T, I.N, b) } : {}),
    });
    expectMatch(await library(I, opts("wide"), "wide", { omega }), ref, WIDE, "interpreter");
    if (gpu) expectMatch(await library(I, opts("webgpu"), "webgpu", { omega }), ref, F32, "webgpu");
  });
}

// ---- options and finite differences away from the estimator --------------------------------------

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

Deno.test("estimators: every estimator runs with bias, normalize and sigmoid scores on both backends", async () => {
  const I = inputs(21, 8, 4, 6, 3);
  const bias = [0.3, -0.2, 0, 0.1, -0.4, 0.2];
  for (const estimator of ["topk", "dense", "default", "sparsemixer", "sparsemixer-v1"] as const) {
    for (const extra of [{ bias: true }, { normalize: true }, { score: "sigmoid" as const }]) {
      const k = estimator === "sparsemixer-v1" ? 1 : 2;
      const make = (b: "cpu" | "webgpu") => {
        mj.setBackend(b);
        const r = mj.moe.layer(mj.tensor(flat(I.x), [I.T, I.d]), {
          router: mj.tensor(flat(I.router), [I.N, I.d]),
          up: mj.tensor(flat(I.up), [I.N, I.f, I.d]),
          down: mj.tensor(flat(I.down), [I.N, I.d, I.f]),
        }, {
          k,
          estimator,
          ...(extra.bias ? { bias: mj.tensor(bias) } : {}),
          ...(extra.normalize ? { normalize: true } : {}),
          ...(extra.score ? { score: extra.score } : {}),
          ...(estimator.startsWith("sparsemixer") ? { seed: 5 } : {}),
        });
        return r.y;
      };
      const cpu = await make("cpu").data();
      if (gpu) {
        const g = await make("webgpu").data();
        mj.setBackend("cpu");
        assertClose(g, cpu, {
          rtol: 1e-4,
          atol: 1e-5,
          msg: `${estimator} ${JSON.stringify(extra)}`,
        });
      }
      assert.ok(Array.from(cpu).every(Number.isFinite), `${estimator} ${JSON.stringify(extra)}`);
    }
  }
});

Deno.test("estimators: bad options are clear errors", () => {
  const x = mj.zeros([4, 3]);
  const p = { router: mj.zeros([3, 3]), up: mj.zeros([3, 2, 3]), down: mj.zeros([3, 3, 2]) };
  assert.throws(
    () => mj.moe.layer(x, p, { k: 3, estimator: "sparsemixer" }),
    /supports k = 1 or 2/,
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

Deno.test("estimators: a custom estimator function's own backward reaches the router", async () => {
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
  expectMatch(await library(I, { k: 2, estimator: est }, "wide"), run(I, R), WIDE, "custom");
  if (gpu) {
    expectMatch(
      await library(I, { k: 2, estimator: est }, "webgpu"),
      run(I, R),
      F32,
      "custom webgpu",
    );
  }
});
