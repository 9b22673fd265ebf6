/**
 * Registering your own routing gradient estimator with mj.customVjp and using it in a MoE
 * layer. The example is a straight-through estimator: the forward gate is the hard top-k
 * mask times the score, the backward pretends the gate is the full softmax (every expert's
 * score receives ⟨∂L/∂w, ·⟩ as if it were selected) — deliberately not the forward's gradient,
 * hence `estimator: true`.
 *
 *   deno run -A examples/custom_estimator.ts
 */
import * as mj from "../mod.ts";

/** Gate weights [T, k] for `indices`, with a straight-through backward into all scores. */
const straightThroughGate = mj.customVjp({
  name: "example.straightThroughGate",
  fwd: (scores: mj.Tensor, indices: mj.Tensor) => scores.gather(-1, indices),
  // Spread each slot's gradient over every expert in proportion to its score (a dense
  // surrogate), instead of only the selected ones.
  bwd: (_saved, g, [scores, _indices]) => {
    const s = scores as mj.Tensor;
    const total = (g as mj.Tensor).sum(-1, true); // [T, 1]
    return [total.mul(s), null];
  },
  estimator: true,
});

/** A routing estimator: selection by top-k of the (biased) scores, weights from our rule. */
const straightThrough: mj.moe.EstimatorFn = ({ scores, selection, topK }) => {
  const indices = selection.topk(topK).indices;
  return { indices, weights: straightThroughGate(scores, indices) };
};

const T = 256, d = 32, N = 8, f = 64;
const x = mj.randn([T, d], { seed: 0 });
const target = mj.randn([T, d], { seed: 1 });
let params: mj.moe.MoeParams = await mj.realize({
  router: mj.randn([N, d], { seed: 2 }).mul(0.1),
  up: mj.randn([N, f, d], { seed: 3 }).mul(1 / Math.sqrt(d)),
  down: mj.randn([N, d, f], { seed: 4 }).mul(1 / Math.sqrt(f)),
});

const step = mj.jit((p: mj.moe.MoeParams, lr: number) => {
  const loss = (p: mj.moe.MoeParams) =>
    mj.moe.layer(x, p, { topK: 2, estimator: straightThrough }).y.sub(target).square().mean();
  const [l, [g]] = mj.valueAndGrad(loss)(p);
  return {
    loss: l,
    p: {
      router: p.router.sub(g.router.mul(lr)),
      up: p.up.sub(g.up.mul(lr)),
      down: p.down.sub(g.down.mul(lr)),
    },
  };
});

console.log(
  `backend: ${await mj
    .backendName()}; a MoE layer trained with a custom straight-through estimator`,
);
for (let i = 0; i <= 100; i++) {
  const r = await step(params, 0.5);
  params = r.p;
  if (i % 25 === 0) {
    console.log(`step ${String(i).padStart(3)}  loss ${(await r.loss.item()).toFixed(4)}`);
  }
}
const { counts } = mj.moe.layer(x, params, { topK: 2, estimator: straightThrough });
console.log(`tokens per expert: ${Array.from(await counts.data()).join(" ")}`);
