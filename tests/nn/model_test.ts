/**
 * The language model: configuration and parameter layout, initialisation, the forward pass
 * against a float64 host model (dense, and MoE with top-k routing) including the balancer
 * losses, finite-difference gradients of the whole model's loss, causality, and errors.
 */
import * as mj from "../../mod.ts";
import {
  assert,
  assertClose,
  checkGradFD,
  evalWide,
  fusedAndUnfused,
  prng,
  wideTensor,
} from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import {
  crossEntropyRef,
  type HostParams,
  hostParams,
  modelRef,
  numel,
  tensorParams,
  TINY_DENSE,
  TINY_MOE,
  tokenTensor,
} from "./reference.ts";

const isErr = (op: string, re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof mj.MoejitError, `expected a MoejitError, got ${e}`);
  assert.equal(e.op, op);
  assert.ok(e.message.startsWith(`${op}: `), e.message);
  assert.match(e.message, re);
  return true;
};

/** Random token ids [B][S] below V. */
function randomTokens(B: number, S: number, V: number, seed: number): number[][] {
  const r = prng(seed);
  return Array.from({ length: B }, () => Array.from({ length: S }, () => Math.floor(r() * V)));
}

/**
 * Host parameters from initParams, with norm weights and biases randomised too (so that a norm
 * that ignored its weight or bias would be caught).
 */
function hostModel(c: mj.nn.ModelConfig, seed: number): HostParams {
  const P = hostParams(mj.nn.initParams(c, seed));
  const r = prng(seed + 1000);
  for (const [path, v] of P) {
    if (path.endsWith(".weight")) v.forEach((_, i) => (v[i] = 0.5 + r()));
    if (path.endsWith(".bias")) v.forEach((_, i) => (v[i] = r() - 0.5));
  }
  return P;
}

const MOE = TINY_MOE;
const DENSE = TINY_DENSE;

// ---- configuration ------------------------------------------------------------------------------

Deno.test("modelConfig: defaults, overrides, and a private copy of the balancer list", () => {
  const c = mj.nn.modelConfig();
  assert.deepEqual(c, mj.nn.DEFAULT_CONFIG);
  assert.notEqual(c.balance, mj.nn.DEFAULT_CONFIG.balance);
  (c.balance as mj.nn.BalanceSpec[]).push({ kind: "zLoss" });
  assert.equal(mj.nn.DEFAULT_CONFIG.balance.length, 1, "the defaults are not shared");
  assert.deepEqual(mj.nn.DEFAULT_CONFIG.balance, [{ kind: "auxLoss", alpha: 0.01 }]);
  const d = mj.nn.modelConfig({ dModel: 32, nHeads: 2, ffn: "dense", balance: [] });
  assert.equal(d.dModel, 32);
  assert.equal(d.nHeads, 2);
  assert.equal(d.ffn, "dense");
  assert.deepEqual(d.balance, []);
  assert.equal(d.vocabSize, mj.nn.DEFAULT_CONFIG.vocabSize);
  // Spot-check the documented defaults.
  assert.equal(c.vocabSize, 256);
  assert.equal(c.estimator, "sparsemixer");
  assert.equal(c.tiedEmbeddings, true);
  assert.equal(c.initStd, 0.02);
});

Deno.test("modelConfig: errors name the field", () => {
  const bad = (partial: Record<string, unknown>, re: RegExp) =>
    assert.throws(
      () => mj.nn.modelConfig(partial as Partial<mj.nn.ModelConfig>),
      isErr("modelConfig", re),
      JSON.stringify(partial),
    );
  bad({ dmodel: 8 }, /unknown field "dmodel"; expected one of vocabSize, dModel/);
  bad({ dModel: 10, nHeads: 4 }, /dModel \(10\) must be divisible by nHeads \(4\)/);
  bad({ dModel: 12, nHeads: 4 }, /head size dModel\/nHeads \(3\) must be even/);
  bad({ experts: 2, topK: 3, estimator: "topk" }, /topK \(3\) must not exceed experts \(2\)/);
  bad(
    { estimator: "gumbel" },
    /estimator must be one of "topk", "dense", "default", "sparsemixer", "sparsemixer-v1", got "gumbel"/,
  );
  bad({ estimator: "sparsemixer", topK: 3 }, /estimator "sparsemixer" supports topK 1 or 2, got 3/);
  bad(
    { estimator: "sparsemixer-v1", topK: 2 },
    /estimator "sparsemixer-v1" is top-1 only, got topK 2/,
  );
  bad({ vocabSize: 0 }, /vocabSize must be a positive integer, got 0/);
  bad({ maxSeqLen: 1.5 }, /maxSeqLen must be a positive integer, got 1\.5/);
  bad({ nHeads: "2" }, /nHeads must be a positive integer, got "2"/);
  bad({ block: "postnorm" }, /block must be one of "prenorm", "parallel", got "postnorm"/);
  bad({ norm: "batchnorm" }, /norm must be one of/);
  bad({ ffn: "conv" }, /ffn must be one of/);
  bad({ activation: "tanh" }, /activation must be one of "swiglu", "gelu", "relu"/);
  bad({ normEps: -1 }, /normEps must be a non-negative number, got -1/);
  bad({ initStd: NaN }, /initStd must be a non-negative number/);
  bad({ balance: [{ kind: "capacity" }] }, /unknown balancer \{"kind":"capacity"\}/);
  // Edge cases that are fine.
  mj.nn.modelConfig({ experts: 2, topK: 2, estimator: "topk" });
  mj.nn.modelConfig({ dModel: 4, nHeads: 2 });
  mj.nn.modelConfig({ topK: 1, estimator: "sparsemixer-v1" });
});

