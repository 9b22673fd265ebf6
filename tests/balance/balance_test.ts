/**
 * Balancers against their formulas (docs/methods.md §4): values, gradients and state updates in
 * float64 on the interpreter, the same on each compiled backend (WebGPU, native) within f32
 * tolerance, over several steps.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, evalWide, prng, wideTensor } from "../helpers.ts";
import { evaluate } from "../../src/interp/interpreter.ts";
import { backend, everyBackendTest, gpuTest } from "../webgpu/harness.ts";

/** The values of `ts` in one step (on the native backend each step is a compiled library). */
async function values(...ts: mj.Tensor[]): Promise<ArrayLike<number>[]> {
  return await Promise.all((await mj.realize(ts)).map((t) => t.data()));
}

type Mat = number[][];
const rand = (seed: number) => {
  const r = prng(seed);
  return (a: number, b: number, s = 1): Mat =>
    Array.from({ length: a }, () => Array.from({ length: b }, () => (2 * r() - 1) * s));
};
const softmax = (z: number[]) => {
  const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const lse = (z: number[]) =>
  Math.max(...z) + Math.log(z.reduce((s, v) => s + Math.exp(v - Math.max(...z)), 0));
const topk = (v: number[], k: number) =>
  v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map((
    [, i],
  ) => i);
const kth = (
  v: number[],
  r: number,
) => (r > v.length ? -Infinity : [...v].sort((a, b) => b - a)[r - 1]);

/** A layer whose router logits are given directly (x = identity-ish): logits = x · routerᵀ. */
function setup(T: number, N: number, d: number, seed: number) {
  const m = rand(seed);
  return { x: m(T, d), router: m(N, d, 1.5), up: [m(4, d, 0.5), m(4, d, 0.5)], T, N, d };
}

function layerFor(s: ReturnType<typeof setup>, wide: boolean) {
  const t = (v: number[], sh: number[]) => (wide ? wideTensor(v, sh) : mj.tensor(v, sh));
  const f = 4;
  const r = prng(99);
  const up = Array.from({ length: s.N * f * s.d }, () => (2 * r() - 1) * 0.5);
  const down = Array.from({ length: s.N * s.d * f }, () => (2 * r() - 1) * 0.5);
  return {
    x: t(s.x.flat(), [s.T, s.d]),
    params: {
      router: t(s.router.flat(), [s.N, s.d]),
      up: t(up, [s.N, f, s.d]),
      down: t(down, [s.N, s.d, f]),
    },
  };
}

const logitsOf = (s: ReturnType<typeof setup>) =>
  s.x.map((xt) => s.router.map((rw) => rw.reduce((a, w, c) => a + w * xt[c], 0)));

/** The router's gradient from the logits' gradient dz (logits = x · routerᵀ). */
const routerGrad = (s: ReturnType<typeof setup>, dz: Mat): Mat =>
  s.router.map((_, i) => s.x[0].map((_, c) => s.x.reduce((a, xt, t) => a + dz[t][i] * xt[c], 0)));

// ---- auxiliary loss and z-loss ----------------------------------------------------------------

for (
  const [name, opts, k] of [
    ["global unified", {}, 2],
    ["global hf (K× larger)", { convention: "hf" }, 2],
    ["sequence-wise", { scope: "sequence", seqLen: 3 }, 2],
    ["softmax P under sigmoid routing", { score: "softmax" }, 1],
  ] as const
) {
  everyBackendTest(`auxLoss ${name}: value and router gradient follow §4.1`, async (b) => {
    const s = setup(6, 4, 3, 7);
    const alpha = 0.3;
    const routeScore = name.startsWith("softmax P") ? "sigmoid" : "softmax";
    const z = logitsOf(s);
    const score = z.map((row) => (routeScore === "softmax" ? softmax(row) : row.map(sigmoid)));
    const P = z.map((
      row,
    ) => ("score" in opts
      ? softmax(row)
      : routeScore === "softmax"
      ? softmax(row)
      : row.map(sigmoid))
    );
    const sel = score.map((row) => topk(row, k));
    const S = "seqLen" in opts ? opts.seqLen : s.T;
    const B = s.T / S;
    const hf = "convention" in opts;
    // L = α N mean_b Σ_i f_{b,i} P_{b,i},  f = c/(S·K) (unified) or c/S (hf), no gradient in f.
    let expected = 0;
    const dP: Mat = z.map((row) => row.map(() => 0));
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < s.N; i++) {
        let c = 0, p = 0;
        for (let t = b * S; t < (b + 1) * S; t++) {
          c += sel[t].filter((e) => e === i).length;
          p += P[t][i] / S;
        }
        const f = c / (hf ? S : S * k);
        expected += (alpha * s.N * f * p) / B;
        for (let t = b * S; t < (b + 1) * S; t++) dP[t][i] += (alpha * s.N * f) / (S * B);
      }
    }
    // dL/dz through the score function used for P.
    const dz = z.map((row, t) => {
      if ("score" in opts || routeScore === "softmax") {
        const p = softmax(row), dot = p.reduce((a, v, i) => a + v * dP[t][i], 0);
        return p.map((v, i) => v * (dP[t][i] - dot));
      }
      return row.map((v, i) => sigmoid(v) * (1 - sigmoid(v)) * dP[t][i]);
    });
    const dRouter = routerGrad(s, dz);
    const wide = b === "cpu";
    mj.setBackend(b);
    const { x, params } = layerFor(s, wide);
    const f = (router: mj.Tensor) =>
      mj.moe.layer(x, { ...params, router }, {
        k,
        score: routeScore,
        balance: [mj.balance.auxLoss({ alpha, ...opts })],
      }).losses.load_balancing_loss;
    const [v, [g]] = mj.valueAndGrad(f)(params.router);
    const [vv, gg] = wide ? evalWide(v, g) : await values(v, g);
    const tol = wide ? { rtol: 1e-6, atol: 1e-10 } : { rtol: 1e-4, atol: 1e-6 };
    assertClose(vv, [expected], { ...tol, msg: `${b} value` });
    assertClose(gg, dRouter.flat(), { ...tol, msg: `${b} gradient` });
  });
}

