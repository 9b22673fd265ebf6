/**
 * nn layers against float64 host references (tests/nn/reference.ts): forward values on the
 * interpreter (float64 and f32) and on each compiled backend (WebGPU, native), finite-difference
 * gradient checks in float64 with outputs contracted against a fixed random weight tensor, RoPE's
 * defining properties, and argument errors.
 */
import * as mj from "../../mod.ts";
import {
  assert,
  assertClose,
  checkGradFD,
  evalWide,
  fusedAndUnfused,
  wideTensor,
} from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import {
  attentionRef,
  crossEntropyRef,
  layerNormRef,
  linearRef,
  mlpRef,
  rmsNormRef,
  ropeRef,
  ropeVec,
  selfAttentionRef,
  uniform,
  weighted,
} from "./reference.ts";

type Input = { data: Float64Array; shape: number[] };
const W = (i: Input) => wideTensor(i.data, i.shape);
const F = (i: Input) => mj.tensor(Float32Array.from(i.data), i.shape);
const i32 = (data: number[], shape?: number[]) => mj.tensor(data, shape, { dtype: "i32" });

/** FD check of `f`'s weighted output with respect to every input. */
function fd(
  f: (...xs: mj.Tensor[]) => mj.Tensor,
  inputs: Input[],
  opts: { rtol?: number; atol?: number } = {},
) {
  checkGradFD((...xs) => weighted(f(...xs)), inputs, { rtol: 1e-5, atol: 1e-8, ...opts });
}

/** Float64 evaluation; scalar constants (eps, 1/√Dh, 1/n) are still f32 numbers in the graph. */
const WIDE = { rtol: 1e-6, atol: 1e-8 };
/** RoPE tables are f32 host constants, so anything after rope agrees to f32 precision only. */
const ROPE = { rtol: 2e-6, atol: 1e-7 };
const F32 = { rtol: 2e-5, atol: 2e-6 };

// ---- linear and embedding ------------------------------------------------------------------------

Deno.test("nn.linear: x·wᵀ + b with [out, in] weights and any leading dims", async () => {
  mj.setBackend("cpu");
  const x = uniform([2, 3, 4], 1), w = uniform([5, 4], 2), b = uniform([5], 3);
  const y = mj.nn.linear(W(x), W(w), W(b));
  assert.deepEqual(y.shape, [2, 3, 5]);
  assertClose(evalWide(y)[0], linearRef(x.data, w.data, 5, 4, b.data), WIDE);
  const y0 = mj.nn.linear(W(x), W(w));
  assertClose(evalWide(y0)[0], linearRef(x.data, w.data, 5, 4), WIDE);
  // 1-D input (no leading dims) and f32 evaluation.
  const v = uniform([4], 4);
  const y1 = mj.nn.linear(F(v), F(w), F(b));
  assert.deepEqual(y1.shape, [5]);
  assertClose(await y1.data(), linearRef(v.data, w.data, 5, 4, b.data), F32);
  // A square weight is not symmetric: [out, in] and [in, out] would differ.
  const sq = uniform([4, 4], 5);
  assertClose(evalWide(mj.nn.linear(W(x), W(sq)))[0], linearRef(x.data, sq.data, 4, 4), WIDE);
});

Deno.test("nn.linear: shape errors name the op", () => {
  mj.setBackend("cpu");
  const isErr = (re: RegExp) => (e: unknown) => e instanceof mj.MoejitError && re.test(e.message);
  assert.throws(
    () => mj.nn.linear(mj.zeros([2, 3]), mj.zeros([5, 4])),
    isErr(/^nn\.linear: expected x \[\.\.\., 4\]/),
  );
  assert.throws(() => mj.nn.linear(mj.zeros([2, 4]), mj.zeros([4])), isErr(/^nn\.linear:/));
  assert.throws(() => mj.nn.linear(mj.zeros([2, 4]), mj.zeros([4, 5])), isErr(/^nn\.linear:/));
});