Deno.test({
  // A string must not be spread into characters, nor an object fail as "not iterable".
  name: "modelConfig: a balance that is not an array is a MoejitError naming balance",
}, () => {
  for (const balance of [5, "auxLoss", { kind: "auxLoss" }]) {
    assert.throws(
      () => mj.nn.modelConfig({ balance } as unknown as Partial<mj.nn.ModelConfig>),
      isErr("modelConfig", /balance must be an array of balancer specs/),
    );
  }
});

Deno.test("modelConfig: balancer specs take every option of their constructor, and nothing else", () => {
  const every: mj.nn.BalanceSpec[] = [
    {
      kind: "auxLoss",
      alpha: 0.02,
      scope: "sequence",
      seqLen: 4,
      score: "softmax",
      convention: "hf",
    },
    { kind: "zLoss", beta: 0.003 },
    { kind: "lossFree", rate: 0.01, rule: "linear", violation: "raw" },
    { kind: "bip", iters: 3, cap: 5 },
  ];
  const c = mj.nn.modelConfig({ ...MOE, balance: every });
  assert.deepEqual(c.balance, every);
  // Every option reaches the balancer (bip's cap used to fall back to "ceil").
  assert.deepEqual(mj.nn.balancersOf(every, 8).map((b) => b.config), [
    { alpha: 0.02, scope: "sequence", seqLen: 4, score: "softmax", convention: "hf" },
    { beta: 0.003 },
    { rate: 0.01, rule: "linear", violation: "raw" },
    { iters: 3, cap: 5 },
  ]);
  assert.equal(mj.nn.balancerOf({ kind: "bip", cap: "floor" }, 8).config.cap, "floor");
  // seqLen defaults to the model's sequence length for scope "sequence".
  const [seq] = mj.nn.balancersOf([{ kind: "auxLoss", scope: "sequence" }], 6);
  assert.equal(seq.config.seqLen, 6);
  const bad = (balance: unknown, re: RegExp) =>
    assert.throws(
      () => mj.nn.modelConfig({ ...MOE, balance } as unknown as Partial<mj.nn.ModelConfig>),
      isErr("modelConfig", re),
      JSON.stringify(balance),
    );
  bad(
    [{ kind: "auxLoss", alfa: 0.1 }],
    /balance\[0\] \(auxLoss\): unknown option "alfa"; expected one of kind, alpha, scope, seqLen, score, convention/,
  );
  bad(
    [{ kind: "zLoss" }, { kind: "bip", T: 4 }],
    /balance\[1\] \(bip\): unknown option "T"; expected one of kind, iters, cap/,
  );
  bad(
    [{ kind: "lossFree", violation: "relative", mode: "x" }],
    /unknown option "mode"; expected one of kind, rate, rule, violation/,
  );
  bad([{ kind: "zLoss", gamma: 1 }], /unknown option "gamma"; expected one of kind, beta/);
  bad([{ kind: "bip", cap: 1.5 }], /balance\[0\] \(bip\): cap must be a non-negative integer/);
  bad([{ kind: "lossFree", rule: "exp" }], /rule must be "sign" or "linear", got "exp"/);
  bad([{ kind: "auxLoss", alpha: -1 }], /alpha must be a non-negative number/);
  bad([null], /unknown balancer null at balance\[0\]/);
  // Per layer: one list per layer, each checked the same way.
  bad([[{ kind: "auxLoss" }]], /one list per layer \(nLayers = 2\), got 1/);
  bad([[{ kind: "auxLoss" }], [], []], /one list per layer \(nLayers = 2\), got 3/);
  bad([[{ kind: "auxLoss" }], { kind: "zLoss" }], /mixes per-layer lists and balancer specs/);
  bad([[], [{ kind: "bip", cap: 3, T: 4 }]], /balance\[1\]\[0\] \(bip\): unknown option "T"/);
  bad([[{ kind: "capacity" }], []], /unknown balancer \{"kind":"capacity"\} at balance\[0\]\[0\]/);
});

Deno.test("modelConfig: balancers per layer, and layerBalance", () => {
  const perLayer: mj.nn.BalanceSpec[][] = [[{ kind: "auxLoss" }], [{ kind: "bip", cap: 3 }]];
  const c = mj.nn.modelConfig({ ...MOE, balance: perLayer });
  assert.deepEqual(c.balance, perLayer);
  assert.notEqual(c.balance[1], perLayer[1], "a private copy of each layer's list");
  assert.deepEqual(mj.nn.layerBalance(c, 0), [{ kind: "auxLoss" }]);
  assert.deepEqual(mj.nn.layerBalance(c, 1), [{ kind: "bip", cap: 3 }]);
  assert.deepEqual(mj.nn.allBalanceSpecs(c).map((b) => b.kind), ["auxLoss", "bip"]);
  const wide = mj.nn.modelConfig({ ...MOE, balance: [{ kind: "zLoss" }] });
  assert.deepEqual(mj.nn.layerBalance(wide, 1), [{ kind: "zLoss" }]);
  assert.deepEqual(mj.nn.modelConfig({ ...MOE, balance: [[], []] }).balance, [[], []]);
  assert.throws(
    () => mj.nn.layerBalance(c, 2),
    isErr("layerBalance", /layer must be an integer in 0\.\.1, got 2/),
  );
});

