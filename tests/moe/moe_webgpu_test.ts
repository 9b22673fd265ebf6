/**
 * MoE primitives on each compiled backend (WebGPU, native) against the interpreter: the shape
 * table of the MoE issue (forward and every gradient), edge cases of routing, the routing table's
 * invariants computed on the device, and the cost of a whole layer step (no host readback, a
 * bounded kernel count).
 *
 * The default tier runs a subset of the shape table that covers every value of every axis; the
 * full table (108 cases) runs with MOEJIT_SLOW=1.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, randomArray, SLOW } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";

interface Case {
  T: number;
  d: number;
  E: number;
  k: number;
  /** Router logit bias (added to logits) that shapes the load, e.g. all tokens to one expert. */
  skew?: number[];
  swiglu?: boolean;
  /** Expert hidden width (default max(4, 2d)). */
  F?: number;
}

const f = (c: Case) => c.F ?? Math.max(4, 2 * c.d);

function build(c: Case, seed: number) {
  const F = f(c);
  const x = mj.tensor(randomArray(c.T * c.d, seed), [c.T, c.d]);
  const params: mj.moe.MoeParams = {
    router: mj.tensor(randomArray(c.E * c.d, seed + 1), [c.E, c.d]),
    up: mj.tensor(randomArray(c.E * F * c.d, seed + 2, -0.5, 0.5), [c.E, F, c.d]),
    down: mj.tensor(randomArray(c.E * c.d * F, seed + 3, -0.5, 0.5), [c.E, c.d, F]),
  };
  if (c.swiglu) {
    params.gate = mj.tensor(randomArray(c.E * F * c.d, seed + 4, -0.5, 0.5), [c.E, F, c.d]);
  }
  const mix = mj.tensor(randomArray(c.T * c.d, seed + 5), [c.T, c.d]);
  return { x, params, mix };
}

/** The layer's loss; a skew is a selection bias that shapes the load (e.g. all to one expert). */
function layerLoss(c: Case) {
  const opts = { k: c.k, ...(c.skew ? { bias: mj.tensor(c.skew) } : {}) };
  return (x: mj.Tensor, p: mj.moe.MoeParams, mix: mj.Tensor) =>
    mj.moe.layer(x, p, opts).y.mul(mix).sum();
}

/** The layer's output y, counts, and the loss with every gradient, by name. */
async function outputs(
  c: Case,
  backend: mj.BackendName,
  seed: number,
): Promise<Record<string, number[]>> {
  mj.setBackend(backend);
  const { x, params, mix } = build(c, seed);
  const [loss, [gx, gp]] = mj.valueAndGrad(layerLoss(c))(x, params, mix);
  const r = mj.moe.layer(x, params, { k: c.k, ...(c.skew ? { bias: mj.tensor(c.skew) } : {}) });
  const tensors: Record<string, mj.Tensor> = { y: r.y, counts: r.counts, loss, dx: gx };
  for (const key of Object.keys(params) as (keyof mj.moe.MoeParams)[]) {
    tensors[`d${key}`] = gp[key]!;
  }
  // One step for all of them (on the native backend each step is a compiled library).
  const names = Object.keys(tensors);
  const values = await mj.realize(names.map((n) => tensors[n]));
  return Object.fromEntries(
    await Promise.all(names.map(async (n, i) => [n, Array.from(await values[i].data())])),
  );
}

async function compare(c: Case, seed = 1) {
  const cpu = await outputs(c, "cpu", seed);
  const gpu = await outputs(c, backend(), seed);
  for (const [name, v] of Object.entries(cpu)) {
    // y elementwise; the loss sums T·d products, so its tolerance grows with T.
    const tol = name === "counts"
      ? { rtol: 0, atol: 0 }
      : { rtol: 2e-4, atol: name === "y" ? 2e-5 : 2e-5 * Math.sqrt(c.T) };
    assertClose(gpu[name], v, { ...tol, msg: `${JSON.stringify(c)} ${name}` });
  }
  return cpu;
}