Deno.test("nn.embedding: rows of the table for ids of any shape; gradient scatters into rows", async () => {
  mj.setBackend("cpu");
  const table = uniform([6, 3], 11);
  const ids = [[5, 0, 2], [2, 2, 1]];
  const y = mj.nn.embedding(mj.tensor(ids, undefined, { dtype: "i32" }), W(table));
  assert.deepEqual(y.shape, [2, 3, 3]);
  const want = ids.flat().flatMap((t) => Array.from(table.data.subarray(t * 3, t * 3 + 3)));
  assertClose(evalWide(y)[0], want, WIDE);
  const y0 = mj.nn.embedding(i32([4]).reshape([]), F(table));
  assert.deepEqual(y0.shape, [3]);
  assertClose(await y0.data(), table.data.subarray(12, 15), F32);
  // d/dtable Σ c ⊙ embedding(ids): row t collects the cotangents of every occurrence of t.
  const c = uniform([2, 3, 3], 12);
  const [g] = mj.grad((t: mj.Tensor) =>
    mj.nn.embedding(mj.tensor(ids, undefined, { dtype: "i32" }), t).mul(W(c)).sum()
  )(W(table));
  const expected = new Float64Array(18);
  ids.flat().forEach((t, r) => {
    for (let j = 0; j < 3; j++) expected[t * 3 + j] += c.data[r * 3 + j];
  });
  assertClose(evalWide(g)[0], expected, WIDE);
  // Errors.
  assert.throws(
    () => mj.nn.embedding(mj.tensor([1, 2]), W(table)),
    /nn\.embedding: expected i32 token ids/,
  );
  assert.throws(
    () => mj.nn.embedding(i32([1, 2]), mj.zeros([6])),
    /nn\.embedding: expected a table \[V, d\]/,
  );
});

// ---- norms -------------------------------------------------------------------------------------

Deno.test("nn.rmsNorm and nn.layerNorm match their formulas (eps placement, biased variance)", async () => {
  mj.setBackend("cpu");
  const x = uniform([2, 3, 5], 21, -2, 2), w = uniform([5], 22, 0.5, 1.5), b = uniform([5], 23);
  for (const eps of [1e-5, 0.7]) {
    assertClose(evalWide(mj.nn.rmsNorm(W(x), W(w), eps))[0], rmsNormRef(x.data, w.data, 5, eps), {
      ...WIDE,
      msg: `rms eps ${eps}`,
    });
    assertClose(
      evalWide(mj.nn.layerNorm(W(x), W(w), W(b), eps))[0],
      layerNormRef(x.data, w.data, 5, eps, b.data),
      { ...WIDE, msg: `ln eps ${eps}` },
    );
    assertClose(
      evalWide(mj.nn.layerNorm(W(x), W(w), undefined, eps))[0],
      layerNormRef(x.data, w.data, 5, eps),
      { ...WIDE, msg: `ln (no bias) eps ${eps}` },
    );
  }
  // Default eps is 1e-5: a tiny input tells 1e-5 apart from, say, 1e-6 or 0.
  const tiny = { data: x.data.map((v) => v * 1e-3), shape: x.shape };
  assertClose(
    evalWide(mj.nn.rmsNorm(W(tiny), W(w)))[0],
    rmsNormRef(tiny.data, w.data, 5, 1e-5),
    WIDE,
  );
  assertClose(
    evalWide(mj.nn.layerNorm(W(tiny), W(w)))[0],
    layerNormRef(tiny.data, w.data, 5, 1e-5),
    WIDE,
  );
  // f32 on the interpreter.
  assertClose(await mj.nn.rmsNorm(F(x), F(w)).data(), rmsNormRef(x.data, w.data, 5, 1e-5), F32);
  assertClose(
    await mj.nn.layerNorm(F(x), F(w), F(b)).data(),
    layerNormRef(x.data, w.data, 5, 1e-5, b.data),
    F32,
  );
});