Deno.test("parameterShapes: the documented layout for MoE and dense, norms, blocks and heads", () => {
  const moe = mj.nn.modelConfig({ ...MOE, nLayers: 1 });
  assert.deepEqual(mj.nn.parameterShapes(moe), [
    ["embed", [32, 16]],
    ["layers.0.attnNorm.weight", [16]],
    ["layers.0.attn.q", [16, 16]],
    ["layers.0.attn.k", [16, 16]],
    ["layers.0.attn.v", [16, 16]],
    ["layers.0.attn.o", [16, 16]],
    ["layers.0.ffnNorm.weight", [16]],
    ["layers.0.moe.router", [4, 16]],
    ["layers.0.moe.gate", [4, 16, 16]],
    ["layers.0.moe.up", [4, 16, 16]],
    ["layers.0.moe.down", [4, 16, 16]],
    ["finalNorm.weight", [16]],
  ]);
  const dense = mj.nn.modelConfig({
    ...DENSE,
    dFf: 12,
    nLayers: 2,
    block: "parallel",
    norm: "layernorm",
    tiedEmbeddings: false,
    activation: "gelu",
  });
  const L = (i: number): [string, number[]][] => [
    [`layers.${i}.attnNorm.weight`, [8]],
    [`layers.${i}.attnNorm.bias`, [8]],
    [`layers.${i}.attn.q`, [8, 8]],
    [`layers.${i}.attn.k`, [8, 8]],
    [`layers.${i}.attn.v`, [8, 8]],
    [`layers.${i}.attn.o`, [8, 8]],
    [`layers.${i}.mlp.up`, [12, 8]],
    [`layers.${i}.mlp.down`, [8, 12]],
  ];
  assert.deepEqual(mj.nn.parameterShapes(dense), [
    ["embed", [11, 8]],
    ...L(0),
    ...L(1),
    ["finalNorm.weight", [8]],
    ["finalNorm.bias", [8]],
    ["lmHead", [11, 8]],
  ]);
  const relu = mj.nn.modelConfig({
    ...MOE,
    nLayers: 1,
    activation: "relu",
    norm: "layernorm",
    dFf: 24,
  });
  const paths = new Map(mj.nn.parameterShapes(relu));
  assert.ok(!paths.has("layers.0.moe.gate"));
  assert.deepEqual(paths.get("layers.0.moe.up"), [4, 24, 16]);
  assert.deepEqual(paths.get("layers.0.moe.down"), [4, 16, 24]);
  assert.deepEqual(paths.get("layers.0.ffnNorm.bias"), [16]);
});

// ---- initialisation -------------------------------------------------------------------------------

Deno.test("initParams: the tree matches parameterShapes; norm weights 1, biases 0", async () => {
  mj.setBackend("cpu");
  for (
    const c of [
      mj.nn.modelConfig(MOE),
      mj.nn.modelConfig({
        ...DENSE,
        norm: "layernorm",
        block: "parallel",
        tiedEmbeddings: false,
        activation: "relu",
      }),
      mj.nn.modelConfig({ ...MOE, norm: "layernorm", activation: "gelu", nLayers: 3 }),
    ]
  ) {
    const p = mj.nn.initParams(c, 0);
    const f = mj.treeFlatten(p);
    const shapes = mj.nn.parameterShapes(c);
    assert.deepEqual(f.paths, shapes.map(([k]) => k));
    f.leaves.forEach((t, i) => {
      assert.ok(t instanceof mj.Tensor);
      assert.deepEqual(t.shape, shapes[i][1], f.paths[i]);
      assert.equal(t.dtype, "f32");
    });
    assert.equal(p.layers.length, c.nLayers);
    assert.equal(p.lmHead === undefined, c.tiedEmbeddings);
    const vals = await Promise.all(f.leaves.map((t) => (t as mj.Tensor).data()));
    f.paths.forEach((path, i) => {
      const v = Array.from(vals[i]);
      if (path.endsWith(".weight")) assert.ok(v.every((x) => x === 1), `${path} is all ones`);
      else if (path.endsWith(".bias")) assert.ok(v.every((x) => x === 0), `${path} is all zeros`);
      else assert.ok(new Set(v).size === v.length && v.every(Number.isFinite), `${path} is random`);
    });
  }
});