Deno.test("auxLoss equals α at perfect balance (unified, k=1)", async () => {
  // 4 tokens, 4 experts, k = 1, uniform scores: every expert gets one token.
  const logits = mj.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]).mul(20);
  const x = logits, router = mj.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]);
  const p = { router, up: mj.zeros([4, 2, 4]), down: mj.zeros([4, 4, 2]) };
  const r = mj.moe.layer(x, p, { k: 1, balance: [mj.balance.auxLoss({ alpha: 0.01 })] });
  assertClose([await r.losses.load_balancing_loss.item()], [0.01], { rtol: 1e-6 });
  const m = mj.balance.metrics(r);
  assertClose([await m.load_balancing_loss.item()], [1], { rtol: 1e-6 });
  assert.equal(await m.max_vio.item(), 0);
  assert.equal(await m.dead_experts.item(), 0);
});

everyBackendTest(
  "auxLoss at perfect balance with k=2: α (unified) and K·α = 2α (hf)",
  async (b) => {
    // Token t prefers experts t and t+1 (mod 4): every expert is chosen by exactly T·K/N = 2
    // tokens. Then Σ_i f_i P_i = Σ_i P_i / N for any scores, so unified = α·Σ_i P_i = α and
    // hf = α·N·Σ_i (c_i/T)·P_i = K·α.
    const rows = [[20, 10, 0, 0], [0, 20, 10, 0], [0, 0, 20, 10], [10, 0, 0, 20]];
    const eye = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
    const alpha = 0.03;
    mj.setBackend(b);
    const wide = b === "cpu";
    const t = (v: number[][]) =>
      wide ? wideTensor(v.flat(), [v.length, v[0].length]) : mj.tensor(v);
    const p = { router: t(eye), up: mj.zeros([4, 2, 4]), down: mj.zeros([4, 4, 2]) };
    const loss = (convention: "unified" | "hf") =>
      mj.moe.layer(t(rows), p, {
        k: 2,
        balance: [mj.balance.auxLoss({ alpha, convention })],
      });
    const u = loss("unified"), h = loss("hf");
    const outs = [u.counts, u.losses.load_balancing_loss, h.losses.load_balancing_loss];
    const [counts, uv, hv] = wide ? evalWide(...outs) : await values(...outs);
    assert.deepEqual(Array.from(counts, Number), [2, 2, 2, 2], `${b} loads`);
    const tol = wide ? { rtol: 1e-7 } : { rtol: 1e-5 };
    assertClose(uv, [alpha], { ...tol, msg: `${b} unified = α` });
    assertClose(hv, [2 * alpha], { ...tol, msg: `${b} hf = K·α` });
  },
);

