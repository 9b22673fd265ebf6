/**
 * Determinism: the same inputs give bit-identical results on the same adapter. f32 scatter-adds
 * (the gradient of gather/takeRows: embeddings) are sorted by target and summed per segment in
 * update order instead of with float atomics; these tests pin that down, from the sort itself
 * (checked against a stable sort on the interpreter) to a whole jitted training step called 8
 * times.
 */
import { assert, backend, check, f32, gpuTest, i32, mj } from "./harness.ts";
import { stableOrder } from "../../src/passes/scatter.ts";
import { compileStep } from "../../src/passes/compile.ts";

const bits = (a: ArrayLike<number>) => new Uint32Array(Float32Array.from(a).buffer);

function sameBits(runs: ArrayLike<number>[], what: string): void {
  const first = bits(runs[0]);
  runs.forEach((r, k) => {
    const b = bits(r);
    const i = b.findIndex((v, j) => v !== first[j]);
    assert.equal(i, -1, `${what}: run ${k} differs from run 0 at element ${i}`);
  });
}

gpuTest(
  "determinism: the stable order by key matches a stable sort, on both backends",
  async () => {
    const cases: [number, number, number][] = [[1, 5, 1], [300, 7, 2], [1000, 50, 3], [
      513,
      3000,
      4,
    ]];
    for (const [R, K, seed] of cases) {
      const keys = i32([R], seed, 0, K - 1);
      const want = [...keys.data].map((k, p) => [k, p]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
        .map(([, p]) => p);
      const counts = new Array(K + 1).fill(0);
      for (const k of keys.data) counts[k + 1]++;
      for (let k = 1; k <= K; k++) counts[k] += counts[k - 1];
      for (const b of ["cpu", backend()] as const) {
        mj.setBackend(b);
        const { order, offsets } = stableOrder(keys(), K);
        assert.deepEqual([...await order.data()], want, `${b} R=${R} K=${K}`);
        assert.deepEqual([...await offsets.data()], counts, `${b} offsets R=${R} K=${K}`);
      }
    }
  },
);

gpuTest(
  "determinism: f32 scatter-adds with many updates per target match the interpreter",
  async () => {
    // Row scatters (takeRows' gradient): few and many targets, more updates than one sort chunk.
    for (const [M, V, d, seed] of [[300, 50, 8, 1], [3000, 100000, 4, 2], [700, 3, 5, 3]]) {
      const upd = f32([M, d], seed, -3, 3), rows = i32([M], seed + 10, 0, V - 1);
      await check(`scatterAddRows M=${M} V=${V}`, () => mj.scatterAddRows(upd(), rows(), V), {
        rtol: 2e-6,
        atol: 2e-6,
      });
    }
    // An index that varies along the inner axes, on a middle axis.
    const u = f32([3, 200, 5], 7), ix = i32([3, 200, 5], 8, 0, 9);
    await check("scatterAdd along axis 1", () => mj.scatterAdd(u(), 1, ix(), [3, 10, 5]), {
      rtol: 2e-6,
      atol: 2e-6,
    });
    // The gradient of takeRows through a computed table.
    const t = f32([40, 6], 9), r = i32([500], 10, 0, 39);
    await check("takeRows gradient", () => {
      const [g] = mj.grad((x: mj.Tensor) => mj.takeRows(x.tanh(), r()).square().sum())(t());
      return g;
    }, { rtol: 1e-5, atol: 1e-5 });
  },
);

gpuTest("determinism: no kernel of a training step uses float atomics", () => {
  const config = mj.nn.modelConfig({
    vocabSize: 64,
    dModel: 16,
    nHeads: 2,
    nLayers: 1,
    experts: 4,
    topK: 2,
    dFf: 16,
    maxSeqLen: 8,
  });
  const params = mj.nn.initParams(config, 1);
  const ids = mj.tensor(Array.from({ length: 64 }, (_, i) => (i * 5) % 64), [8, 8], {
    dtype: "i32",
  });
  const [, [g]] = mj.valueAndGrad((p: mj.nn.Params) => {
    const r = mj.nn.forward(p, ids, config, { training: true });
    return mj.nn.crossEntropy(r.logits.reshape([-1, 64]), ids.reshape([-1]));
  })(params);
  const roots = mj.treeTensors(g).map((t) => t.node);
  const prog = compileStep(roots, (n) => n.op === "buffer", { fuse: true, maxBindings: 32 });
  for (const l of prog.launches) {
    assert.ok(!/atomicCompareExchange/.test(l.program.code), `${l.program.label} uses a CAS loop`);
    for (const b of l.program.bindings) {
      if (b.atomic && !b.errors) {
        assert.ok(!/bitcast<f32>/.test(l.program.code), `${l.program.label}: float atomics`);
      }
    }
  }
});

gpuTest("determinism: a jitted training step called 8 times is bit-identical", async () => {
  mj.setBackend(backend());
  const config = mj.nn.modelConfig({
    vocabSize: 96,
    dModel: 32,
    nHeads: 2,
    nLayers: 2,
    experts: 4,
    topK: 2,
    dFf: 32,
    maxSeqLen: 16,
  });
  const optimizer = mj.optim.adamw();
  const step = mj.train.trainStep(config, { optimizer, seed: 3 });
  const params = await mj.realize(mj.nn.initParams(config, 7));
  const state = {
    params,
    opt: optimizer.init(params),
    layers: mj.train.initLayerState(params, config),
  };
  // Repeated tokens: many updates per embedding row in the backward pass.
  const tok = Array.from({ length: 8 * 17 }, (_, i) => (i * i) % 11);
  const inputs = mj.tensor(tok.slice(0, 128), [8, 16], { dtype: "i32" });
  const targets = mj.tensor(tok.slice(8, 136), [8, 16], { dtype: "i32" });
  const outs: Float32Array[][] = [];
  for (let run = 0; run < 8; run++) {
    const { state: next, metrics } = await step(state, inputs, targets, 1e-3, 1);
    const leaves = mj.treeTensors(next.params);
    outs.push([
      (await metrics.data()) as Float32Array,
      ...(await Promise.all(leaves.map((t) => t.data()))) as Float32Array[],
    ]);
  }
  for (let j = 0; j < outs[0].length; j++) sameBits(outs.map((o) => o[j]), `output ${j}`);
});