Deno.test("initParams: deterministic for a seed, different across seeds and across parameters", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig(MOE);
  const values = async (seed: number) => {
    const f = mj.treeFlatten(mj.nn.initParams(c, seed));
    return new Map(
      await Promise.all(
        f.leaves.map(async (t, i) =>
          [f.paths[i], Array.from(await (t as mj.Tensor).data())] as const
        ),
      ),
    );
  };
  const a = await values(3), b = await values(3), d = await values(4), z = await values(0);
  const random = [...a.keys()].filter((k) => !k.endsWith(".weight"));
  assert.ok(random.length > 8);
  for (const k of a.keys()) assert.deepEqual(a.get(k), b.get(k), `${k} is deterministic`);
  for (const k of random) {
    assert.notDeepEqual(a.get(k), d.get(k), `${k} depends on the seed`);
    assert.notDeepEqual(a.get(k), z.get(k), `${k} depends on the seed`);
  }
  // Every parameter has its own stream: q, k, v and o of a layer differ, layers differ.
  const heads = ["layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v", "layers.1.attn.q"].map((
    k,
  ) => a.get(k)!.slice(0, 16).join());
  assert.equal(new Set(heads).size, heads.length);
  // The default seed is 0.
  const dflt = mj.treeFlatten(mj.nn.initParams(c));
  assert.deepEqual(Array.from(await (dflt.leaves[0] as mj.Tensor).data()), z.get("embed"));
});

Deno.test("initParams: weights ~ N(0, initStd²), output projections scaled by 1/√(2L)", async () => {
  mj.setBackend("cpu");
  const stats = (v: ArrayLike<number>) => {
    const n = v.length;
    let m = 0, s = 0;
    for (let i = 0; i < n; i++) m += v[i] / n;
    for (let i = 0; i < n; i++) s += (v[i] - m) ** 2 / n;
    return { mean: m, std: Math.sqrt(s), n };
  };
  for (const nLayers of [2, 8]) {
    for (const ffn of ["moe", "dense"] as const) {
      const initStd = 0.1;
      const c = mj.nn.modelConfig({
        ...MOE,
        dModel: 64,
        nHeads: 4,
        dFf: 64,
        experts: 2,
        nLayers,
        ffn,
        initStd,
      });
      const p = mj.nn.initParams(c, 1);
      const L = p.layers[nLayers - 1];
      const picks: [string, mj.Tensor, number][] = [
        ["embed", p.embed, initStd],
        ["attn.q", L.attn.q, initStd],
        ["attn.v", L.attn.v, initStd],
        ["attn.o", L.attn.o, initStd / Math.sqrt(2 * nLayers)],
      ];
      if (ffn === "moe") {
        picks.push(["moe.router", L.moe!.router, initStd], ["moe.up", L.moe!.up, initStd], [
          "moe.gate",
          L.moe!.gate!,
          initStd,
        ], [
          "moe.down",
          L.moe!.down,
          initStd / Math.sqrt(2 * nLayers),
        ]);
      } else {
        picks.push(["mlp.up", L.mlp!.up, initStd], [
          "mlp.down",
          L.mlp!.down,
          initStd / Math.sqrt(2 * nLayers),
        ]);
      }
      for (const [name, t, want] of picks) {
        const s = stats(await t.data());
        // The sample std of n normals is off by ~1/√(2n) relative (1.1% for the 64×64
        // projections): allow five of those, at least 5%.
        const tol = Math.max(0.05, 5 / Math.sqrt(2 * s.n));
        assert.ok(
          Math.abs(s.std / want - 1) < tol,
          `${ffn} L=${nLayers} ${name}: std ${s.std}, expected ${want}`,
        );
        assert.ok(Math.abs(s.mean) < (5 * want) / Math.sqrt(s.n), `${name}: mean ${s.mean}`);
      }
    }
  }
});

gpuTest("initParams: the same values as on the interpreter", async () => {
  const c = mj.nn.modelConfig({ ...MOE, nLayers: 1, norm: "layernorm", tiedEmbeddings: false });
  const read = async (b: mj.BackendName) => {
    mj.setBackend(b);
    const f = mj.treeFlatten(await mj.realize(mj.nn.initParams(c, 7)));
    return Promise.all(f.leaves.map(async (t) => Array.from(await (t as mj.Tensor).data())));
  };
  try {
    const cpu = await read("cpu"), got = await read(backend());
    // Counter-based draws: the same bits, so the same normals up to the f32 rounding of the
    // Box-Muller log/sqrt/cos on each backend (observed ≤ 1.5e-8 absolute at std 0.02).
    cpu.forEach((v, i) => assertClose(got[i], v, { rtol: 1e-5, atol: 2e-7, msg: `leaf ${i}` }));
    const ones = cpu.filter((v) => v.every((x) => x === 1)).length;
    assert.equal(ones, 3, "three norm weights");
  } finally {
    mj.setBackend("cpu");
  }
});

// ---- forward against the host model ---------------------------------------------------------------

const VARIANTS: [string, Partial<mj.nn.ModelConfig>][] = [
  ["dense prenorm rmsnorm tied swiglu", { ...DENSE }],
  ["dense parallel layernorm untied gelu", {
    ...DENSE,
    block: "parallel",
    norm: "layernorm",
    tiedEmbeddings: false,
    activation: "gelu",
  }],
  ["dense prenorm layernorm tied relu, 2 layers, θ=50, eps 0.1", {
    ...DENSE,
    norm: "layernorm",
    activation: "relu",
    nLayers: 2,
    ropeTheta: 50,
    normEps: 0.1,
  }],
  ["moe top-2 prenorm rmsnorm tied swiglu, aux + z losses", {
    ...MOE,
    estimator: "topk",
    balance: [{ kind: "auxLoss", alpha: 0.3 }, { kind: "zLoss", beta: 0.2 }],
  }],
  ["moe top-1 of 3 parallel layernorm untied gelu", {
    ...MOE,
    nLayers: 1,
    experts: 3,
    topK: 1,
    estimator: "topk",
    block: "parallel",
    norm: "layernorm",
    tiedEmbeddings: false,
    activation: "gelu",
    balance: [{ kind: "zLoss", beta: 0.5 }],
  }],
];

