/**
 * Autoregressive generation: greedy decoding against a host argmax loop over mj.nn.forward on
 * the growing text (and on its last maxSeqLen tokens once the window slides), seeded sampling,
 * the temperature limits, the same tokens on the interpreter and each compiled backend, MoE state,
 * callbacks and errors.
 */
import * as mj from "../../mod.ts";
import { assert, prng, SLOW } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import { generate } from "../../src/nn/generate.ts";
import { argmax, softmax, TINY_MOE, tokenTensor } from "./reference.ts";

const isErr = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof mj.MoejitError, `expected a MoejitError, got ${e}`);
  assert.equal(e.op, "nn.generate");
  assert.match(e.message, re);
  return true;
};

/** The shrunk MoE model, with weights large enough that greedy text does not just repeat. */
const MOE = mj.nn.modelConfig({
  ...TINY_MOE,
  initStd: 0.5,
  tiedEmbeddings: false,
});
const moeParams = await mj.realize(mj.nn.initParams(MOE, 0));

/** A tiny dense model (cheap per token). */
const TINY = mj.nn.modelConfig({
  ffn: "dense",
  nLayers: 1,
  dModel: 4,
  nHeads: 2,
  dFf: 4,
  vocabSize: 5,
  maxSeqLen: 2,
  initStd: 1,
});
const tinyParams = await mj.realize(mj.nn.initParams(TINY, 3));

/** Last-position logits of forward on the last maxSeqLen tokens of `text` (host numbers). */
async function lastLogits(
  params: mj.nn.Params,
  c: mj.nn.ModelConfig,
  text: number[],
  state?: mj.moe.LayerState[],
): Promise<number[]> {
  const ctx = text.slice(-c.maxSeqLen);
  const { logits } = mj.nn.forward(params, tokenTensor([ctx]), c, {
    training: false,
    ...(state ? { state } : {}),
  });
  const all = await logits.data();
  return Array.from(all.subarray((ctx.length - 1) * c.vocabSize));
}

/** Greedy decoding on the host: argmax of forward's last logits, appended, repeated. */
async function argmaxLoop(
  params: mj.nn.Params,
  c: mj.nn.ModelConfig,
  prompt: number[],
  n: number,
  state?: mj.moe.LayerState[],
): Promise<number[]> {
  const text = [...prompt], out: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = argmax(await lastLogits(params, c, text, state));
    text.push(id);
    out.push(id);
  }
  return out;
}

// ---- greedy ---------------------------------------------------------------------------------------

Deno.test("generate (greedy): equals the argmax loop over forward, before and after the window slides", async () => {
  mj.setBackend("cpu");
  // 3 + 10 tokens: the last 5 are predicted from a full window of the most recent 8.
  const prompt = [1, 2, 3];
  const got = await generate(moeParams, MOE, prompt, { maxNewTokens: 10, temperature: 0 });
  assert.equal(got.length, 10);
  assert.deepEqual(got, await argmaxLoop(moeParams, MOE, prompt, 10));
  assert.ok(new Set(got).size >= 4, `a non-trivial continuation: ${got}`);
  // The window really slides: forward on the whole text (13 > maxSeqLen tokens) is not allowed.
  const text = [...prompt, ...got];
  assert.throws(() => mj.nn.forward(moeParams, tokenTensor([text]), MOE), /maxSeqLen/);
  // A prompt longer than the window: only its last maxSeqLen tokens matter.
  const long = [5, 9, 1, 30, 2, 2, 7, 11, 4, 0, 19];
  const fromLong = await generate(moeParams, MOE, long, { maxNewTokens: 4, temperature: 0 });
  assert.deepEqual(fromLong, await argmaxLoop(moeParams, MOE, long, 4));
  assert.deepEqual(
    fromLong,
    await generate(moeParams, MOE, long.slice(-8), { maxNewTokens: 4, temperature: 0 }),
  );
  // A one-token prompt.
  assert.deepEqual(
    await generate(moeParams, MOE, [7], { maxNewTokens: 3, temperature: 0 }),
    await argmaxLoop(moeParams, MOE, [7], 3),
  );
});

Deno.test("generate (greedy, dense models): equals the argmax loop; maxSeqLen 2 slides every token", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({
    ffn: "dense",
    nLayers: 2,
    dModel: 8,
    nHeads: 2,
    dFf: 8,
    vocabSize: 11,
    maxSeqLen: 6,
    initStd: 0.6,
    block: "parallel",
    norm: "layernorm",
  });
  const p = await mj.realize(mj.nn.initParams(c, 4));
  assert.deepEqual(
    await generate(p, c, [3, 1], { maxNewTokens: 7, temperature: 0 }),
    await argmaxLoop(p, c, [3, 1], 7),
  );
  assert.deepEqual(
    await generate(tinyParams, TINY, [2, 4, 1], { maxNewTokens: 6, temperature: 0 }),
    await argmaxLoop(tinyParams, TINY, [2, 4, 1], 6),
  );
});