Deno.test("nn.norm dispatches on kind and passes eps and the bias through", () => {
  mj.setBackend("cpu");
  const x = uniform([3, 4], 31, -2, 2), w = uniform([4], 32, 0.5, 1.5), b = uniform([4], 33);
  const eps = 0.3;
  assertClose(
    evalWide(mj.nn.norm(W(x), { weight: W(w), bias: W(b) }, "layernorm", eps))[0],
    layerNormRef(x.data, w.data, 4, eps, b.data),
    WIDE,
  );
  assertClose(
    evalWide(mj.nn.norm(W(x), { weight: W(w) }, "layernorm", eps))[0],
    layerNormRef(x.data, w.data, 4, eps),
    WIDE,
  );
  assertClose(
    evalWide(mj.nn.norm(W(x), { weight: W(w) }, "rmsnorm", eps))[0],
    rmsNormRef(x.data, w.data, 4, eps),
    WIDE,
  );
});

// ---- RoPE ----------------------------------------------------------------------------------------

Deno.test("nn.rope: the Hugging Face rotate_half formula with inv_freq = θ^(−2i/Dh)", async () => {
  mj.setBackend("cpu");
  for (
    const [shape, theta] of [[[1, 2, 5, 6], 10000], [[2, 1, 7, 8], 100], [[1, 1, 4, 2], 10000]] as [
      number[],
      number,
    ][]
  ) {
    const x = uniform(shape, 41 + shape[3], -2, 2);
    const y = theta === 10000 ? mj.nn.rope(W(x)) : mj.nn.rope(W(x), theta);
    assert.deepEqual(y.shape, shape);
    assertClose(evalWide(y)[0], ropeRef(x.data, shape, theta), {
      ...ROPE,
      msg: `${shape} θ=${theta}`,
    });
    assertClose(await mj.nn.rope(F(x), theta).data(), ropeRef(x.data, shape, theta), F32);
  }
  // Position 0 is the identity; position p rotates pair (i, i + Dh/2) by p·θ^(−2i/Dh).
  const e = new Float64Array(3 * 4);
  for (let s = 0; s < 3; s++) e[s * 4 + 1] = 1; // unit vector along pair index 1 (first half)
  const y = evalWide(mj.nn.rope(wideTensor(e, [1, 1, 3, 4]), 10000))[0];
  const a = (p: number) => p * Math.pow(10000, -2 / 4);
  // x1 = 1 (i = 1), x2 = 0: out_i = cos, out_{i+half} = sin.
  assertClose(y, [
    0,
    1,
    0,
    0,
    0,
    Math.cos(a(1)),
    0,
    Math.sin(a(1)),
    0,
    Math.cos(a(2)),
    0,
    Math.sin(a(2)),
  ], ROPE);
});

Deno.test("nn.rope: q·k after RoPE depends only on the relative position; norms are kept", () => {
  mj.setBackend("cpu");
  const S = 12, Dh = 8;
  const q = uniform([Dh], 51), k = uniform([Dh], 52);
  // Every position holds the same q (resp. k): after rope, row i is q at position i.
  const rep = (v: Input) =>
    wideTensor(Array.from({ length: S }, () => Array.from(v.data)).flat(), [1, 1, S, Dh]);
  const [rq, rk] = evalWide(mj.nn.rope(rep(q)), mj.nn.rope(rep(k)));
  const dot = (i: number, j: number) => {
    let s = 0;
    for (let c = 0; c < Dh; c++) s += rq[i * Dh + c] * rk[j * Dh + c];
    return s;
  };
  const byOffset = new Map<number, number>();
  for (let i = 0; i < S; i++) {
    for (let j = 0; j < S; j++) {
      const base = byOffset.get(i - j);
      if (base === undefined) byOffset.set(i - j, dot(i, j));
      else assertClose([dot(i, j)], [base], { ...ROPE, msg: `q at ${i}, k at ${j}` });
    }
  }
  // …and it really does depend on the offset (the rotation is not trivial).
  const vals = [...byOffset.values()];
  assert.ok(Math.max(...vals) - Math.min(...vals) > 0.1, `dot products ${vals}`);
  // Rotations keep each vector's norm.
  const n2 = (a: Float64Array, i: number) =>
    a.subarray(i * Dh, (i + 1) * Dh).reduce((s, v) => s + v * v, 0);
  for (let i = 0; i < S; i++) assertClose([n2(rq, i)], [n2(rq, 0)], ROPE);
  // The reference itself satisfies the same identity (guards the test's host formula).
  assertClose([
    ropeVec(q.data, 7, 10000).reduce((s, v, c) => s + v * ropeVec(k.data, 3, 10000)[c], 0),
  ], [
    ropeVec(q.data, 5, 10000).reduce((s, v, c) => s + v * ropeVec(k.data, 1, 10000)[c], 0),
  ], { rtol: 1e-12, atol: 1e-12 });
});