for (const [name, partial] of VARIANTS) {
  Deno.test(`forward (${name}) matches the float64 host model`, async () => {
    mj.setBackend("cpu");
    const c = mj.nn.modelConfig({ ...partial, initStd: 0.3 });
    const P = hostModel(c, 11);
    const toks = randomTokens(2, Math.min(5, c.maxSeqLen), c.vocabSize, 12);
    const ref = modelRef(P, toks, c);
    for (const training of [false, true]) {
      const r = mj.nn.forward(tensorParams(P, c), tokenTensor(toks), c, { training });
      assert.deepEqual(r.logits.shape, [2, toks[0].length, c.vocabSize]);
      assertClose(evalWide(r.logits)[0], ref.logits, {
        rtol: 1e-5,
        atol: 1e-6,
        msg: `logits training=${training}`,
      });
      const want: Record<string, number> = {};
      for (const b of mj.nn.layerBalance(c, 0)) {
        if (b.kind === "auxLoss") {
          want.load_balancing_loss = ((b.alpha as number | undefined) ?? 0.01) * ref.aux;
        }
        if (b.kind === "zLoss") want.z_loss = ((b.beta as number | undefined) ?? 0.001) * ref.z;
      }
      assert.deepEqual(
        Object.keys(r.losses).sort(),
        c.ffn === "moe" ? Object.keys(want).sort() : [],
      );
      for (const [k, v] of Object.entries(r.losses)) {
        assertClose(evalWide(v)[0], [want[k]], { rtol: 1e-5, msg: k });
      }
    }
    // f32 on the interpreter.
    const f = mj.nn.forward(tensorParams(P, c, false), tokenTensor(toks), c, { training: false });
    assertClose(await f.logits.data(), ref.logits, { rtol: 1e-4, atol: 1e-5, msg: "f32 logits" });
  });
}

gpuTest(
  "forward matches the host model, fused and unfused (MoE, top-2, aux + z losses)",
  async () => {
    mj.setBackend(backend());
    try {
      const c = mj.nn.modelConfig({ ...VARIANTS[3][1], initStd: 0.3 });
      const P = hostModel(c, 11);
      const toks = randomTokens(2, 5, c.vocabSize, 12);
      const ref = modelRef(P, toks, c);
      await fusedAndUnfused(async (fused) => {
        const r = await mj.realize(
          mj.nn.forward(tensorParams(P, c, false), tokenTensor(toks), c, { training: false }),
        );
        const tol = { rtol: 2e-4, atol: 2e-5, msg: `logits (fused ${fused})` };
        assertClose(await r.logits.data(), ref.logits, tol);
        assertClose(await r.losses.load_balancing_loss.data(), [0.3 * ref.aux], { rtol: 1e-4 });
        assertClose(await r.losses.z_loss.data(), [0.2 * ref.z], { rtol: 1e-4 });
      });
    } finally {
      mj.setBackend("cpu");
    }
  },
);

// ---- finite differences of the whole model's loss ---------------------------------------------------

const FD_VARIANTS: [string, Partial<mj.nn.ModelConfig>, string[]][] = [
  ["tied prenorm rmsnorm swiglu", {}, ["embed", "layers.0.attn.q", "layers.0.mlp.gate"]],
  ["untied parallel layernorm swiglu", {
    tiedEmbeddings: false,
    block: "parallel",
    norm: "layernorm",
  }, [
    "lmHead",
    "layers.0.mlp.down",
    "layers.0.attnNorm.bias",
    "embed",
  ]],
  ["tied parallel rmsnorm gelu", { block: "parallel", activation: "gelu" }, [
    "embed",
    "finalNorm.weight",
    "layers.0.attn.v",
  ]],
  ["untied prenorm layernorm relu", {
    tiedEmbeddings: false,
    norm: "layernorm",
    activation: "relu",
  }, [
    "layers.0.ffnNorm.weight",
    "layers.0.mlp.up",
    "layers.0.attn.k",
    "layers.0.attn.o",
    "finalNorm.bias",
  ]],
];

for (const [name, partial, wrt] of FD_VARIANTS) {
  Deno.test(`fd: dense model loss (${name}) w.r.t. ${wrt.join(", ")}`, () => {
    mj.setBackend("cpu");
    const c = mj.nn.modelConfig({ ...DENSE, ...partial, initStd: 0.4 });
    const P = hostModel(c, 21);
    const shapes = new Map(mj.nn.parameterShapes(c));
    const toks = randomTokens(2, 6, c.vocabSize, 22);
    const inputs = tokenTensor(toks.map((r) => r.slice(0, -1)));
    const targets = mj.tensor(toks.flatMap((r) => r.slice(1)), undefined, { dtype: "i32" });
    const loss = (...xs: mj.Tensor[]) => {
      const tree = tensorParams(P, c) as unknown as Record<string, unknown>;
      wrt.forEach((path, i) => mj.nn.setPath(tree, path, xs[i]));
      const { logits } = mj.nn.forward(tree as unknown as mj.nn.Params, inputs, c);
      return mj.nn.crossEntropy(logits.reshape([-1, c.vocabSize]), targets);
    };
    // The loss itself is the host model's cross-entropy.
    const ref = modelRef(P, toks.map((r) => r.slice(0, -1)), c).logits;
    const wide = wrt.map((p) => wideTensor(P.get(p)!, shapes.get(p)!));
    assertClose(evalWide(loss(...wide))[0], [
      crossEntropyRef(ref, toks.flatMap((r) => r.slice(1)), c.vocabSize),
    ], { rtol: 1e-6 });
    checkGradFD(loss, wrt.map((p) => ({ data: P.get(p)!, shape: shapes.get(p)! })), {
      rtol: 1e-5,
      atol: 1e-8,
    });
  });
}