everyBackendTest("zLoss: β·mean(logsumexp(z)²), value and gradient", async (b) => {
  const s = setup(5, 4, 3, 13);
  const beta = 0.2;
  const z = logitsOf(s);
  const expected = (beta * z.reduce((a, row) => a + lse(row) ** 2, 0)) / s.T;
  const dz = z.map((row) => softmax(row).map((p) => (2 * beta * lse(row) * p) / s.T));
  const dRouter = routerGrad(s, dz);
  const wide = b === "cpu";
  mj.setBackend(b);
  const { x, params } = layerFor(s, wide);
  const [v, [g]] = mj.valueAndGrad((router: mj.Tensor) =>
    mj.moe.layer(x, { ...params, router }, { k: 2, balance: [mj.balance.zLoss({ beta })] })
      .losses.z_loss
  )(params.router);
  const [vv, gg] = wide ? evalWide(v, g) : await values(v, g);
  // β is an f32 constant even on the float64 interpreter.
  const tol = wide ? { rtol: 1e-6, atol: 1e-10 } : { rtol: 1e-4, atol: 1e-6 };
  assertClose(vv, [expected], { ...tol, msg: `${b} value` });
  assertClose(gg, dRouter.flat(), { ...tol, msg: `${b} gradient` });
});

// ---- loss-free ---------------------------------------------------------------------------------

for (
  const [rule, violation] of [
    ["sign", "relative"],
    ["linear", "relative"],
    ["linear", "raw"],
  ] as const
) {
  everyBackendTest(
    `lossFree (${rule}, ${violation} violation): causal bias updates over several steps match Alg. 1`,
    async (on) => {
      const T = 12, N = 4, k = 2, rate = 0.05, steps = 5;
      const s = setup(T, N, 3, 21);
      s.router[0] = s.router[0].map((v) => v + 1); // some skew
      const z = logitsOf(s);
      const score = z.map(softmax);
      // Reference: select with the bias of the previous step, then update from this step's loads:
      // e = c̄ − c, b += u·sign(e) | u·e/c̄ (relative) | u·e (raw).
      let b = new Array(N).fill(0);
      const expectedBias: number[][] = [], expectedCounts: number[][] = [];
      for (let st = 0; st < steps; st++) {
        const counts = new Array(N).fill(0);
        for (const row of score) for (const e of topk(row.map((v, i) => v + b[i]), k)) counts[e]++;
        const mean = (T * k) / N;
        b = b.map((bi, i) => {
          const e = mean - counts[i];
          return bi + rate * (rule === "sign" ? Math.sign(e) : violation === "raw" ? e : e / mean);
        });
        expectedBias.push(b);
        expectedCounts.push(counts);
      }
      const balance = [mj.balance.lossFree({ rate, rule, violation })];
      // Float64 interpreter: the update rule exactly (the rate is an f32 constant).
      if (on === "cpu") {
        const { x, params } = layerFor(s, true);
        let state: mj.moe.LayerState = {};
        for (let st = 0; st < steps; st++) {
          const r = mj.moe.layer(x, params, { k, balance, state });
          const [counts, bias] = evaluate([r.counts.node, r.state.lossFreeBias!.node], {
            wide: true,
          });
          assert.deepEqual(Array.from(counts, Number), expectedCounts[st], `cpu step ${st} counts`);
          assertClose(bias, expectedBias[st], {
            rtol: 1e-7,
            atol: 1e-12,
            msg: `cpu step ${st} bias`,
          });
          state = { lossFreeBias: wideTensor(Array.from(bias), [N]) };
        }
      } else {
        mj.setBackend(on);
        const { x, params } = layerFor(s, false);
        let state: mj.moe.LayerState = {};
        for (let st = 0; st < steps; st++) {
          const r = mj.moe.layer(x, params, { k, balance, state });
          const [counts, next] = await mj.realize([r.counts, r.state] as const);
          assert.deepEqual(
            Array.from(await counts.data()),
            expectedCounts[st],
            `${on} step ${st} counts`,
          );
          state = next;
          assertClose(await state.lossFreeBias!.data(), expectedBias[st], {
            rtol: 1e-5,
            atol: 1e-6,
            msg: `${on} step ${st} bias`,
          });
        }
      }
    },
  );
}

