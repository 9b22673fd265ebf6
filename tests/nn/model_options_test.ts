/**
 * Model settings added with the registries: a model without position encoding (rope "none"),
 * a router with a learned bias, RoPE's base validated, estimator options in configs and on the
 * command line, and the deprecated attention-kernel option names.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose } from "../helpers.ts";
import { parseCli } from "../../src/train/cli.ts";

const small = {
  vocabSize: 16,
  dModel: 8,
  nLayers: 1,
  nHeads: 2,
  maxSeqLen: 8,
  dFf: 8,
  experts: 4,
  estimator: "topk",
  balance: [],
} as const;
const isErr = (op: string, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof mj.MoejitError, `expected a MoejitError, got ${e}`);
  assert.equal(e.op, op);
  assert.match(e.message, re);
  return true;
};
const tokens = mj.tensor([[1, 5, 2, 7, 3]], [1, 5], { dtype: "i32" });

Deno.test("rope none: attention sees no positions — the layer equals attention over unrotated heads", async () => {
  const c = mj.nn.modelConfig({ ...small, rope: "none" });
  const p = mj.nn.initParams(c, 1);
  const x = mj.randn([1, 5, 8], { seed: 2 });
  const a = p.layers[0].attn;
  const y = mj.nn.selfAttention(x, a, 2, c.ropeTheta, { rope: "none" });
  const heads = (w: mj.Tensor) => mj.nn.linear(x, w).reshape([1, 5, 2, 4]).permute([0, 2, 1, 3]);
  const o = mj.nn.attention(heads(a.q), heads(a.k), heads(a.v)).permute([0, 2, 1, 3]).reshape([
    1,
    5,
    8,
  ]);
  assertClose(await y.data(), await mj.nn.linear(o, a.o).data(), { rtol: 1e-5, atol: 1e-6 });
  const withRope = mj.nn.forward(p, tokens, mj.nn.modelConfig({ ...small }), { training: false });
  const without = mj.nn.forward(p, tokens, c, { training: false });
  const [w, wo] = [await withRope.logits.data(), await without.logits.data()];
  // The first token attends to itself only, so its logits agree; later ones differ.
  assertClose(wo.slice(0, 16), w.slice(0, 16), { rtol: 1e-5, atol: 1e-6 });
  assert.ok(wo.slice(16).some((v, i) => Math.abs(v - w[16 + i]) > 1e-6), "positions matter");
  // An odd head size is fine without RoPE; no Hugging Face family drops the position encoding.
  mj.nn.modelConfig({ ...small, dModel: 6, nHeads: 2, rope: "none" });
  assert.match(mj.io.hfMatch(c).line, /rope "none": the family's attention applies rotary/);
  assert.match(mj.io.megatronArgs(c), /--position-embedding-type none/);
  assert.match(mj.io.modelCard(c), /no position encoding/);
});

Deno.test("ropeTheta must be a positive finite number (0 made every logit NaN)", () => {
  for (const ropeTheta of [0, -1, Infinity, NaN]) {
    assert.throws(
      () => mj.nn.modelConfig({ ropeTheta }),
      isErr("modelConfig", /ropeTheta must be a positive finite number/),
    );
  }
  assert.throws(
    () => mj.nn.rope(mj.zeros([1, 2, 3, 4]), 0),
    isErr("nn.rope", /ropeTheta must be a positive finite number \(RoPE's base\), got 0/),
  );
  assert.throws(
    () => mj.nn.modelConfig({ rope: "alibi" as "none" }),
    /rope must be one of "rotateHalf", "none", got "alibi"/,
  );
});

Deno.test("routerBias: a learned bias on the router's logits, zero at first, exported under gate.bias outside the HF families", async () => {
  const c = mj.nn.modelConfig({ ...small, routerBias: true });
  const shapes = Object.fromEntries(mj.nn.parameterShapes(c));
  assert.deepEqual(shapes["layers.0.moe.routerBias"], [4]);
  const p = mj.nn.initParams(c, 3);
  assert.deepEqual(Array.from(await p.layers[0].moe!.routerBias!.data()), [0, 0, 0, 0]);
  // The layer adds it to the logits: the routing equals a route over x·routerᵀ + b.
  const x = mj.randn([6, 8], { seed: 4 });
  const moe = { ...p.layers[0].moe!, routerBias: mj.tensor([3, 0, 0, -3]) };
  const l = mj.moe.layer(x, moe, { topK: 2 });
  const r = mj.moe.route(x.matmul(moe.router.transpose()).add(moe.routerBias), { topK: 2 });
  assert.deepEqual(Array.from(await l.indices.data()), Array.from(await r.indices.data()));
  assert.ok(Array.from(await l.indices.data()).filter((_, i) => i % 2 === 0).every((e) => e === 0));
  // It trains: the gradient reaches it.
  const [g] = mj.grad((b: mj.Tensor) =>
    mj.moe.layer(x, { ...moe, routerBias: b }, { topK: 2 }).y.square().sum()
  )(moe.routerBias);
  assert.ok(Array.from(await g.data()).some((v) => v !== 0));
  const names = mj.io.hfTensorShapes(c).map(([n]) => n);
  assert.ok(names.includes("model.layers.0.block_sparse_moe.gate.bias"));
  const m = mj.nn.modelConfig({ ...small, routerBias: true, normalizeTopK: true });
  assert.equal(mj.io.hfMatch(m).modelType, "moejit");
  assert.match(mj.io.hfMatch(m).line, /routerBias true: the family's router .* has no bias/);
  assert.equal(mj.io.hfConfigJson(m).router_bias, true);
  assert.match(mj.io.megatronArgs(m), /NOT IN MEGATRON-CORE: a router bias\./);
  assert.throws(
    () => mj.moe.layer(x, { ...moe, routerBias: mj.zeros([3]) }, { topK: 2 }),
    /params\.routerBias must be f32\[4\]/,
  );
});

Deno.test("estimator options in a config and on the command line reach the layer", () => {
  const c = mj.nn.modelConfig({ ...small, estimator: "default", estimatorOptions: { beta: 0.5 } });
  assert.deepEqual(mj.nn.estimatorSettings(c), {
    beta: 0.5,
    ema: "mean",
    mode: "forward",
    evalDefaults: false,
  });
  assert.throws(
    () => mj.nn.modelConfig({ ...small, estimator: "default", estimatorOptions: { bta: 1 } }),
    /unknown option "estimatorOptions\.bta" of estimator "default"/,
  );
  assert.throws(
    () => mj.nn.modelConfig({ ...small, estimator: "default", estimatorOptions: { beta: 3 } }),
    /estimatorOptions\.beta must be a number in \[0, 1\], got 3/,
  );
  // An option that is a config field of its own lives in the field.
  const eps = mj.nn.modelConfig({ estimator: "sparsemixer", estimatorOptions: { jitterEps: 0.2 } });
  assert.equal(eps.jitterEps, 0.2);
  assert.deepEqual(eps.estimatorOptions, {});
  const preset = { script: "x", description: "x", model: { estimator: "sparsemixer" } };
  const { options } = parseCli(
    [
      "--estimator",
      "default:beta=0.99:evalDefaults=true",
      "--rope",
      "none",
      "--router-bias",
      "true",
    ],
    preset,
  );
  assert.equal(options.model!.estimator, "default");
  assert.deepEqual(options.model!.estimatorOptions, { beta: 0.99, evalDefaults: true });
  assert.equal(options.model!.rope, "none");
  assert.equal(options.model!.routerBias, true);
  mj.nn.modelConfig(options.model);
  assert.throws(
    () => parseCli(["--estimator", "default:beta"], preset),
    /cannot read "default:beta"/,
  );
  assert.throws(
    () => parseCli(["--estimator", "default:bta=1"], preset),
    /--estimator: unknown option "bta" of estimator "default"; expected one of beta, ema, mode/,
  );
  const cliEps = parseCli(["--estimator", "sparsemixer:jitterEps=0.05"], preset).options.model;
  assert.equal(mj.nn.modelConfig(cliEps).jitterEps, 0.05);
  // Two layers with different keys: the estimator's options select the graph.
  const p = mj.nn.initParams(c, 0);
  const a = mj.nn.forward(p, tokens, c).logits.node.key;
  const b = mj.nn.forward(p, tokens, { ...c, estimatorOptions: { beta: 0.7 } }).logits.node.key;
  assert.notEqual(a, b);
});

Deno.test("fusedAttention: the one name for the attention kernel choice; the old ones still work, with a warning", () => {
  const c = mj.nn.modelConfig({ ...small });
  const p = mj.nn.initParams(c, 0);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    const now = mj.nn.forward(p, tokens, c, { fusedAttention: false }).logits.node.key;
    const fused = mj.nn.forward(p, tokens, c, {}).logits.node.key;
    assert.notEqual(now, fused, "the choice changes the graph");
    assert.equal(
      mj.nn.forward(p, tokens, c, { attentionKernel: { fused: false } }).logits.node.key,
      now,
    );
    const moa = mj.nn.modelConfig({ ...small, attnExperts: 2 });
    const pm = mj.nn.initParams(moa, 0);
    const x = mj.randn([1, 5, 8], { seed: 1 });
    const y1 = mj.nn.mixtureOfAttention(x, pm.layers[0].attn as mj.nn.MoaParams, {
      nHeads: 2,
      fusedAttention: false,
    }).y.node.key;
    const y2 = mj.nn.mixtureOfAttention(x, pm.layers[0].attn as mj.nn.MoaParams, {
      nHeads: 2,
      kernel: { fused: false },
    }).y.node.key;
    assert.equal(y1, y2);
  } finally {
    console.warn = warn;
  }
  assert.equal(warnings.filter((w) => /option attentionKernel is deprecated/.test(w)).length, 1);
  assert.equal(warnings.filter((w) => /option kernel is deprecated/.test(w)).length, 1);
});

Deno.test("defaultMoe, the old field for Default MoE's options, moves to estimatorOptions (one warning); the filler older configs carry is dropped", () => {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    // What configs saved between the two carried for every estimator: all defaults, no warning.
    const filler = { beta: 0.9, ema: "mean", mode: "forward", evalDefaults: false } as const;
    const grin = mj.nn.modelConfig({ estimator: "sparsemixer", defaultMoe: filler });
    assert.equal("defaultMoe" in grin, false);
    assert.deepEqual(grin.estimatorOptions, {});
    assert.equal(warnings.length, 0, warnings.join("\n"));
    const d = mj.nn.modelConfig({ ...small, estimator: "default", defaultMoe: { beta: 0.5 } });
    assert.deepEqual(d.estimatorOptions, { beta: 0.5 });
    assert.deepEqual(
      mj.nn.modelConfig({ ...small, estimator: "default", estimatorOptions: { beta: 0.5 } }),
      d,
    );
    mj.nn.modelConfig({ ...small, estimator: "default", defaultMoe: { beta: 0.6 } });
    assert.throws(
      () =>
        mj.nn.modelConfig({
          ...small,
          estimator: "default",
          defaultMoe: { beta: 0.5 },
          estimatorOptions: { beta: 0.5 },
        }),
      /give Default MoE's options once, as estimatorOptions/,
    );
  } finally {
    console.warn = warn;
  }
  assert.equal(warnings.filter((w) => /field defaultMoe is deprecated/.test(w)).length, 1);
});
