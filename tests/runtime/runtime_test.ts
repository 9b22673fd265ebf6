/**
 * Runtime acceptance on each compiled backend (WebGPU, native: the same compiled step programs):
 * kernel counts, compiled-step reuse, host round trips, long reductions (llvmpipe's loop cap on
 * WebGPU), fused vs unfused agreement; and, WebGPU only, shader error reports (WGSL).
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, randomArray } from "../helpers.ts";
import { compileStep } from "../../src/passes/compile.ts";
import { acquireGpu } from "../../src/runtime/device.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import { BufferPool } from "../../src/runtime/buffers.ts";
import { runStep } from "../../src/runtime/executor.ts";
import { IndexErrorLog } from "../../src/runtime/index_errors.ts";
import { ShaderError } from "../../src/runtime/pipelines.ts";

const gpu = await acquireGpu();

/** Host readbacks of reading one value: one on WebGPU, none on native (values are host arrays). */
const readbackOf = () => (backend() === "webgpu" ? 1 : 0);

function delta(before: mj.Stats): mj.Stats {
  const now = mj.stats();
  const d = { ...now };
  for (const k of Object.keys(now) as (keyof mj.Stats)[]) d[k] = now[k] - before[k];
  return d;
}

async function value(shape: number[], seed: number) {
  return await mj.realize(mj.tensor(randomArray(shape.reduce((a, b) => a * b, 1), seed), shape));
}

gpuTest("runtime: x.mul(2).add(1).exp().sum() is one kernel", async () => {
  mj.setBackend(backend());
  const x = await value([37, 53], 1);
  const s = mj.stats();
  const v = await x.mul(2).add(1).exp().sum().item();
  assert.equal(delta(s).kernelsDispatched, 1);
  const xs = await x.data();
  const expected = Array.from(xs).reduce((a, b) => a + Math.exp(2 * b + 1), 0);
  assertClose([v], [expected], { rtol: 1e-5 });
});

gpuTest("runtime: softmax(x @ w + b) is at most two kernels", async () => {
  mj.setBackend(backend());
  const x = await value([64, 32], 2);
  const w = await value([32, 24], 3);
  const b = await value([24], 4);
  const s = mj.stats();
  const y = await x.matmul(w).add(b).softmax(-1).data();
  assert.ok(delta(s).kernelsDispatched <= 2, `${delta(s).kernelsDispatched} kernels`);
  mj.setBackend("cpu");
  assertClose(y, await x.matmul(w).add(b).softmax(-1).data(), { rtol: 1e-5, atol: 1e-7 });
});

// A WebGPU target feature: the WGSL matmul templates apply an operand's elementwise producer to
// each element they read (a prologue). The C target hands operands to BLAS as they are stored
// (codegen/c/target.ts, prologues: false), so there the producers are kernels of their own.
gpuTest(
  "runtime: elementwise producers of matmul operands fuse into its reads (one kernel)",
  async () => {
    const x = await value([40, 24], 5), w = await value([24, 16], 6);
    const s = await value([24], 7), b = await value([24], 8);
    const cases: Record<string, () => mj.Tensor> = {
      "x.exp() @ w.tanh()": () => x.exp().matmul(w.tanh()),
      // s and b are broadcast rows (a normalization's gain and bias).
      "(x·s + b) @ w": () => x.mul(s).add(b).matmul(w),
    };
    for (const [name, f] of Object.entries(cases)) {
      mj.setBackend(backend());
      const st = mj.stats();
      const y = await f().data();
      assert.equal(delta(st).kernelsDispatched, 1, name);
      mj.setBackend("cpu");
      assertClose(y, await f().data(), { rtol: 1e-5, atol: 1e-5, msg: name });
    }
  },
  { only: "webgpu" },
);

type Mlp = { w1: mj.Tensor; b1: mj.Tensor; w2: mj.Tensor; b2: mj.Tensor };
const mlpLoss = (p: Mlp, x: mj.Tensor, y: mj.Tensor) =>
  x.matmul(p.w1).add(p.b1).gelu().matmul(p.w2).add(p.b2).sub(y).square().mean();

async function mlpParams(): Promise<Mlp> {
  return await mj.realize({
    w1: mj.tensor(randomArray(32 * 48, 11, -0.3, 0.3), [32, 48]),
    b1: mj.tensor(randomArray(48, 12, -0.1, 0.1), [48]),
    w2: mj.tensor(randomArray(48 * 8, 13, -0.3, 0.3), [48, 8]),
    b2: mj.tensor(randomArray(8, 14, -0.1, 0.1), [8]),
  });
}