// ---- BIP ----------------------------------------------------------------------------------------

/** §4.3 reconstructed: alternate p and q `iters` times from q, then route by top-k of s − q. */
function bipRef(s: Mat, q0: number[], k: number, iters: number, cap: number) {
  let q = [...q0];
  for (let it = 0; it < iters; it++) {
    const p = s.map((row) => Math.max(0, kth(row.map((v, j) => v - q[j]), k + 1)));
    q = q.map((_, j) => Math.max(0, kth(s.map((row, i) => row[j] - p[i]), cap + 1)));
  }
  const sel = s.map((row) => topk(row.map((v, j) => v - q[j]), k));
  return { q, sel };
}

/**
 * Selections agree, except that where the k-th and (k+1)-th values of s − q are tied (BIP sets
 * prices exactly at token margins, so ties occur by construction) either choice is right.
 */
function assertSameSelection(
  got: number[],
  want: number[][],
  s: Mat,
  q: number[],
  k: number,
  msg: string,
) {
  want.forEach((w, t) => {
    const g = got.slice(t * k, (t + 1) * k);
    if (g.join() === w.join()) return;
    const v = s[t].map((x, j) => x - q[j]).sort((a, b) => b - a);
    assert.ok(
      Math.abs(v[k - 1] - v[k]) < 1e-9,
      `${msg}: token ${t} got ${g}, expected ${w} (not a tie)`,
    );
  });
}

/**
 * BIP over several steps against bipRef on backend `b`: prices q (float64 exactly on the
 * interpreter, within f32 on a compiled backend) and the routing (up to ties). `cap` is the balancer's option; the reference gets the
 * integer it stands for.
 */
