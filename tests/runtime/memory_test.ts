/**
 * Device memory and the step cache: the liveness plan reuses temporary buffers within a step,
 * the memory counters follow allocations (WebGPU buffers: the native backend's values are host
 * arrays, which the counters do not track), and a step is compiled once per signature (on each
 * compiled backend).
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
const n = 256;
const matrixBytes = n * n * 4;

async function chain() {
  const x = await mj.realize(mj.randn([n, n], { seed: 1 }));
  const ws = await mj.realize(
    Array.from({ length: 8 }, (_, i) => mj.randn([n, n], { seed: 2 + i }).mul(0.05)),
  );
  // Eight matmuls in a row: seven [n, n] temporaries, each dead once the next matmul has read it.
  const f = mj.jit((x: mj.Tensor, ws: mj.Tensor[]) => ws.reduce((y, w) => y.matmul(w).tanh(), x));
  return { x, ws, f };
}

// bytesAllocated counts WebGPU buffers (src/runtime/buffers.ts): a WebGPU runtime detail.
gpuTest(
  "memory: the liveness plan reuses temporaries (8 chained matmuls need 2 + the output)",
  async () => {
    mj.setBackend(backend());
    const { x, ws, f } = await chain();
    const before = mj.stats();
    const y = await f(x, ws);
    const after = mj.stats();
    assert.equal(after.kernelsDispatched - before.kernelsDispatched, 8);
    const grown = after.bytesAllocated - before.bytesAllocated;
    assert.ok(grown > 0, "the step allocated its buffers");
    assert.ok(grown <= 3 * matrixBytes, `${grown / matrixBytes} matrices allocated, expected ≤ 3`);
    assert.ok(after.peakBytes >= after.bytesAllocated);
    assert.equal((await y.data()).length, n * n);
    // The second call reuses the step's temporaries: only its new output is allocated (the first
    // output is still alive), and nothing is compiled.
    const again = mj.stats();
    await f(x, ws);
    const last = mj.stats();
    assert.equal(last.bytesAllocated - again.bytesAllocated, matrixBytes);
    assert.equal(last.stepsCompiled - again.stepsCompiled, 0);
    assert.equal(last.pipelinesCompiled - again.pipelinesCompiled, 0);
  },
  { only: "webgpu" },
);

gpuTest(
  "memory: a new shape or dtype compiles a new step; the same signature compiles none",
  async () => {
    mj.setBackend(backend());
    const f = mj.jit((x: mj.Tensor) => x.mul(2).add(1).sum());
    // Host data, so that calling f compiles nothing but f's own step.
    const steps = async (shape: number[], dtype: "f32" | "i32" = "f32", v = 1) => {
      const x = mj.tensor(Array(shape[0] * shape[1]).fill(v), shape, { dtype });
      const s = mj.stats().stepsCompiled;
      await (await f(x)).data();
      return mj.stats().stepsCompiled - s;
    };
    assert.equal(await steps([3, 5]), 1);
    assert.equal(await steps([3, 5], "f32", 2), 0);
    assert.equal(await steps([4, 5]), 1);
    assert.equal(await steps([3, 5], "i32"), 1);
    assert.equal(await steps([4, 5], "f32", 7), 0);
  },
);