// ---- MoE forward: structure, balancers, state ------------------------------------------------------

Deno.test("forward (MoE): shapes, loss keys per balancer, per-layer state and routing", async () => {
  mj.setBackend("cpu");
  const toks = tokenTensor(randomTokens(2, 8, 32, 31));
  const run = (
    balance: mj.nn.BalanceSpec[],
    extra: Partial<mj.nn.ModelConfig> = {},
    training = false,
  ) => {
    const c = mj.nn.modelConfig({ ...MOE, balance, ...extra });
    return mj.nn.forward(mj.nn.initParams(c, 1), toks, c, { training });
  };
  const r = run([{ kind: "auxLoss" }]);
  assert.deepEqual(r.logits.shape, [2, 8, 32]);
  assert.deepEqual(Object.keys(r.losses), ["load_balancing_loss"]);
  assert.deepEqual(r.losses.load_balancing_loss.shape, []);
  assert.equal(r.state.length, 2);
  assert.equal(r.routing.length, 2);
  for (const rt of r.routing) {
    assert.deepEqual(rt.indices.shape, [16, 2]);
    assert.deepEqual(rt.scores.shape, [16, 4]);
    assert.equal(numel(rt.counts.shape), 4);
    assert.equal(Array.from(await rt.counts.data(), Number).reduce((a, b) => a + b, 0), 32);
  }
  // The loss is the sum over layers of α·N·Σ f_j P_j from each layer's routing.
  let want = 0;
  for (const rt of r.routing) {
    const [idx, sc] = evalWide(rt.indices, rt.scores);
    for (let j = 0; j < 4; j++) {
      const f = idx.filter((e) => e === j).length / 32;
      let P = 0;
      for (let t = 0; t < 16; t++) P += sc[t * 4 + j] / 16;
      want += 0.01 * 4 * f * P;
    }
  }
  assertClose(evalWide(r.losses.load_balancing_loss)[0], [want], { rtol: 1e-6 });
  assert.deepEqual(Object.keys(run([]).losses), []);
  assert.deepEqual(Object.keys(run([{ kind: "zLoss" }]).losses), ["z_loss"]);
  assert.deepEqual(
    Object.keys(run([{ kind: "auxLoss", scope: "sequence" }, { kind: "zLoss" }]).losses).sort(),
    ["load_balancing_loss", "z_loss"],
  );
  // Inference carries the state through unchanged (none given: none returned).
  for (const s of run([{ kind: "lossFree" }, { kind: "bip", iters: 2 }]).state) {
    assert.deepEqual(s, {});
  }
  const lf = run([{ kind: "lossFree" }, { kind: "bip", iters: 2 }], {}, true);
  assert.deepEqual(Object.keys(lf.losses), []);
  assert.equal(lf.state.length, 2);
  for (const s of lf.state) {
    assert.deepEqual(Object.keys(s).sort(), ["bipQ", "lossFreeBias"]);
    assert.deepEqual(s.lossFreeBias!.shape, [4]);
    assert.deepEqual(s.bipQ!.shape, [4]);
  }
  const dflt = run([], { estimator: "default" }, true);
  assert.deepEqual(Object.keys(dflt.state[0]), ["ehat"]);
  assert.deepEqual(dflt.state[0].ehat!.shape, [4, 16]);
  // A dense model has no routing, state or losses.
  const dc = mj.nn.modelConfig({ ...MOE, ffn: "dense" });
  const dr = mj.nn.forward(mj.nn.initParams(dc, 1), toks, dc);
  assert.deepEqual([dr.routing.length, dr.state.length, Object.keys(dr.losses).length], [0, 0, 0]);
  assert.deepEqual(dr.logits.shape, [2, 8, 32]);
});