/**
 * The stated kernel count of a two-layer GELU MLP's forward+backward: the loss and the
 * gradients of all four parameters. Measured: 10 — two forward matmuls, the bias add + GELU
 * (the pre-activation is kept for the backward), the loss reduction, the output gradient, three
 * backward matmuls (the transposes are read in place; the first has the GELU backward in its
 * epilogue), and two bias sums.
 */
export const MLP_FWD_BWD_KERNELS = 10;

gpuTest("runtime: a whole MLP forward+backward is a small, stated number of kernels", async () => {
  mj.setBackend(backend());
  const p = await mlpParams();
  const x = await value([64, 32], 15), y = await value([64, 8], 16);
  const fwdBwd = mj.jit((p: Mlp, x: mj.Tensor, y: mj.Tensor) =>
    mj.valueAndGrad((p: Mlp) => mlpLoss(p, x, y))(p)
  );
  await fwdBwd(p, x, y);
  const s = mj.stats();
  const [loss, [g]] = await fwdBwd(p, x, y);
  const d = delta(s);
  assert.equal(d.kernelsDispatched, MLP_FWD_BWD_KERNELS, `${d.kernelsDispatched} kernels`);
  assert.equal(d.submits, 1);
  assert.equal(d.readbacks, 0);
  mj.setBackend("cpu");
  const [l2, [g2]] = mj.valueAndGrad((p: Mlp) => mlpLoss(p, x, y))(p);
  assertClose([await loss.item()], [await l2.item()], { rtol: 1e-5 });
  for (const k of ["w1", "b1", "w2", "b2"] as const) {
    assertClose(await g[k].data(), await g2[k].data(), { rtol: 1e-4, atol: 1e-6, msg: k });
  }
});

gpuTest(
  "runtime: a jitted step compiles nothing the second time, also with a new learning rate",
  async () => {
    mj.setBackend(backend());
    const step = mj.jit((p: Mlp, x: mj.Tensor, y: mj.Tensor, lr: number) => {
      const [loss, [g]] = mj.valueAndGrad(mlpLoss)(p, x, y);
      const upd = (k: keyof Mlp) => p[k].sub(g[k].mul(lr));
      return { loss, p: { w1: upd("w1"), b1: upd("b1"), w2: upd("w2"), b2: upd("b2") } };
    });
    let p = await mlpParams();
    const x = await value([64, 32], 17), y = await value([64, 8], 18);
    let r = await step(p, x, y, 0.1);
    p = r.p;
    for (const lr of [0.1, 0.05, 0.01]) {
      const s = mj.stats();
      r = await step(p, x, y, lr);
      p = r.p;
      const d = delta(s);
      assert.equal(d.pipelinesCompiled, 0, `lr ${lr}: pipelines compiled`);
      assert.equal(d.stepsCompiled, 0, `lr ${lr}: steps compiled`);
      assert.equal(d.submits, 1, `lr ${lr}: submits`);
      assert.equal(d.readbacks, 0, `lr ${lr}: readbacks`);
    }
    const s = mj.stats();
    await r.loss.item();
    assert.equal(delta(s).readbacks, readbackOf(), "reading the loss is one host round trip");
  },
);

gpuTest(
  "runtime: a 1,000,000-element sum is right despite llvmpipe's 65,535-iteration loop cap",
  async () => {
    mj.setBackend(backend());
    assert.equal(await mj.ones([1_000_000]).sum().item(), 1_000_000);
    const data = randomArray(1_000_000, 21, 0, 1);
    const x = mj.tensor(data);
    const expected = data.reduce((a, b) => a + b, 0);
    assertClose([await x.sum().item()], [expected], { rtol: 1e-5 });
    assert.equal(await mj.arange(1_000_000).max().item(), 999_999);
  },
);

gpuTest("runtime: a matmul with K = 100,000 is right (split-K)", async () => {
  mj.setBackend(backend());
  const M = 8, K = 100_000, N = 12;
  const a = randomArray(M * K, 22), b = randomArray(K * N, 23);
  const c = await mj.tensor(a, [M, K]).matmul(mj.tensor(b, [K, N])).data();
  const ref = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const av = Math.fround(a[i * K + k]);
      for (let j = 0; j < N; j++) ref[i * N + j] += av * Math.fround(b[k * N + j]);
    }
  }
  // Sums of 100,000 terms of size ~0.3: compare against the scale of the accumulated terms.
  assertClose(c, ref, { rtol: 1e-4, atol: 2e-3 });
});