async function checkBip(
  b: mj.BackendName,
  T: number,
  iters: number,
  score: "softmax" | "sigmoid",
  cap: mj.balance.BipOptions["cap"],
  start: mj.balance.BipOptions["start"] = undefined,
) {
  const N = 6, k = 2, steps = 3;
  const s = setup(T, N, 3, 40 + iters);
  s.router[1] = s.router[1].map((v) => v * 2 + 0.5);
  const z = logitsOf(s);
  const sc = z.map((row) => (score === "softmax" ? softmax(row) : row.map(sigmoid)));
  const capN = typeof cap === "number"
    ? cap
    : (cap === "floor" ? Math.floor : Math.ceil)((T * k) / N);
  let q = new Array(N).fill(0);
  const ref: ReturnType<typeof bipRef>[] = [];
  for (let st = 0; st < steps; st++) {
    // "zero": every step from q = 0, whatever the last step left.
    const r = bipRef(sc, start === "zero" ? q.map(() => 0) : q, k, iters, capN);
    ref.push(r);
    q = r.q;
  }
  const balance = [
    mj.balance.bip({
      iters,
      ...(cap !== undefined ? { cap } : {}),
      ...(start !== undefined ? { start } : {}),
    }),
  ];
  // Float64 interpreter: the formulas exactly (ties broken the same way).
  if (b === "cpu") {
    const { x, params } = layerFor(s, true);
    let state: mj.moe.LayerState = {};
    for (let st = 0; st < steps; st++) {
      const r = mj.moe.layer(x, params, { k, score, balance, state });
      const [qv, idx] = evaluate([r.state.bipQ!.node, r.indices.node], { wide: true });
      assertClose(qv, ref[st].q, { rtol: 1e-9, atol: 1e-12, msg: `step ${st} q` });
      assertSameSelection(Array.from(idx), ref[st].sel, sc, ref[st].q, k, `step ${st} selection`);
      state = { bipQ: wideTensor(Array.from(qv), [N]) };
    }
    return;
  }
  // A compiled backend: the same prices in f32, and the same routing (up to the same ties).
  mj.setBackend(b);
  try {
    const { x, params } = layerFor(s, false);
    let state: mj.moe.LayerState = {};
    for (let st = 0; st < steps; st++) {
      const r = mj.moe.layer(x, params, { k, score, balance, state });
      const [indices, next] = await mj.realize([r.indices, r.state] as const);
      const idx = Array.from(await indices.data(), Number);
      state = next;
      assertClose(await state.bipQ!.data(), ref[st].q, {
        rtol: 1e-4,
        atol: 1e-5,
        msg: `${b} step ${st} q`,
      });
      assertSameSelection(idx, ref[st].sel, sc, ref[st].q, k, `${b} step ${st} selection`);
    }
  } finally {
    mj.setBackend("cpu");
  }
}

/**
 * The native backend runs a representative subset of the BIP variants (iteration counts and caps
 * are constants of the graph, so each variant compiles its own C): two of each table.
 */
const NATIVE_BIP = [
  "T=4 softmax",
  "T=20 sigmoid",
  "cap=3 softmax",
  "cap=floor sigmoid",
  "start=zero",
];
const bipOn = (
  variant: string,
) => (NATIVE_BIP.includes(variant) ? {} : { only: "webgpu" as const });

for (const iters of [1, 2, 4, 20]) {
  for (const score of ["softmax", "sigmoid"] as const) {
    everyBackendTest(
      `bip T=${iters} ${score}: prices and routing over several steps match §4.3`,
      async (b) => {
        await checkBip(b, 24, iters, score, undefined);
      },
      bipOn(`T=${iters} ${score}`),
    );
  }
}

// 25 tokens · 2 / 6 experts = 8.33: "ceil" (default) and "floor" differ (9 vs 8), and an
// integer cap of 3 is far below the mean load, so the prices bind on every expert.
for (const cap of [3, 12, "floor", "ceil"] as const) {
  for (const score of ["softmax", "sigmoid"] as const) {
    everyBackendTest(
      `bip cap=${cap} T=4 ${score}: prices and routing over several steps match §4.3`,
      async (b) => {
        await checkBip(b, 25, 4, score, cap);
      },
      bipOn(`cap=${cap} ${score}`),
    );
  }
}

// The same router every step: from zero, each step's prices are the first step's; carried, they
// keep moving (T = 1, so one step is far from converged).
for (const start of ["zero", "previous"] as const) {
  everyBackendTest(
    `bip start=${start} T=1 softmax: prices and routing over several steps match §4.3`,
    async (b) => {
      await checkBip(b, 24, 1, "softmax", undefined, start);
    },
    bipOn(`start=${start}`),
  );
}