gpuTest("generate (greedy and sampled): the same tokens as on the interpreter", async () => {
  try {
    mj.setBackend("cpu");
    const cpu = await generate(moeParams, MOE, [4, 8, 15], { maxNewTokens: 8, temperature: 0 });
    mj.setBackend(backend());
    const params = await mj.realize(mj.nn.initParams(MOE, 0));
    const web = await generate(params, MOE, [4, 8, 15], { maxNewTokens: 8, temperature: 0 });
    assert.deepEqual(web, cpu);
    // Sampling too: the noise is counter-based, so the same seed gives the same text (barring
    // near-ties of logits + noise, which this seed does not have).
    mj.setBackend("cpu");
    const sc = await generate(moeParams, MOE, [4, 8, 15], {
      maxNewTokens: 6,
      temperature: 1,
      seed: 5,
    });
    mj.setBackend(backend());
    assert.deepEqual(
      await generate(params, MOE, [4, 8, 15], { maxNewTokens: 6, temperature: 1, seed: 5 }),
      sc,
    );
  } finally {
    mj.setBackend("cpu");
  }
});

Deno.test("generate (greedy): MoE state is used (loss-free bias steers routing like in forward)", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...MOE, balance: [{ kind: "lossFree" }] });
  // A bias that forces experts 2 and 3 on every token in both layers.
  const state = [0, 1].map(() => ({ lossFreeBias: mj.tensor([0, 0, 2, 2]) }));
  const prompt = [6, 2, 9];
  const withState = await generate(moeParams, c, prompt, {
    maxNewTokens: 6,
    temperature: 0,
    state,
  });
  assert.deepEqual(withState, await argmaxLoop(moeParams, c, prompt, 6, state));
  // The state matters at all (so the comparison above is not vacuous).
  const a = await lastLogits(moeParams, c, prompt, state),
    b = await lastLogits(moeParams, c, prompt);
  assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 1e-3));
});

Deno.test({
  // generate pads its window on the right; with BIP, that is harmless only because inference
  // routes with fixed prices (solving them on the window would let padding change the routing).
  name: "generate (greedy, BIP balancer): padding the window changes nothing",
}, async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...MOE, balance: [{ kind: "bip", iters: 2 }] });
  const params = await mj.realize(mj.nn.initParams(c, 3));
  assert.deepEqual(
    await generate(params, c, [5, 9, 1], { maxNewTokens: 6, temperature: 0 }),
    await argmaxLoop(params, c, [5, 9, 1], 6),
  );
});

// ---- sampling -------------------------------------------------------------------------------------

Deno.test("generate (sampling): deterministic for a seed, different across seeds; default seed 0, T 0.8", async () => {
  mj.setBackend("cpu");
  const run = (opts: Parameters<typeof generate>[3]) =>
    generate(moeParams, MOE, [1, 2, 3], { maxNewTokens: 10, ...opts });
  const a = await run({ temperature: 1.5, seed: 1 });
  assert.deepEqual(await run({ temperature: 1.5, seed: 1 }), a);
  const others = [
    await run({ temperature: 1.5, seed: 2 }),
    await run({ temperature: 1.5, seed: 3 }),
  ];
  for (const o of others) assert.notDeepEqual(o, a);
  assert.notDeepEqual(a, await argmaxLoop(moeParams, MOE, [1, 2, 3], 10), "sampling is not greedy");
  // Defaults: seed 0 and temperature 0.8. Single draws from the tiny model over many seeds
  // tell 0.8 apart from nearby temperatures.
  assert.deepEqual(await run({ temperature: 1.5 }), await run({ temperature: 1.5, seed: 0 }));
  assert.deepEqual(await run({}), await run({ temperature: 0.8, seed: 0 }));
  const draws = async (opts: Parameters<typeof generate>[3]) => {
    const out: number[] = [];
    for (let s = 0; s < 60; s++) {
      out.push(...(await generate(tinyParams, TINY, [2], { maxNewTokens: 1, seed: s, ...opts })));
    }
    return out;
  };
  const at08 = await draws({ temperature: 0.8 });
  assert.deepEqual(await draws({}), at08);
  for (const T of [0.7, 1]) {
    assert.notDeepEqual(await draws({ temperature: T }), at08, `T=${T} differs from 0.8`);
  }
});