Deno.test("nn.rope: odd head size or wrong rank is an error", () => {
  mj.setBackend("cpu");
  assert.throws(
    () => mj.nn.rope(mj.zeros([1, 1, 3, 5])),
    (e) =>
      e instanceof mj.MoejitError &&
      /nn\.rope: expected \[\.\.\., S, Dh\] \(e\.g\. \[B, H, S, Dh\]\) with an even Dh/.test(
        e.message,
      ),
  );
  assert.throws(() => mj.nn.rope(mj.zeros([4])), /nn\.rope/);
  // Any leading dims: [S, Dh] and [N, B, H, S, Dh] rotate like [B, H, S, Dh].
  assert.deepEqual(mj.nn.rope(mj.zeros([3, 4])).shape, [3, 4]);
});

// ---- attention ---------------------------------------------------------------------------------

Deno.test("nn.attention: softmax(q·kᵀ/√Dh)·v, causal and not; the default is causal", async () => {
  mj.setBackend("cpu");
  const sh = [2, 2, 4, 6];
  const q = uniform(sh, 61, -1.5, 1.5), k = uniform(sh, 62, -1.5, 1.5), v = uniform(sh, 63);
  for (const causal of [true, false]) {
    const y = mj.nn.attention(W(q), W(k), W(v), { causal });
    assert.deepEqual(y.shape, sh);
    assertClose(evalWide(y)[0], attentionRef(q.data, k.data, v.data, 4, 4, 4, 6, causal), {
      ...WIDE,
      msg: `causal ${causal}`,
    });
    assertClose(
      await mj.nn.attention(F(q), F(k), F(v), { causal }).data(),
      attentionRef(q.data, k.data, v.data, 4, 4, 4, 6, causal),
      F32,
    );
  }
  // Without options the mask is on (the code's default; see the report about the doc comment).
  assertClose(
    evalWide(mj.nn.attention(W(q), W(k), W(v)))[0],
    attentionRef(q.data, k.data, v.data, 4, 4, 4, 6, true),
    WIDE,
  );
  // Causal: the first query sees only the first key, so its output is v[0].
  const y = evalWide(mj.nn.attention(W(q), W(k), W(v), { causal: true }))[0];
  assertClose(y.subarray(0, 6), v.data.subarray(0, 6), WIDE);
  // Non-causal with different query and key lengths (cross-attention), 3-D inputs.
  const q2 = uniform([2, 3, 4], 64), k2 = uniform([2, 5, 4], 65), v2 = uniform([2, 5, 4], 66);
  const y2 = mj.nn.attention(W(q2), W(k2), W(v2), { causal: false });
  assert.deepEqual(y2.shape, [2, 3, 4]);
  assertClose(evalWide(y2)[0], attentionRef(q2.data, k2.data, v2.data, 2, 3, 5, 4, false), WIDE);
});

Deno.test("nn.selfAttention: heads, RoPE, causal mask and the four [out, in] projections", async () => {
  mj.setBackend("cpu");
  const B = 2, S = 4, d = 8, H = 2;
  const x = uniform([B, S, d], 71, -1.5, 1.5);
  const p = {
    q: uniform([d, d], 72),
    k: uniform([d, d], 73),
    v: uniform([d, d], 74),
    o: uniform([d, d], 75),
  };
  const ref = (theta: number) =>
    selfAttentionRef(
      x.data,
      { q: p.q.data, k: p.k.data, v: p.v.data, o: p.o.data },
      B,
      S,
      d,
      H,
      theta,
    );
  for (const theta of [10000, 50]) {
    const y = mj.nn.selfAttention(W(x), { q: W(p.q), k: W(p.k), v: W(p.v), o: W(p.o) }, H, theta);
    assert.deepEqual(y.shape, [B, S, d]);
    assertClose(evalWide(y)[0], ref(theta), { ...ROPE, msg: `θ=${theta}` });
  }
  const yf = mj.nn.selfAttention(F(x), { q: F(p.q), k: F(p.k), v: F(p.v), o: F(p.o) }, H, 10000);
  assertClose(await yf.data(), ref(10000), F32);
  // One head of size d gives a different answer than two (the head split is real).
  const one = evalWide(
    mj.nn.selfAttention(W(x), { q: W(p.q), k: W(p.k), v: W(p.v), o: W(p.o) }, 1, 10000),
  )[0];
  assertClose(
    one,
    selfAttentionRef(
      x.data,
      { q: p.q.data, k: p.k.data, v: p.v.data, o: p.o.data },
      B,
      S,
      d,
      1,
      10000,
    ),
    ROPE,
  );
  assert.ok(one.some((val, i) => Math.abs(val - ref(10000)[i]) > 1e-3));
});