// ---- the skewed-router scenario ------------------------------------------------------------------

/**
 * The acceptance scenario on one backend: a router with a fixed +2 bias toward experts 0 and 1.
 * Forward passes only (the skew is in the data), 3 steps per balancer.
 */
async function skewedScenario(backend: mj.BackendName) {
  mj.setBackend(backend);
  try {
    const T = 4096, d = 16, N = 16, k = 2;
    const x = mj.concat([mj.ones([T, 1]), mj.randn([T, d - 1], { seed: 1 })], 1);
    const skew = mj.tensor(Array.from({ length: N }, (_, i) => (i < 2 ? 2 : 0))).reshape([N, 1]);
    const params = {
      router: mj.concat([skew, mj.randn([N, d - 1], { seed: 2 }).mul(0.3)], 1),
      up: mj.randn([N, 8, d], { seed: 3 }).mul(0.1),
      down: mj.randn([N, d, 8], { seed: 4 }).mul(0.1),
    };
    const run = async (
      balance: mj.balance.Balancer[],
      steps: number,
      estimator: mj.moe.LayerOptions["estimator"] = "topk",
    ) => {
      let state: mj.moe.LayerState = {};
      const vio: number[] = [];
      for (let i = 0; i < steps; i++) {
        const sampling = estimator === "sparsemixer" ? { seed: 7 + i } : {};
        const r = mj.moe.layer(x, params, { k, balance, state, estimator, ...sampling });
        vio.push(await mj.balance.metrics(r).max_vio.item());
        state = await mj.realize(r.state);
      }
      return vio;
    };
    const none = await run([], 1),
      bip = await run([mj.balance.bip({ iters: 4 })], 3),
      lf = await run([mj.balance.lossFree()], 3);
    assert.ok(none[0] > 1, `${backend}: the skew is real (MaxVio ${none[0]})`);
    for (const v of bip) assert.ok(v <= 0.1, `${backend}: BIP MaxVio ${bip}`);
    assert.ok(lf[2] < lf[0] && lf[2] > 0.5, `${backend}: loss-free decreases slowly: ${lf}`);
    // BIP's prices live in score space, also under GRIN's sampled routing: SparseMixer-v2 samples
    // in proportion to the priced scores, so the load is balanced up to sampling noise.
    const gNone = await run([], 1, "sparsemixer"),
      gBip = await run([mj.balance.bip({ iters: 4 })], 2, "sparsemixer");
    assert.ok(gNone[0] > 1, `${backend}: sparsemixer without balancing (MaxVio ${gNone[0]})`);
    for (const v of gBip) assert.ok(v <= 0.15, `${backend}: sparsemixer + BIP MaxVio ${gBip}`);
  } finally {
    mj.setBackend("cpu");
  }
}

everyBackendTest(
  "skewed router (16 experts, k=2, 4096 tokens): BIP T=4 at MaxVio ≤ 0.1 from step 1; loss-free slower; BIP balances GRIN's sampled routing too",
  skewedScenario,
);

// ---- compiled steps ----------------------------------------------------------------------------