Deno.test("forward (MoE, estimator default): the config's defaultMoe options reach every layer", () => {
  mj.setBackend("cpu");
  const toks = tokenTensor(randomTokens(2, 8, 32, 41));
  const run = (
    defaultMoe: Partial<mj.nn.ModelConfig["defaultMoe"]>,
    state?: mj.moe.LayerState[],
  ) => {
    const c = mj.nn.modelConfig({ ...MOE, estimator: "default", balance: [], defaultMoe });
    return mj.nn.forward(mj.nn.initParams(c, 3), toks, c, { training: true, state });
  };
  // From zero defaults, one step leaves ehat = (1 − β)·(the step's average): β scales it.
  const e9 = evalWide(run({ beta: 0.9 }).state[1].ehat!)[0];
  const e5 = evalWide(run({ beta: 0.5 }).state[1].ehat!)[0];
  assertClose(e9.map((v) => v * 5), e5, { rtol: 1e-5, atol: 1e-7 });
  // The scored readings average π·E (mean) or Σπ·E/Σπ: neither equals the plain mean.
  const scored = evalWide(run({ beta: 0.5, ema: "scoredMean" }).state[1].ehat!)[0];
  const weighted = evalWide(run({ beta: 0.5, ema: "scoredWeighted" }).state[1].ehat!)[0];
  assert.ok(scored.some((v, i) => Math.abs(v - e5[i]) > 1e-6), "scoredMean differs from mean");
  assert.ok(weighted.some((v, i) => Math.abs(v - scored[i]) > 1e-6), "the readings differ");
  // With non-zero defaults the forward mode changes the logits; backwardOnly keeps top-k's.
  const state = run({ beta: 0.5 }).state;
  const topkConfig = mj.nn.modelConfig({ ...MOE, estimator: "topk", balance: [] });
  const topk = mj.nn.forward(mj.nn.initParams(topkConfig, 3), toks, topkConfig, { training: true });
  const [plain, fwd, bwd] = evalWide(
    topk.logits,
    run({ beta: 0.5 }, state).logits,
    run({ beta: 0.5, mode: "backwardOnly" }, state).logits,
  );
  assertClose(bwd, plain, { rtol: 1e-6, atol: 1e-7 });
  assert.ok(fwd.some((v, i) => Math.abs(v - plain[i]) > 1e-5), "forward mode adds the defaults");
  assert.throws(
    () => mj.nn.modelConfig({ defaultMoe: { mode: "both" } as never }),
    isErr("modelConfig", /defaultMoe: mode must be one of "forward", "backwardOnly", got "both"/),
  );
});

Deno.test("forward (MoE): sequence-scoped aux loss equals the global one for one sequence, not for two", async () => {
  mj.setBackend("cpu");
  const loss = async (scope: "global" | "sequence", B: number) => {
    const c = mj.nn.modelConfig({ ...MOE, initStd: 0.5, balance: [{ kind: "auxLoss", scope }] });
    const toks = tokenTensor(randomTokens(B, 8, 32, 41));
    return await mj.nn.forward(mj.nn.initParams(c, 2), toks, c, { training: false }).losses
      .load_balancing_loss.item();
  };
  assertClose([await loss("sequence", 1)], [await loss("global", 1)], { rtol: 1e-6 });
  assert.notEqual(await loss("sequence", 2), await loss("global", 2));
  const [b] = mj.nn.balancersOf([{ kind: "auxLoss", scope: "sequence", alpha: 0.5 }], 6);
  assert.equal(b.kind, "auxLoss");
  assert.equal((b.config as { seqLen: number }).seqLen, 6);
  assert.equal((b.config as { alpha: number }).alpha, 0.5);
  assert.deepEqual(
    mj.nn.balancersOf([{ kind: "zLoss" }, { kind: "lossFree" }, { kind: "bip" }], 4).map((x) =>
      x.kind
    ),
    ["zLoss", "lossFree", "bip"],
  );
});

Deno.test("forward (MoE): balancers per layer reach their own layer only", () => {
  mj.setBackend("cpu");
  const toks = tokenTensor(randomTokens(2, 8, 32, 33));
  const c = mj.nn.modelConfig({
    ...MOE,
    initStd: 0.5,
    estimator: "topk", // deterministic routing, to compare layer 0 with a balancer-free model
    balance: [[{ kind: "auxLoss", alpha: 0.2 }], [{ kind: "zLoss", beta: 0.1 }, {
      kind: "bip",
      iters: 2,
      cap: 5,
    }]],
  });
  const params = mj.nn.initParams(c, 3);
  const r = mj.nn.forward(params, toks, c, { training: true });
  assert.deepEqual(Object.keys(r.losses).sort(), ["load_balancing_loss", "z_loss"]);
  assert.deepEqual(Object.keys(r.state[0]), []);
  assert.deepEqual(Object.keys(r.state[1]), ["bipQ"]);
  // The aux loss is layer 0's alone: α·N·Σ_j f_j P_j from that layer's routing.
  const [idx, sc] = evalWide(r.routing[0].indices, r.routing[0].scores);
  let want = 0;
  for (let j = 0; j < 4; j++) {
    let P = 0;
    for (let t = 0; t < 16; t++) P += sc[t * 4 + j] / 16;
    want += 0.2 * 4 * (idx.filter((e) => e === j).length / 32) * P;
  }
  assertClose(evalWide(r.losses.load_balancing_loss)[0], [want], { rtol: 1e-6 });
  // Layer 0 routes as without balancers: layer 1's BIP prices do not reach it.
  const plain = mj.nn.forward(params, toks, mj.nn.modelConfig({ ...c, balance: [] }), {
    training: true,
  });
  assert.deepEqual(Array.from(evalWide(plain.routing[0].indices)[0]), Array.from(idx));
  assert.ok(evalWide(r.state[1].bipQ!)[0].some((q) => q > 0), "layer 1 has nonzero prices");
  // The same model with the lists swapped gives other losses: the lists are per layer.
  const swapped = mj.nn.modelConfig({
    ...c,
    balance: [c.balance[1], c.balance[0]] as mj.nn.BalanceSpec[][],
  });
  const s2 = mj.nn.forward(params, toks, swapped, { training: true });
  assert.deepEqual(Object.keys(s2.state[0]), ["bipQ"]);
  assert.deepEqual(Object.keys(s2.state[1]), []);
});