// WGSL and the WebGPU executor: a WebGPU runtime detail.
gpuTest("runtime: an invalid generated shader raises an error that shows the WGSL", async () => {
  const { device } = gpu!;
  const x = await mj.realize(mj.tensor([1, 2, 3]));
  const prog = compileStep([x.add(1).node], (n) => n.op === "buffer", {
    fuse: true,
    maxBindings: 8,
  });
  prog.launches[0].program.code = prog.launches[0].program.code.replace(
    "gidx] =",
    "gidx] = undefined_name +",
  );
  const pool = new BufferPool(device);
  const input = pool.acquire(12);
  await assert.rejects(
    () => runStep(device, pool, prog, [input], [x.add(1).node], [true], new IndexErrorLog()),
    (e: unknown) => {
      assert.ok(e instanceof ShaderError);
      assert.match(e.message, /undefined_name/);
      assert.match(e.message, /--- WGSL ---/);
      assert.match(e.message, /\s+\d+ \| @group\(0\) @binding\(0\)/);
      assert.match(e.message, /kernel "add → f32\[3\]"/); // the op that produced the kernel
      return true;
    },
  );
}, { only: "webgpu" });

gpuTest(
  "runtime: fused and unfused execution agree on a model step",
  async () => {
    mj.setBackend(backend());
    const run = async () => {
      // Fresh inputs each run: equal graphs over the same values would hit the residency cache.
      const p = await mlpParams();
      const x = await value([16, 32], 31),
        y = await value([16, 8], 32);
      const [l, [g]] = mj.valueAndGrad(mlpLoss)(p, x, y);
      return [await l.item(), ...(await g.w1.data()), ...(await g.b2.data())];
    };
    const fused = await run();
    mj.setFusion(false);
    const s = mj.stats();
    let unfused: number[];
    try {
      unfused = await run();
    } finally {
      mj.setFusion(true);
    }
    assert.ok(delta(s).kernelsDispatched > MLP_FWD_BWD_KERNELS, "unfused runs more kernels");
    assertClose(unfused, fused, { rtol: 1e-5, atol: 1e-7 });
  },
);

gpuTest("runtime: eager data() costs one submit and one readback (none on native)", async () => {
  mj.setBackend(backend());
  const x = await value([100], 41);
  const s = mj.stats();
  await x.exp().add(x.sin()).sum().data();
  const d = delta(s);
  assert.equal(d.submits, 1);
  assert.equal(d.readbacks, readbackOf());
});

gpuTest(
  "runtime: a kernel shared by two different steps is generated once (kernel cache)",
  async () => {
    mj.setBackend(backend());
    const x = await value([33, 7], 51), y = await value([19], 52);
    await x.exp().mul(3).data();
    const s = mj.stats();
    // A new step (two outputs) whose first kernel has the signature of the step above.
    const [a, b] = await mj.realize([x.exp().mul(3), y.sin().add(2)]);
    const d = delta(s);
    assert.equal(d.stepsCompiled, 1);
    assert.equal(d.kernelsGenerated, 1, "only the sin kernel is new");
    assertClose(await a.data(), Array.from(await x.data(), (v) => 3 * Math.exp(v)), { rtol: 1e-5 });
    assertClose(await b.data(), Array.from(await y.data(), (v) => Math.sin(v) + 2), {
      rtol: 1e-5,
      atol: 1e-6,
    });
  },
);

gpuTest(
  "runtime: a random key passed into a jitted step gives fresh, reproducible noise without recompiling",
  async () => {
    const draw = mj.jit((key: mj.Tensor) => ({
      u: mj.rand([5], { key }),
      n: mj.randn([3], { key }),
    }));
    const key = (step: number) => mj.tensor([7, step], undefined, { dtype: "u32" });
    const run = async (backend: mj.BackendName) => {
      mj.setBackend(backend);
      const out: number[][] = [];
      for (const step of [1, 2, 1]) {
        const r = await draw(key(step));
        out.push([...(await r.u.data()), ...(await r.n.data())]);
      }
      return out;
    };
    const cpu = await run("cpu");
    const s = mj.stats();
    const gpu = await run(backend());
    assert.equal(delta(s).stepsCompiled, 1, "one compiled step for every key");
    assert.deepEqual(
      gpu.map((r) => r.slice(0, 5)),
      cpu.map((r) => r.slice(0, 5)),
      "uniforms are bit-identical",
    );
    gpu.forEach((r, i) => assertClose(r.slice(5), cpu[i].slice(5), { rtol: 1e-5, atol: 1e-6 }));
    assert.deepEqual(cpu[0], cpu[2], "the same key repeats");
    assert.notDeepEqual(cpu[0], cpu[1], "another key differs");
  },
);