everyBackendTest(
  "a balancer's settings key the compiled step: the same config again compiles nothing, another config compiles anew",
  async (b) => {
    // Each entry: a balancer list built afresh per call, and lists with one setting changed.
    const variants: [string, () => mj.balance.Balancer[], (() => mj.balance.Balancer[])[]][] = [
      ["auxLoss", () => [mj.balance.auxLoss({ alpha: 0.0123 })], [
        () => [mj.balance.auxLoss({ alpha: 0.0456 })],
        () => [mj.balance.auxLoss({ alpha: 0.0123, convention: "hf" })],
      ]],
      ["zLoss", () => [mj.balance.zLoss({ beta: 0.0123 })], [
        () => [mj.balance.zLoss({ beta: 0.0456 })],
      ]],
      ["lossFree", () => [mj.balance.lossFree({ rate: 0.0123 })], [
        () => [mj.balance.lossFree({ rate: 0.0123, rule: "linear" })],
        () => [mj.balance.lossFree({ rate: 0.0123, rule: "linear", violation: "raw" })],
      ]],
      ["bip", () => [mj.balance.bip({ iters: 2 })], [
        () => [mj.balance.bip({ iters: 3 })],
        () => [mj.balance.bip({ iters: 2, cap: 3 })],
      ]],
    ];
    const s = setup(20, 5, 3, 77);
    type Params = { router: mj.Tensor; up: mj.Tensor; down: mj.Tensor };
    const step = (balance: mj.balance.Balancer[]) => (x: mj.Tensor, p: Params) => {
      const r = mj.moe.layer(x, p, { k: 2, balance });
      return { y: r.y, losses: r.losses, state: r.state };
    };
    // The key of every output's graph (what the step cache is keyed by), on the interpreter.
    if (b === "cpu") {
      const { x, params } = layerFor(s, false);
      const keys = (balance: mj.balance.Balancer[]) => {
        const o = step(balance)(x, params);
        return [o.y, ...Object.values(o.losses), ...Object.values(o.state)]
          .map((t) => t!.node.key).join();
      };
      for (const [name, same, others] of variants) {
        assert.equal(keys(same()), keys(same()), `${name}: the same config, the same graph`);
        others.forEach((o, i) =>
          assert.notEqual(keys(o()), keys(same()), `${name}: other config ${i}, another graph`)
        );
      }
      return;
    }
    // A compiled backend: count compiled steps of mj.jit functions built afresh for each config.
    mj.setBackend(b);
    try {
      const { x, params } = layerFor(s, false);
      const [xv, pv] = await mj.realize([x, params] as const);
      const compiles = async (balance: mj.balance.Balancer[]) => {
        const before = mj.stats().stepsCompiled;
        const o = await mj.jit(step(balance))(xv, pv);
        await o.y.data();
        return mj.stats().stepsCompiled - before;
      };
      for (const [name, same, others] of variants) {
        await compiles(same());
        assert.equal(await compiles(same()), 0, `${name}: the same config again compiles nothing`);
        for (const [i, o] of others.entries()) {
          assert.ok(await compiles(o()) >= 1, `${name}: other config ${i} compiles a new step`);
        }
      }
    } finally {
      mj.setBackend("cpu");
    }
  },
);

// ---- metrics and combinations --------------------------------------------------------------------

Deno.test("metrics: tokens per expert, MaxVio, dead experts and router entropy follow their definitions", () => {
  const s = setup(10, 5, 3, 3);
  s.router[4] = [-9, -9, -9];
  s.x = s.x.map((r) => r.map(Math.abs));
  const z = logitsOf(s), pi = z.map(softmax), sel = pi.map((r) => topk(r, 2));
  const counts = new Array(5).fill(0);
  sel.flat().forEach((e) => counts[e]++);
  const { x, params } = layerFor(s, true);
  const r = mj.moe.layer(x, params, { k: 2 });
  const m = mj.balance.metrics(r);
  const [tpe, vio, dead, ent, lbl, zl] = evaluate(
    [
      m.tokens_per_expert,
      m.max_vio,
      m.dead_experts,
      m.router_entropy,
      m.load_balancing_loss,
      m.z_loss,
    ].map((t) => t.node),
    { wide: true },
  );
  assert.deepEqual(Array.from(tpe), counts);
  assertClose(vio, [(Math.max(...counts) - 4) / 4], { rtol: 1e-12 });
  assert.equal(dead[0], counts.filter((c) => c === 0).length);
  assertClose(ent, [
    -pi.reduce((a, row) => a + row.reduce((b, p) => b + p * Math.log(p), 0), 0) / 10,
  ], { rtol: 1e-9 });
  const P = [0, 1, 2, 3, 4].map((i) => pi.reduce((a, row) => a + row[i], 0) / 10);
  assertClose(lbl, [5 * counts.reduce((a, c, i) => a + (c / 20) * P[i], 0)], { rtol: 1e-9 });
  assertClose(zl, [z.reduce((a, row) => a + lse(row) ** 2, 0) / 10], { rtol: 1e-9 });
  assert.equal(mj.balance.maxVio([3, 5, 4, 4]), 0.25);
  const agg = mj.balance.aggregate([{ max_vio: 0.5, z_loss: 2 }, { max_vio: 1.5, z_loss: 4 }]);
  assert.deepEqual(agg, { mean: { max_vio: 1, z_loss: 3 }, max: { max_vio: 1.5, z_loss: 4 } });
});

