/**
 * Checked indices: an out-of-range index raises the same named error on the interpreter and on
 * WebGPU (the op the user called, the index, the axis size, the call site), never a clamped or
 * dropped value. On WebGPU the kernels record the failure in the step's error buffer and the
 * next readback raises it, in the same round trip as the results.
 */
import { assert, backend, gpuTest, mj } from "./harness.ts";

const i32 = (v: number[], shape?: number[]) => mj.tensor(v, shape, { dtype: "i32" });

/** Runs `f` on both backends and returns each error message (or throws if one succeeds). */
async function errorsOn(f: () => Promise<unknown>): Promise<{ cpu: string; compiled: string }> {
  const out: Record<string, string> = {};
  for (const b of ["cpu", backend()] as const) {
    mj.setBackend(b);
    try {
      const v = await f();
      assert.fail(`${b}: expected an index error, got ${v}`);
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.ok(e instanceof mj.MoejitError, `${b}: ${e}`);
      out[b] = (e as Error).message;
    }
  }
  return { cpu: out.cpu, compiled: out[backend()] };
}

/** Both backends raise `want` (a regex over the first line), with this file as the call site. */
async function sameError(f: () => Promise<unknown>, want: RegExp): Promise<void> {
  const { cpu, compiled } = await errorsOn(f);
  assert.equal(compiled, cpu, "the two backends must raise the same error");
  assert.match(cpu.split("\n")[0], want);
  assert.match(cpu, /\n {4}at your call: .*index_checks_test\.ts:\d+:\d+/);
}

gpuTest("index checks: gather, takeRows, scatterAdd(Rows) reproductions", async () => {
  await sameError(
    () => mj.tensor([1, 2, 3]).gather(0, i32([0, 5, 1])).data(),
    /^gather: index 5 is out of range for axis 0 \(size 3\); expected an integer in 0\.\.2$/,
  );
  await sameError(
    () => mj.tensor([1, 2, 3]).gather(0, i32([0, -1, 1])).data(),
    /^gather: index -1 is out of range for axis 0/,
  );
  // A gather from a constant reads no element, but the check still runs.
  await sameError(
    () => mj.takeRows(mj.ones([5, 3]), i32([1, 7])).data(),
    /^takeRows: index 7 is out of range for the rows of x \(size 5\)/,
  );
  await sameError(
    () => mj.takeRows(mj.randn([5, 3], { seed: 1 }), i32([-2, 1])).data(),
    /^takeRows: index -2 is out of range/,
  );
  await sameError(
    () => mj.scatterAdd(mj.ones([3]), 0, i32([0, 9, 1]), [4]).data(),
    /^scatterAdd: index 9 is out of range for axis 0 of the target \(size 4\)/,
  );
  await sameError(
    () => mj.scatterAddRows(mj.ones([2, 3]), i32([0, -1]), 4).data(),
    /^scatterAddRows: index -1 is out of range for the rows of the target \(size 4\)/,
  );
  // Several bad indices: both backends report the same one (the smallest past the end).
  await sameError(
    () => mj.tensor([1, 2, 3]).gather(0, i32([9, 3, -4, 7])).data(),
    /^gather: index 3 is out of range/,
  );
});

gpuTest("index checks: gradients, jitted steps, and recovery after an error", async () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  await sameError(async () => {
    const [g] = mj.grad((x: mj.Tensor) => x.gather(1, i32([0, 3], [2, 1])).sum())(x);
    return await g.data();
  }, /^gather: index 3 is out of range for axis 1 \(size 3\)/);
  await sameError(async () => {
    const [g] = mj.grad((t: mj.Tensor) => mj.takeRows(t, i32([2, 0])).square().sum())(x);
    return await g.data();
  }, /^takeRows: index 2 is out of range for the rows of x \(size 2\)/);

  mj.setBackend(backend());
  const step = mj.jit((t: mj.Tensor, i: mj.Tensor) => mj.takeRows(t, i).mul(2));
  const table = await mj.realize(mj.randn([4, 2], { seed: 3 }));
  if (backend() === "webgpu") {
    // A jitted step keeps its outputs on the device: the error surfaces at the next readback.
    await step(table, i32([1, 4]));
    const good = await step(table, i32([3, 0]));
    await assert.rejects(() => good.data(), /takeRows: index 4 is out of range/);
    // The error buffer was cleared: the same good step reads back normally now.
    assert.equal((await good.data()).length, 4);
  } else {
    // Native steps run on the host: the failing call itself raises.
    await assert.rejects(() => step(table, i32([1, 4])), /takeRows: index 4 is out of range/);
  }
  assert.equal((await (await step(table, i32([0, 1]))).data()).length, 4);
});

gpuTest("index checks: the error travels with the results (no extra readback)", async () => {
  mj.setBackend(backend());
  const x = await mj.realize(mj.randn([64, 8], { seed: 5 }));
  const idx = i32(Array.from({ length: 32 }, (_, i) => (i * 7) % 64));
  const y = mj.takeRows(x, idx).sum(1);
  await y.data(); // compile and warm up
  const before = mj.stats().readbacks;
  await mj.takeRows(x, i32(Array.from({ length: 32 }, (_, i) => (i * 5) % 64))).sum(1).data();
  assert.equal(mj.stats().readbacks - before, 1);
}, { only: "webgpu" });

gpuTest("index checks: a custom estimator's out-of-range experts are an error", async () => {
  const T = 8, d = 4, N = 4, f = 8;
  for (const bad of [N, -1]) {
    await sameError(
      async () => {
        const x = mj.randn([T, d], { seed: 1 });
        const params = {
          router: mj.randn([N, d], { seed: 2 }),
          up: mj.randn([N, f, d], { seed: 3 }),
          down: mj.randn([N, d, f], { seed: 4 }),
        };
        const estimator = () => ({
          indices: mj.full([T, 2], bad, { dtype: "i32" }),
          weights: mj.ones([T, 2]),
        });
        const r = mj.moe.layer(x, params, { k: 2, estimator, activation: "gelu" });
        return await r.y.data();
      },
      new RegExp(
        `^moe\\.route: index ${bad} is out of range for the custom estimator's experts \\(size 4\\)`,
      ),
    );
  }
  await sameError(
    () => mj.moe.routingTable(i32([0, 1, 4, 2], [2, 2]), 4).destRow.data(),
    /^moe\.routingTable: index 4 is out of range for the experts \(size 4\)/,
  );
});

gpuTest("index checks: in-range indices from a computation pass, fused or not", async () => {
  for (const fused of [true, false]) {
    mj.setBackend(backend());
    mj.setFusion(fused);
    try {
      const x = mj.tensor(Array.from({ length: 30 }, (_, i) => i * 0.5 - 3), [6, 5]);
      const j = mj.arange(0, 6, 1, { dtype: "i32" }).mul(3).mod(5).reshape([6, 1]);
      const got = await x.gather(1, j).data();
      mj.setBackend("cpu");
      const want = await x.gather(1, j).data();
      assert.deepEqual([...got], [...want]);
    } finally {
      mj.setFusion(true);
    }
  }
});