// ---- MLP and cross-entropy -----------------------------------------------------------------------

Deno.test("nn.mlp: swiglu, gelu (erf) and relu", async () => {
  mj.setBackend("cpu");
  const d = 4, f = 6;
  const x = uniform([2, 3, d], 81, -2, 2);
  const p = { gate: uniform([f, d], 82), up: uniform([f, d], 83), down: uniform([d, f], 84) };
  for (const act of ["swiglu", "gelu", "relu"] as const) {
    const tp = act === "swiglu"
      ? { gate: W(p.gate), up: W(p.up), down: W(p.down) }
      : { up: W(p.up), down: W(p.down) };
    const y = mj.nn.mlp(W(x), tp, act);
    assert.deepEqual(y.shape, [2, 3, d]);
    const want = mlpRef(x.data, { gate: p.gate.data, up: p.up.data, down: p.down.data }, d, f, act);
    // The interpreter's erf is a polynomial approximation (f32-accurate).
    assertClose(
      evalWide(y)[0],
      want,
      act === "gelu" ? { rtol: 1e-6, atol: 1e-7 } : { ...WIDE, msg: act },
    );
    const fp = act === "swiglu"
      ? { gate: F(p.gate), up: F(p.up), down: F(p.down) }
      : { up: F(p.up), down: F(p.down) };
    assertClose(await mj.nn.mlp(F(x), fp, act).data(), want, { ...F32, msg: `${act} f32` });
  }
});

Deno.test("nn.crossEntropy: mean over rows of logsumexp − logit[target]", async () => {
  mj.setBackend("cpu");
  const z = uniform([5, 7], 91, -3, 3), t = [0, 6, 3, 3, 1];
  const ce = mj.nn.crossEntropy(W(z), i32(t));
  assert.deepEqual(ce.shape, []);
  assertClose(evalWide(ce)[0], [crossEntropyRef(z.data, t, 7)], WIDE);
  assertClose(await mj.nn.crossEntropy(F(z), i32(t)).data(), [crossEntropyRef(z.data, t, 7)], F32);
  // Large logits stay finite (log-sum-exp is stabilised).
  const big = { data: z.data.map((v) => v * 100), shape: z.shape };
  assertClose(evalWide(mj.nn.crossEntropy(W(big), i32(t)))[0], [crossEntropyRef(big.data, t, 7)], {
    rtol: 1e-9,
  });
  // Uniform logits: log V.
  assertClose(
    await mj.nn.crossEntropy(mj.zeros([3, 7]), i32([0, 1, 2])).data(),
    [Math.log(7)],
    F32,
  );
  const isErr = (e: unknown) =>
    e instanceof mj.MoejitError &&
    /^nn\.crossEntropy: expected logits \[N, V\] and i32 targets \[N\]/.test(e.message);
  assert.throws(() => mj.nn.crossEntropy(W(z), mj.tensor(t)), isErr);
  assert.throws(() => mj.nn.crossEntropy(W(z), i32([0, 1])), isErr);
  assert.throws(() => mj.nn.crossEntropy(mj.zeros([5, 1, 7]), i32(t)), isErr);
  assert.throws(() => mj.nn.crossEntropy(W(z), i32(t, [5, 1])), isErr);
});