function table(): Case[] {
  const out: Case[] = [];
  for (const T of [1, 7, 64, 1000]) {
    for (const d of [1, 3, 64]) {
      for (const E of [1, 2, 8, 64]) {
        for (const k of [...new Set([1, 2, E])].filter((k) => k <= E)) out.push({ T, d, E, k });
      }
    }
  }
  return out;
}

/** Every value of every axis appears, with k ∈ {1, 2, E}. */
const COVERING: Case[] = [
  { T: 1, d: 3, E: 2, k: 2 },
  { T: 7, d: 1, E: 8, k: 2 },
  { T: 7, d: 3, E: 64, k: 64 },
  { T: 64, d: 64, E: 8, k: 8 },
  { T: 64, d: 3, E: 1, k: 1 },
  { T: 1000, d: 64, E: 64, k: 2 },
  { T: 1000, d: 1, E: 2, k: 1 },
  { T: 64, d: 64, E: 8, k: 2, swiglu: true },
];

for (const c of COVERING) {
  gpuTest(
    `moe: layer ${JSON.stringify(c)} matches the interpreter (value, counts, all gradients)`,
    async () => {
      await compare(c);
    },
  );
}

gpuTest(`moe: the full shape table (${table().length} cases)`, async () => {
  for (const c of table()) await compare(c, 3);
}, { slow: true });

const EDGES: [string, Case][] = [
  ["an expert with no tokens", { T: 16, d: 8, E: 4, k: 1, skew: [0, 0, -1e4, 0] }],
  ["all tokens to one expert", { T: 33, d: 8, E: 4, k: 1, skew: [0, 1e4, 0, 0] }],
  ["E > T", { T: 3, d: 8, E: 16, k: 2 }],
  ["T = 1, k = E", { T: 1, d: 8, E: 4, k: 4 }],
  ["T·k not a multiple of any tile", { T: 37, d: 12, E: 5, k: 3 }],
];
for (const [name, c] of EDGES) {
  gpuTest(`moe: ${name}`, async () => {
    const cpu = await compare(c);
    const counts = cpu.counts;
    if (name === "an expert with no tokens") assert.equal(counts[2], 0);
    if (name === "all tokens to one expert") assert.deepEqual(counts, [0, c.T, 0, 0]);
  });
}