Deno.test("forward (MoE, eval and keyed training): changing a future token leaves earlier logits alone", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...MOE, initStd: 0.3 });
  const params = await mj.realize(mj.nn.initParams(c, 5));
  const base = randomTokens(2, 8, 32, 51);
  const changed = base.map((r) => [...r]);
  changed[0][5] = (changed[0][5] + 7) % 32;
  changed[0][7] = (changed[0][7] + 3) % 32;
  for (
    const opts of [{ training: false }, {
      training: true,
      key: mj.tensor([3, 9], undefined, { dtype: "u32" }),
    }]
  ) {
    const run = async (t: number[][]) =>
      Array.from(await mj.nn.forward(params, tokenTensor(t), c, opts).logits.data());
    const a = await run(base), b = await run(changed);
    const V = 32, S = 8;
    const row = (x: number[], bi: number, s: number) =>
      x.slice((bi * S + s) * V, (bi * S + s + 1) * V);
    for (let s = 0; s < 5; s++) {
      assertClose(row(b, 0, s), row(a, 0, s), { rtol: 1e-6, atol: 1e-7, msg: `position ${s}` });
    }
    for (let s = 0; s < 8; s++) {
      assertClose(row(b, 1, s), row(a, 1, s), {
        rtol: 1e-6,
        atol: 1e-7,
        msg: `other sequence, position ${s}`,
      });
    }
    for (const s of [5, 6, 7]) {
      assert.ok(
        row(a, 0, s).some((v, j) => Math.abs(v - row(b, 0, s)[j]) > 1e-4),
        `position ${s} sees the change`,
      );
    }
  }
});

Deno.test({
  // At inference BIP routes with the prices training left instead of solving them on the batch,
  // which would make a token's logits depend on later tokens.
  name:
    "forward (MoE with a BIP balancer, eval): changing a future token leaves earlier logits alone",
}, async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...MOE, initStd: 0.5, balance: [{ kind: "bip", iters: 2 }] });
  const params = await mj.realize(mj.nn.initParams(c, 3));
  const run = async (t: number[]) =>
    await mj.nn.forward(params, tokenTensor([t]), c, { training: false }).logits.data();
  const a = await run([5, 9, 1, 2, 3]), b = await run([5, 9, 1, 7, 30]);
  assertClose(b.subarray(0, 3 * 32), a.subarray(0, 3 * 32), { rtol: 1e-6, atol: 1e-7 });
});

Deno.test("forward (MoE, sparsemixer training): the same key gives the same logits, another key may not", async () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig({ ...MOE, initStd: 0.5, jitterEps: 0.5 });
  const params = await mj.realize(mj.nn.initParams(c, 6));
  const toks = tokenTensor(randomTokens(2, 8, 32, 61));
  const run = async (k0: number) =>
    Array.from(
      await mj.nn.forward(params, toks, c, {
        training: true,
        key: mj.tensor([k0, 1], undefined, { dtype: "u32" }),
      }).logits.data(),
    );
  const a = await run(1), b = await run(1);
  assert.deepEqual(a, b);
  const others = await Promise.all([2, 3, 4].map(run));
  assert.ok(
    others.some((o) => o.some((v, i) => v !== a[i])),
    "different keys sample different experts",
  );
  // Eval routing is deterministic without a key.
  const e1 = await mj.nn.forward(params, toks, c, { training: false }).logits.data();
  const e2 = await mj.nn.forward(params, toks, c, { training: false }).logits.data();
  assert.deepEqual(Array.from(e1), Array.from(e2));
});

Deno.test("forward: errors name nn.forward (token dtype and rank, sequence length, layer count)", () => {
  mj.setBackend("cpu");
  const c = mj.nn.modelConfig(MOE);
  const p = mj.nn.initParams(c, 0);
  assert.throws(
    () => mj.nn.forward(p, mj.zeros([1, 4]), c),
    isErr("nn.forward", /expected i32 token ids \[B, S\], got f32\[1,4\]/),
  );
  assert.throws(
    () => mj.nn.forward(p, mj.tensor([1, 2, 3], undefined, { dtype: "i32" }), c),
    isErr("nn.forward", /expected i32 token ids \[B, S\], got i32\[3\]/),
  );
  assert.throws(
    () => mj.nn.forward(p, mj.zeros([1, 9], { dtype: "i32" }), c),
    isErr("nn.forward", /sequence length 9 exceeds the model's maxSeqLen 8/),
  );
  const c3 = mj.nn.modelConfig({ ...MOE, nLayers: 3 });
  assert.throws(
    () => mj.nn.forward(p, mj.zeros([1, 4], { dtype: "i32" }), c3),
    isErr("nn.forward", /params have 2 layers, the config 3/),
  );
  // S = maxSeqLen is fine.
  assert.deepEqual(mj.nn.forward(p, mj.zeros([1, 8], { dtype: "i32" }), c).logits.shape, [
    1,
    8,
    32,
  ]);
});