// ---- finite differences ---------------------------------------------------------------------------

Deno.test("fd: linear (x, w, b), rmsNorm (x, w), layerNorm (x, w, b)", async (t) => {
  mj.setBackend("cpu");
  const x = uniform([2, 3, 4], 101, -2, 2), w = uniform([5, 4], 102), b = uniform([5], 103);
  await t.step("linear with bias", () => fd((x, w, b) => mj.nn.linear(x, w, b), [x, w, b]));
  await t.step("linear without bias", () => fd((x, w) => mj.nn.linear(x, w), [x, w]));
  const nw = uniform([4], 104, 0.5, 1.5), nb = uniform([4], 105);
  await t.step("rmsNorm", () => fd((x, w) => mj.nn.rmsNorm(x, w), [x, nw]));
  await t.step("rmsNorm with a large eps", () => fd((x, w) => mj.nn.rmsNorm(x, w, 0.5), [x, nw]));
  await t.step("layerNorm", () => fd((x, w, b) => mj.nn.layerNorm(x, w, b), [x, nw, nb]));
  await t.step("layerNorm without bias", () => fd((x, w) => mj.nn.layerNorm(x, w), [x, nw]));
});

Deno.test("fd: rope, attention (causal and not), selfAttention w.r.t. x and all projections", async (t) => {
  mj.setBackend("cpu");
  const sh = [2, 2, 3, 4];
  await t.step("rope", () => fd((x) => mj.nn.rope(x), [uniform(sh, 111, -2, 2)]));
  await t.step("rope with θ = 7", () => fd((x) => mj.nn.rope(x, 7), [uniform(sh, 112, -2, 2)]));
  const q = uniform(sh, 113, -1.5, 1.5), k = uniform(sh, 114, -1.5, 1.5), v = uniform(sh, 115);
  for (const causal of [true, false]) {
    await t.step(
      `attention causal=${causal}`,
      () => fd((q, k, v) => mj.nn.attention(q, k, v, { causal }), [q, k, v]),
    );
  }
  const B = 2, S = 3, d = 8;
  const x = uniform([B, S, d], 116, -1.5, 1.5);
  const ws = [117, 118, 119, 120].map((s) => uniform([d, d], s, -0.8, 0.8));
  await t.step(
    "selfAttention (x, q, k, v, o)",
    () => fd((x, q, k, v, o) => mj.nn.selfAttention(x, { q, k, v, o }, 2, 10000), [x, ...ws]),
  );
});

Deno.test("fd: mlp (swiglu, gelu, relu) and crossEntropy w.r.t. logits", async (t) => {
  mj.setBackend("cpu");
  const d = 4, f = 5;
  const x = uniform([2, 3, d], 131, -2, 2);
  const gate = uniform([f, d], 132), up = uniform([f, d], 133), down = uniform([d, f], 134);
  await t.step(
    "swiglu (x, gate, up, down)",
    () =>
      fd((x, g, u, dn) => mj.nn.mlp(x, { gate: g, up: u, down: dn }, "swiglu"), [
        x,
        gate,
        up,
        down,
      ]),
  );
  await t.step(
    "gelu (x, up, down)",
    () =>
      fd((x, u, dn) => mj.nn.mlp(x, { up: u, down: dn }, "gelu"), [x, up, down], { rtol: 1e-4 }),
  );
  await t.step("relu (x, up, down), pre-activations away from 0", () => {
    const pre = linearRef(x.data, up.data, f, d);
    assert.ok(pre.every((v) => Math.abs(v) > 1e-3), "kink out of reach of the finite difference");
    assert.ok(pre.some((v) => v < 0) && pre.some((v) => v > 0), "both sides of the kink");
    fd((x, u, dn) => mj.nn.mlp(x, { up: u, down: dn }, "relu"), [x, up, down]);
  });
  await t.step("crossEntropy", () => {
    checkGradFD((z) => mj.nn.crossEntropy(z, i32([2, 0, 4, 4])), [uniform([4, 6], 135, -3, 3)], {
      rtol: 1e-6,
      atol: 1e-9,
    });
  });
  await t.step("crossEntropy gradient is (softmax − onehot)/N", () => {
    const z = uniform([3, 4], 136, -2, 2), tg = [3, 0, 3];
    const [g] = mj.grad((z: mj.Tensor) => mj.nn.crossEntropy(z, i32(tg)))(W(z));
    const want: number[] = [];
    for (let r = 0; r < 3; r++) {
      const row = Array.from(z.data.subarray(r * 4, r * 4 + 4));
      const m = Math.max(...row),
        e = row.map((v) => Math.exp(v - m)),
        s = e.reduce((a, b) => a + b);
      e.forEach((v, j) => want.push((v / s - (j === tg[r] ? 1 : 0)) / 3));
    }
    assertClose(evalWide(g)[0], want, WIDE);
  });
});