Deno.test("generate (sampling): T → 0 is greedy, T → ∞ is close to uniform", async () => {
  mj.setBackend("cpu");
  const prompt = [11, 3];
  const greedy = await argmaxLoop(moeParams, MOE, prompt, 8);
  // Gumbel noise is at most ~17 in f32, so at T = 1e-4 it moves logits by < 2e-3; the gap
  // between the two largest logits along the greedy path is larger than that.
  const text = [...prompt];
  for (const id of greedy) {
    const l = [...(await lastLogits(moeParams, MOE, text))].sort((x, y) => y - x);
    assert.ok(l[0] - l[1] > 5e-3, `gap ${l[0] - l[1]}`);
    text.push(id);
  }
  for (const seed of [0, 1]) {
    assert.deepEqual(
      await generate(moeParams, MOE, prompt, { maxNewTokens: 8, temperature: 1e-4, seed }),
      greedy,
    );
  }
  // At T = 1000 the logits hardly matter: 24 draws from 32 ids are far from repeating.
  const hot = await generate(moeParams, MOE, prompt, {
    maxNewTokens: 24,
    temperature: 1000,
    seed: 9,
  });
  assert.ok(new Set(hot).size >= 12, `${hot}`);
  assert.ok(hot.every((id) => Number.isInteger(id) && id >= 0 && id < 32));
});

Deno.test("generate (sampling): token frequencies follow softmax(logits / T)", async () => {
  mj.setBackend("cpu");
  for (const T of [0.7, 2]) {
    const p = softmax((await lastLogits(tinyParams, TINY, [2])).map((v) => v / T));
    const n = SLOW ? 4000 : 400, counts = new Array(5).fill(0);
    for (let s = 0; s < n; s++) {
      counts[
        (await generate(tinyParams, TINY, [2], {
          maxNewTokens: 1,
          temperature: T,
          seed: 1000 + s,
        }))[0]
      ]++;
    }
    // Pearson χ² with 4 degrees of freedom: P(χ² > 18.5) ≈ 0.001.
    const chi2 = counts.reduce((a, c, i) => a + (c - n * p[i]) ** 2 / (n * p[i]), 0);
    assert.ok(
      chi2 < 18.5,
      `T=${T}: counts ${counts}, expected ${p.map((q) => (q * n).toFixed(1))}, χ² ${chi2}`,
    );
  }
});

// ---- callbacks, defaults and errors -----------------------------------------------------------------

Deno.test("generate: onToken sees every id in order; maxNewTokens 0 and the default of 64", async () => {
  mj.setBackend("cpu");
  const seen: number[] = [];
  const out = await generate(tinyParams, TINY, [1, 2], {
    maxNewTokens: 9,
    temperature: 1,
    seed: 4,
    onToken: (id) => seen.push(id),
  });
  assert.deepEqual(seen, out);
  assert.equal(out.length, 9);
  const none: number[] = [];
  assert.deepEqual(
    await generate(tinyParams, TINY, [1], { maxNewTokens: 0, onToken: (id) => none.push(id) }),
    [],
  );
  assert.deepEqual(none, []);
  const dflt = await generate(tinyParams, TINY, [1], { temperature: 0 });
  assert.equal(dflt.length, 64);
  // The prompt is not modified.
  const prompt = [0, 4];
  await generate(tinyParams, TINY, prompt, { maxNewTokens: 2 });
  assert.deepEqual(prompt, [0, 4]);
});

Deno.test("generate: bad options and prompts are errors naming nn.generate", async () => {
  mj.setBackend("cpu");
  const g = (prompt: number[], opts: Record<string, unknown>) =>
    generate(tinyParams, TINY, prompt, opts as Parameters<typeof generate>[3]);
  const cases: [number[], Record<string, unknown>, RegExp][] = [
    [
      [1],
      { maxTokens: 3 },
      /unknown option "maxTokens"; expected maxNewTokens, temperature, seed, state, onToken/,
    ],
    [[1], { maxNewTokens: -1 }, /maxNewTokens must be a non-negative integer, got -1/],
    [[1], { maxNewTokens: 1.5 }, /maxNewTokens must be a non-negative integer, got 1\.5/],
    [[1], { temperature: -0.5 }, /temperature must be ≥ 0, got -0\.5/],
    [[1], { temperature: NaN }, /temperature must be ≥ 0, got NaN/],
    [[], {}, /the prompt must hold at least one token/],
    [[1, 5], {}, /prompt token 5 is outside the vocabulary \[0, 5\)/],
    [[-1], {}, /prompt token -1 is outside the vocabulary/],
    [[1.5], {}, /prompt token 1\.5 is outside the vocabulary/],
  ];
  for (const [prompt, opts, re] of cases) {
    await assert.rejects(g(prompt, opts), isErr(re), `${prompt} ${JSON.stringify(opts)}`);
  }
});

Deno.test("generate: many prompts from the same sampler stay consistent (cached compiled sampler)", async () => {
  mj.setBackend("cpu");
  // Interleave two configs and greedy/sampled runs: each keeps matching its reference.
  const r = prng(77);
  for (let i = 0; i < 3; i++) {
    const prompt = Array.from({ length: 1 + Math.floor(r() * 4) }, () => Math.floor(r() * 5));
    assert.deepEqual(
      await generate(tinyParams, TINY, prompt, { maxNewTokens: 3, temperature: 0 }),
      await argmaxLoop(tinyParams, TINY, prompt, 3),
    );
    await generate(moeParams, MOE, [prompt[0]], { maxNewTokens: 1, temperature: 1, seed: i });
  }
});
