/**
 * The example estimator registered outside the library (examples/gumbel_topk_estimator.ts)
 * against its formula (docs/methods.md §6): the top k of log s + τ·G in training, plain top-k
 * at inference, the selected scores as gates with top-k's gradient; the same on every compiled
 * backend; and trained from the command line by name.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, evalWide, prng, wideTensor } from "../helpers.ts";
import { check, gpuTest } from "../webgpu/harness.ts";
import { cli, cliDir, tinyFlags } from "../train/cli_util.ts";
import "../../examples/gumbel_topk_estimator.ts";

const T = 6, N = 5;
const r = prng(11);
const Z = Array.from({ length: T }, () => Array.from({ length: N }, () => 2 * r() - 1));
const G = Array.from(
  { length: T },
  () => Array.from({ length: N }, () => -Math.log(-Math.log(r()))),
);

const softmax = (z: number[]) => {
  const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const topk = (v: number[], k: number) =>
  v.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k)
    .map(([, i]) => i);

Deno.test("gumbel-topk: training selects the top k of log s + τ·G, inference the top k of s; the gates are the selected scores", () => {
  for (const tau of [1, 0.3, 0]) {
    for (const training of [true, false]) {
      const rt = mj.moe.route(wideTensor(Z.flat(), [T, N]), {
        topK: 2,
        estimator: { kind: "gumbel-topk", temperature: tau },
        training,
        noise: { gumbel: wideTensor(G.flat(), [T, N]) },
      });
      const [idx, w] = evalWide(rt.indices, rt.weights);
      const pi = Z.map(softmax);
      const sel = pi.map((p, t) =>
        topk(training ? p.map((v, i) => Math.log(v) + tau * G[t][i]) : p, 2)
      );
      assert.deepEqual(Array.from(idx), sel.flat(), `τ ${tau} training ${training}`);
      assertClose(w, sel.flatMap((s, t) => s.map((i) => pi[t][i])), { rtol: 1e-12 });
    }
  }
  // τ = 1 and the given draws really move the selection away from plain top-k.
  const sampled = mj.moe.route(wideTensor(Z.flat(), [T, N]), {
    topK: 2,
    estimator: "gumbel-topk",
    noise: { gumbel: wideTensor(G.flat(), [T, N]) },
  });
  assert.notDeepEqual(
    Array.from(evalWide(sampled.indices)[0]),
    Z.map(softmax).flatMap((p) => topk(p, 2)),
  );
});

Deno.test("gumbel-topk: the router's gradient is top-k's through the selected gates (finite differences)", () => {
  checkGradFD(
    (z) =>
      mj.moe.route(z, {
        topK: 2,
        estimator: "gumbel-topk",
        noise: { gumbel: wideTensor(G.flat(), [T, N]) },
      }).weights.mul(wideTensor(Array.from({ length: 2 * T }, (_, i) => (i % 3) - 1), [T, 2]))
        .sum(),
    [{ data: Z.flat(), shape: [T, N] }],
  );
  assert.deepEqual(
    mj.debug.estimators(
      mj.moe.route(mj.tensor(Z.flat(), [T, N]), {
        topK: 2,
        estimator: "gumbel-topk",
        seed: 1,
      }).weights,
    ),
    [],
    "no custom backward: the gradient is autodiff's",
  );
});

gpuTest("gumbel-topk: a layer with fresh draws from a key matches the interpreter", async () => {
  await check("gumbel-topk layer", () => {
    const x = mj.randn([32, 8], { seed: 1 });
    const params = {
      router: mj.randn([6, 8], { seed: 2 }),
      up: mj.randn([6, 8, 8], { seed: 3 }).mul(0.3),
      down: mj.randn([6, 8, 8], { seed: 4 }).mul(0.3),
    };
    const key = mj.tensor([7, 9], [2], { dtype: "u32" });
    const opts = { topK: 2, estimator: { kind: "gumbel-topk", temperature: 0.7 }, key };
    const r = mj.moe.layer(x, params, opts);
    const [g] = mj.grad((router: mj.Tensor) =>
      mj.moe.layer(x, { ...params, router }, opts).y.square().sum()
    )(params.router);
    return { y: r.y, indices: r.indices, g };
  }, { rtol: 1e-4, atol: 1e-5 });
});

Deno.test("gumbel-topk: trained from grin.ts by name with --import, as a Mixtral", async () => {
  const { dir, corpus } = await cliDir("moejit-gumbel-");
  const out = await cli([
    ...tinyFlags(corpus, "cpu"),
    "--steps",
    "2",
    "--import",
    new URL("../../examples/gumbel_topk_estimator.ts", import.meta.url).pathname,
    "--estimator",
    "gumbel-topk:temperature=0.5",
    "--out",
    `${dir}/run`,
  ]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /model_type mixtral/);
  const json = JSON.parse(await Deno.readTextFile(`${dir}/run/checkpoint/config.json`));
  assert.equal(json.moejit.config.estimator, "gumbel-topk");
  assert.deepEqual(json.moejit.config.estimatorOptions, { temperature: 0.5 });
  assert.match(
    await Deno.readTextFile(`${dir}/run/checkpoint/megatron_args.txt`),
    /NOT IN MEGATRON-CORE: Gumbel-top-k sampled routing\. .*τ = 0\.5/,
  );
  // Without the module the name is unknown, and the error says how to make it known.
  const missing = await cli([...tinyFlags(corpus, "cpu"), "--estimator", "gumbel-topk"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /unknown estimator "gumbel-topk".*--import/);
  await Deno.remove(dir, { recursive: true });
});