function fdLayer(c: Case): void {
  const F = f(c);
  const mix = randomArray(c.T * c.d, 77);
  checkGradFD(
    (x, router, up, down) =>
      mj.moe.layer(x, { router, up, down }, {
        k: c.k,
        ...(c.skew ? { bias: mj.tensor(c.skew) } : {}),
      }).y
        .mul(mj.tensor(mix, [c.T, c.d])).sum(),
    [
      { data: randomArray(c.T * c.d, 1), shape: [c.T, c.d] },
      { data: randomArray(c.E * c.d, 2), shape: [c.E, c.d] },
      { data: randomArray(c.E * F * c.d, 3, -0.5, 0.5), shape: [c.E, F, c.d] },
      { data: randomArray(c.E * c.d * F, 4, -0.5, 0.5), shape: [c.E, c.d, F] },
    ],
    { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
  );
}

Deno.test("moe: the interpreter's layer gradients pass float64 finite differences (edge cases and the covering table)", () => {
  for (const c of [...EDGES.map(([, c]) => c), ...COVERING.filter((c) => !c.swiglu)]) fdLayer(c);
});

Deno.test({
  name: "moe: the interpreter's layer gradients pass float64 finite differences (the full table)",
  ignore: !SLOW,
}, () => {
  // Where that stays affordable.
  for (const c of table()) if (c.T * c.k * c.d * f(c) <= 2_000_000) fdLayer(c);
});

gpuTest(
  "moe: destination rows form a bijection, equal the interpreter's, and repeat exactly",
  async () => {
    const T = 1000, E = 64, k = 8;
    const logits = randomArray(T * E, 9);
    const tableOn = async (backend: mj.BackendName) => {
      mj.setBackend(backend);
      const r = mj.moe.route(mj.tensor(logits, [T, E]), { k });
      const t = mj.moe.routingTable(r.indices, E);
      return [await t.destRow.data(), await t.srcEntry.data(), await t.offsets.data()].map((a) =>
        Array.from(a)
      );
    };
    const a = await tableOn(backend()), b = await tableOn(backend()), c = await tableOn("cpu");
    assert.deepEqual(a, b, "deterministic");
    assert.deepEqual(a, c, "same as the interpreter");
    assert.deepEqual([...a[0]].sort((x, y) => x - y), Array.from({ length: T * k }, (_, i) => i));
  },
);

/**
 * Stated kernel bounds for a whole layer forward+backward (route, routing table, dispatch, the
 * grouped expert matmuls, combine, and every gradient), per configuration. Measured at the test
 * shape (T=64, d=32, E=8, f=64, k=2) and at the benchmark shapes (T=4096, d=256: E=8, f=512, k=2
 * and E=64, f=64, k=8), where longer reductions split into a few more kernels: GELU 36–40,
 * SwiGLU 46–50, Default MoE 45–51, dense 47–50, SparseMixer-v2 43–46. (Default MoE was 46–52
 * until its scaled output cotangent fused into the reads of a backward matmul.)
 */
export const MOE_LAYER_STEP_KERNELS = {
  gelu: 40,
  swiglu: 50,
  default: 51,
  dense: 50,
  sparsemixer: 46,
} as const;
type Variant = keyof typeof MOE_LAYER_STEP_KERNELS;
const VARIANT_OPTS: Record<Variant, Omit<mj.moe.LayerOptions, "k">> = {
  gelu: {},
  swiglu: {},
  default: { estimator: "default" },
  dense: { estimator: "dense" },
  sparsemixer: { estimator: "sparsemixer", seed: 1 },
};

/** Kernels, readbacks and submits of the second call of a jitted layer forward+backward. */
async function stepCost(c: Case, variant: Variant) {
  mj.setBackend(backend());
  const { x, params, mix } = build({ ...c, swiglu: variant === "swiglu" }, 5);
  const [xv, pv, mv] = await mj.realize([x, params, mix] as const);
  const opts: mj.moe.LayerOptions = { ...VARIANT_OPTS[variant], k: c.k };
  const step = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams, mix: mj.Tensor) => {
    const loss = (x: mj.Tensor, p: mj.moe.MoeParams) => mj.moe.layer(x, p, opts).y.mul(mix).sum();
    const [value, [gx, gp]] = mj.valueAndGrad(loss)(x, p);
    return { value, gx, gp };
  });
  await step(xv, pv, mv);
  const s = mj.stats();
  const r = await step(xv, pv, mv);
  const after = mj.stats();
  assert.ok(Number.isFinite(await r.value.item()));
  return {
    kernels: after.kernelsDispatched - s.kernelsDispatched,
    readbacks: after.readbacks - s.readbacks,
    submits: after.submits - s.submits,
  };
}

function assertBounded(cost: Awaited<ReturnType<typeof stepCost>>, variant: Variant, at: string) {
  assert.equal(cost.readbacks, 0, `${variant} ${at}: no host readback inside the step`);
  assert.equal(cost.submits, 1, `${variant} ${at}: one submission`);
  assert.ok(
    cost.kernels <= MOE_LAYER_STEP_KERNELS[variant],
    `${variant} ${at}: ${cost.kernels} kernels > ${MOE_LAYER_STEP_KERNELS[variant]}`,
  );
}

gpuTest(
  "moe: a layer's forward+backward step has no host readback and a bounded kernel count (every expert type and estimator)",
  async () => {
    for (const variant of Object.keys(MOE_LAYER_STEP_KERNELS) as Variant[]) {
      assertBounded(await stepCost({ T: 64, d: 32, E: 8, k: 2 }, variant), variant, "T=64");
    }
  },
);