// ---- compiled backends ---------------------------------------------------------------------------

gpuTest("nn layers agree with the host references (f32), fused and unfused", async () => {
  mj.setBackend(backend());
  try {
    await fusedAndUnfused(async () => {
      const B = 1, S = 4, d = 8, H = 2, f = 6, V = 5;
      const x = uniform([B, S, d], 141, -1.5, 1.5);
      const w = uniform([d, d], 142), nw = uniform([d], 143, 0.5, 1.5), nb = uniform([d], 144);
      const p = { q: uniform([d, d], 145), k: uniform([d, d], 146), v: uniform([d, d], 147), o: w };
      const mp = {
        gate: uniform([f, d], 148),
        up: uniform([f, d], 149),
        down: uniform([d, f], 150),
      };
      const z = uniform([S, V], 151, -2, 2), tg = [1, 4, 0, 4];
      const sh = [B, H, S, d / H];
      const ak = uniform(sh, 152), av = uniform(sh, 153);
      const out = await mj.realize({
        lin: mj.nn.linear(F(x), F(w), F(nw)),
        rms: mj.nn.rmsNorm(F(x), F(nw)),
        ln: mj.nn.layerNorm(F(x), F(nw), F(nb)),
        rope: mj.nn.rope(F(x).reshape(sh)),
        attn: mj.nn.attention(F(x).reshape(sh), F(ak), F(av), { causal: true }),
        sa: mj.nn.selfAttention(F(x), { q: F(p.q), k: F(p.k), v: F(p.v), o: F(p.o) }, H, 10000),
        mlp: mj.nn.mlp(F(x), { gate: F(mp.gate), up: F(mp.up), down: F(mp.down) }, "swiglu"),
        ce: mj.nn.crossEntropy(F(z), i32(tg)),
      });
      const tol = { rtol: 1e-4, atol: 1e-5 };
      assertClose(await out.lin.data(), linearRef(x.data, w.data, d, d, nw.data), {
        ...tol,
        msg: "linear",
      });
      assertClose(await out.rms.data(), rmsNormRef(x.data, nw.data, d, 1e-5), {
        ...tol,
        msg: "rmsNorm",
      });
      assertClose(await out.ln.data(), layerNormRef(x.data, nw.data, d, 1e-5, nb.data), {
        ...tol,
        msg: "layerNorm",
      });
      assertClose(await out.rope.data(), ropeRef(x.data, sh, 10000), { ...tol, msg: "rope" });
      assertClose(
        await out.attn.data(),
        attentionRef(x.data, ak.data, av.data, H, S, S, d / H, true),
        { ...tol, msg: "attention" },
      );
      assertClose(
        await out.sa.data(),
        selfAttentionRef(
          x.data,
          { q: p.q.data, k: p.k.data, v: p.v.data, o: p.o.data },
          B,
          S,
          d,
          H,
          10000,
        ),
        { ...tol, msg: "selfAttention" },
      );
      assertClose(
        await out.mlp.data(),
        mlpRef(x.data, { gate: mp.gate.data, up: mp.up.data, down: mp.down.data }, d, f, "swiglu"),
        { ...tol, msg: "mlp" },
      );
      assertClose(await out.ce.data(), [crossEntropyRef(z.data, tg, V)], {
        ...tol,
        msg: "crossEntropy",
      });
    });
  } finally {
    mj.setBackend("cpu");
  }
});