gpuTest("every balancer combines with every estimator, as on the interpreter", async () => {
  const s = setup(16, 6, 4, 5);
  for (const estimator of ["topk", "dense", "default", "sparsemixer", "sparsemixer-v1"] as const) {
    const k = estimator === "sparsemixer-v1" ? 1 : 2;
    const balance = [
      mj.balance.auxLoss(),
      mj.balance.zLoss(),
      mj.balance.lossFree(),
      mj.balance.bip({ iters: 2 }),
    ];
    const out = async (b: mj.BackendName) => {
      mj.setBackend(b);
      const { x, params } = layerFor(s, false);
      const r = mj.moe.layer(x, params, {
        k,
        estimator,
        balance,
        ...(estimator.startsWith("sparse") ? { seed: 2 } : {}),
      });
      const [loss, [g]] = mj.valueAndGrad((router: mj.Tensor) => {
        const q = mj.moe.layer(x, { ...params, router }, {
          k,
          estimator,
          balance,
          ...(estimator.startsWith("sparse") ? { seed: 2 } : {}),
        });
        return q.y.sum().add(q.losses.load_balancing_loss).add(q.losses.z_loss);
      })(params.router);
      return (await values(loss, g, r.state.lossFreeBias!, r.state.bipQ!)).map((a) =>
        Array.from(a)
      );
    };
    const cpu = await out("cpu");
    (await out(backend())).forEach((v, i) =>
      assertClose(v, cpu[i], { rtol: 1e-4, atol: 1e-5, msg: `${estimator} output ${i}` })
    );
    mj.setBackend("cpu");
  }
});

Deno.test("balancers: options and misuse are clear errors", () => {
  assert.throws(
    () => mj.balance.auxLoss({ alpha: -1 }),
    /balance\.auxLoss: alpha must be a non-negative number/,
  );
  assert.throws(() => mj.balance.auxLoss({ scope: "sequence" }), /scope "sequence" needs seqLen/);
  assert.throws(
    () => mj.balance.lossFree({ rule: "exp" as "sign" }),
    /rule must be "sign" or "linear"/,
  );
  assert.throws(() => mj.balance.bip({ iters: 0 }), /iters must be a positive integer/);
  assert.throws(
    () => mj.balance.bip({ cap: 1.5 }),
    /cap must be a non-negative integer, "ceil" or "floor"/,
  );
  assert.throws(
    () => mj.balance.auxLoss({ alfa: 1 } as mj.balance.AuxLossOptions),
    /unknown option "alfa"/,
  );
  const x = mj.zeros([4, 3]);
  const p = { router: mj.zeros([3, 3]), up: mj.zeros([3, 2, 3]), down: mj.zeros([3, 3, 2]) };
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, balance: [mj.balance.zLoss(), mj.balance.zLoss()] }),
    /lists a balancer twice/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, balance: [{}] as unknown as mj.balance.Balancer[] }),
    /balance\[0\] is not a balancer/,
  );
  assert.throws(
    () =>
      mj.moe.layer(x, p, {
        k: 1,
        balance: [mj.balance.lossFree()],
        state: { lossFreeBias: mj.zeros([2]) },
      }),
    /state\.lossFreeBias must be f32\[3\]/,
  );
});