gpuTest("moe: the kernel bounds also hold at the benchmark shapes", async () => {
  const shapes: [string, Case, Variant[]][] = [
    ["T=4096 E=8 f=512 k=2", { T: 4096, d: 256, E: 8, F: 512, k: 2 }, [
      "gelu",
      "swiglu",
      "default",
      "sparsemixer",
    ]],
    ["T=4096 E=64 f=64 k=8", { T: 4096, d: 256, E: 64, F: 64, k: 8 }, [
      "gelu",
      "swiglu",
      "default",
    ]],
  ];
  for (const [at, c, variants] of shapes) {
    for (const v of variants) assertBounded(await stepCost(c, v), v, at);
  }
}, { slow: true });

gpuTest(
  "moe: the layer's value and gradients agree fused and unfused",
  async () => {
    const c: Case = { T: 9, d: 8, E: 4, k: 2, swiglu: true };
    const fused = await outputs(c, backend(), 11);
    mj.setFusion(false);
    let unfused: Record<string, number[]>;
    try {
      unfused = await outputs(c, backend(), 11);
    } finally {
      mj.setFusion(true);
    }
    for (const [name, v] of Object.entries(fused)) {
      assertClose(unfused[name], v, { rtol: 1e-5, atol: 1e-6, msg: name });
    }
  },
);

gpuTest(
  "moe: a layer's outputs and gradients repeat exactly",
  async () => {
    const c: Case = { T: 100, d: 16, E: 8, k: 2 };
    const a = await outputs(c, backend(), 13), b = await outputs(c, backend(), 13);
    for (const name of Object.keys(a)) assert.deepEqual(b[name], a[name], name);
  },
);

gpuTest(
  "moe: the dispatch gather runs inside the grouped matmul (one copy on native), the activation in its epilogue, and the weighted un-permute is one kernel",
  async () => {
    mj.setBackend(backend());
    const c: Case = { T: 64, d: 32, E: 8, k: 2 };
    const { x, params } = build(c, 21);
    const [xv, pv] = await mj.realize([x, params] as const);
    const fwd = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams) => mj.moe.layer(x, p, { k: c.k }).y);
    await fwd(xv, pv);
    const rows = await mj.debug.profile(() => fwd(xv, pv));
    const labels = rows.flatMap((r) => Array<string>(r.calls).fill(r.label));
    const producing = (shape: number[]) => labels.filter((l) => l.includes(`→ f32[${shape}]`));
    const P = c.T * c.k, F = f(c);
    // No [T·k, d] copy of the dispatched rows on WebGPU: the only kernel with that shape is the
    // down matmul. The C target (gatherInPlace: false) copies them once, in a gather kernel,
    // into the contiguous block BLAS reads.
    assert.deepEqual(
      producing([P, c.d]).map((l) => l.startsWith("grouped")).sort(),
      backend() === "native" ? [false, true] : [true],
      labels.join(),
    );
    // The up matmul writes GELU(x·Wᵀ) directly: one [T·k, f] kernel, the grouped one.
    assert.deepEqual(producing([P, F]).map((l) => l.startsWith("grouped")), [true], labels.join());
    // Routing weights × expert rows, summed over the k slots: one kernel writes y.
    assert.equal(producing([c.T, c.d]).length, 1, labels.join());
  },
);

gpuTest(
  "moe: expert weights are read, and their gradients written, in their stored [E, f, d] / [E, d, f] layouts (no transposing copies)",
  async () => {
    const c: Case = { T: 64, d: 32, E: 8, k: 2 };
    const { x, params } = build(c, 22);
    const [xv, pv] = await mj.realize([x, params] as const);
    const step = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams) =>
      mj.valueAndGrad((p: mj.moe.MoeParams) => mj.moe.layer(x, p, { k: c.k }).y.square().sum())(p)
    );
    await step(xv, pv);
    const rows = await mj.debug.profile(() => step(xv, pv));
    const F = f(c);
    const expertShapes = [`[${c.E},${F},${c.d}]`, `[${c.E},${c.d},${F}]`];
    const copies = rows.filter((r) =>
      r.label.startsWith("permute") && expertShapes.some((s) => r.label.endsWith(`f32${s}`))
    );
    assert.deepEqual(copies, [], rows.map((r) => r.label).join("\n"));
  },
  { only: "native" },
);
