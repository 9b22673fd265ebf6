/**
 * The example balancer registered outside the library (examples/ema_loss_free_balancer.ts)
 * against its formula (docs/methods.md §7) over several steps in float64, its state carried by
 * the layer, the same on every compiled backend, and run from the command line by name,
 * through a checkpoint and a resume.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, evalWide, prng, wideTensor } from "../helpers.ts";
import { check, gpuTest } from "../webgpu/harness.ts";
import { cli, cliDir, tinyFlags } from "../train/cli_util.ts";
import { emaLossFree } from "../../examples/ema_loss_free_balancer.ts";

const T = 20, N = 5, K = 2;
const r = prng(5);
const Z = Array.from({ length: T }, () => Array.from({ length: N }, () => 2 * r() - 1 + 0.3 * r()));

const softmax = (z: number[]) => {
  const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const topk = (v: number[], k: number) =>
  v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k)
    .map(([, i]) => i);

Deno.test("emaLossFree: routing, bias and EMA of the violation follow the formula over several steps", () => {
  const rate = 0.05, beta = 0.6;
  const balance = [emaLossFree({ rate, beta })];
  let state: mj.moe.LayerState = {};
  let b = new Array(N).fill(0), e = new Array(N).fill(0);
  const mean = (T * K) / N;
  for (let step = 0; step < 4; step++) {
    // The same logits every step, so only the bias changes the routing.
    const out = mj.moe.route(wideTensor(Z.flat(), [T, N]), { topK: K, balance, state });
    const pi = Z.map(softmax);
    const sel = pi.map((p) => topk(p.map((v, i) => v + b[i]), K));
    const counts = new Array(N).fill(0);
    sel.flat().forEach((i) => counts[i]++);
    e = e.map((v, i) => beta * v + (1 - beta) * (mean - counts[i]) / mean);
    b = b.map((v, i) => v + rate * Math.sign(e[i]));
    const [idx, bias, viol, range] = evalWide(
      out.indices,
      out.state.emaBias,
      out.state.emaViolation,
      out.metrics.bias_range,
    );
    assert.deepEqual(Array.from(idx), sel.flat(), `step ${step}`);
    // Float64 arithmetic; the scalar constants (β, 1 − β, u, c̄) are f32 in the graph.
    assertClose(viol, e, { rtol: 1e-6, atol: 1e-12, msg: `step ${step} violation` });
    assertClose(bias, b, { rtol: 1e-6, atol: 1e-12, msg: `step ${step} bias` });
    assertClose(range, [Math.max(...b) - Math.min(...b)], { rtol: 1e-6, atol: 1e-12 });
    assert.deepEqual(Object.keys(out.state), ["emaBias", "emaViolation"]);
    state = {
      emaBias: wideTensor(Array.from(bias), [N]),
      emaViolation: wideTensor(Array.from(viol), [N]),
    };
  }
  assert.ok(b.some((v) => v !== 0), "the bias moved");
  // β = 0 is loss-free balancing itself: the same routing and bias.
  const lf = mj.moe.route(wideTensor(Z.flat(), [T, N]), {
    topK: K,
    balance: [mj.balance.lossFree({ rate })],
  });
  const ema0 = mj.moe.route(wideTensor(Z.flat(), [T, N]), {
    topK: K,
    balance: [emaLossFree({ rate, beta: 0 })],
  });
  assertClose(evalWide(ema0.state.emaBias)[0], evalWide(lf.state.lossFreeBias)[0]);
  assert.throws(() => emaLossFree({ beta: 1 }), /emaLossFree: beta must be a number in \[0, 1\)/);
});

gpuTest("emaLossFree: a layer step and its state match the interpreter", async () => {
  await check("emaLossFree layer", () => {
    const x = mj.randn([40, 8], { seed: 1 });
    const params = {
      router: mj.randn([6, 8], { seed: 2 }),
      up: mj.randn([6, 8, 8], { seed: 3 }).mul(0.3),
      down: mj.randn([6, 8, 8], { seed: 4 }).mul(0.3),
    };
    const state = { emaBias: mj.randn([6], { seed: 5 }).mul(0.1), emaViolation: mj.zeros([6]) };
    const r = mj.moe.layer(x, params, {
      topK: 2,
      estimator: "sparsemixer",
      seed: 3,
      balance: [emaLossFree({ rate: 0.01, beta: 0.5 })],
      state,
    });
    return { y: r.y, bias: r.state.emaBias, violation: r.state.emaViolation };
  }, { rtol: 1e-4, atol: 1e-5 });
});

Deno.test("emaLossFree: run from grin.ts by name with --import, checkpointed and resumed with its state", async () => {
  const { dir, corpus } = await cliDir("moejit-ema-");
  const module = new URL("../../examples/ema_loss_free_balancer.ts", import.meta.url).pathname;
  const args = [
    ...tinyFlags(corpus, "cpu"),
    "--import",
    module,
    "--balance",
    "aux:0.01,lossfree-ema:0.01:beta=0.5",
    "--out",
    `${dir}/run`,
  ];
  const first = await cli([...args, "--steps", "2"]);
  assert.equal(first.code, 0, first.stderr);
  // A selection bias leaves every Hugging Face family, and the README says why.
  assert.match(first.stdout, /model_type moejit/);
  const ck = `${dir}/run/checkpoint`;
  const json = JSON.parse(await Deno.readTextFile(`${ck}/config.json`));
  assert.deepEqual(json.moejit.config.balance, [
    { kind: "auxLoss", alpha: 0.01 },
    { kind: "emaLossFree", rate: 0.01, beta: 0.5 },
  ]);
  assert.match(json.moejit.hf.line, /balance emaLossFree: its per-expert selection bias/);
  // Its declared metric is logged per layer beside the built-in ones.
  const records = (await Deno.readTextFile(`${dir}/run/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).filter((r) => r.layers);
  assert.ok(records.length > 0);
  for (const r of records) {
    assert.ok(Number.isFinite(r.layers[0].bias_range) && r.layers[0].bias_range >= 0);
    assert.ok(Number.isFinite(r.layers[0].max_vio));
    assert.equal(r.layers_mean.bias_range, r.layers[0].bias_range);
  }
  const loaded = await mj.io.loadCheckpoint(ck);
  const layers = (loaded.trainingState!.tensors as { layers: Record<string, mj.Tensor>[] }).layers;
  assert.deepEqual(Object.keys(layers[0]), ["emaBias", "emaViolation"]);
  const resumed = await cli([...args, "--steps", "3", "--resume", ck]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /after 3 steps/);
  await Deno.remove(dir, { recursive: true });
});
