/**
 * A routing estimator registered from outside the library: Gumbel-top-k sampled routing.
 *
 * In training each token samples its k experts without replacement, in proportion to its
 * (biased) router scores, by the Gumbel-top-k trick (Vieira 2014; Kool, van Hoof & Welling,
 * "Stochastic Beams and Where to Find Them", ICML 2019): the top k of log s_i + τ·G_i with G_i
 * i.i.d. standard Gumbel. τ = 1 samples exactly in proportion to the scores; τ → 0 is plain
 * top-k; in between the exploration is tempered. The gates are the selected scores and the
 * router's gradient flows through them, as with top-k routing (the selection is a constant). At
 * inference routing is plain softmax → top-k, so a checkpoint can carry Mixtral's label.
 *
 * The file registers the estimator when imported, so any moejit command line can name it:
 *
 *   deno run -A examples/grin.ts --import examples/gumbel_topk_estimator.ts --estimator gumbel-topk
 *   deno run -A examples/grin.ts --import examples/gumbel_topk_estimator.ts \
 *     --estimator gumbel-topk:temperature=0.5 --steps 300
 *
 * and run directly it trains with it (the flags of grin.ts apply):
 *
 *   deno run -A examples/gumbel_topk_estimator.ts --steps 300
 *
 * A checkpoint trained with it names the estimator; resuming it (--resume) or loading it needs
 * the same --import (or an import of this file), since the registry must know the name.
 */
import * as mj from "../mod.ts";

/** The estimator's options, once defaults are filled in. */
export interface GumbelTopKOptions {
  /** τ: the scale of the Gumbel noise (1: sampling ∝ scores; 0: plain top-k). */
  temperature: number;
}

/** Scores below this count as zero when their log is taken. */
const TINY = 1e-20;

/** `estimator: "gumbel-topk"` (`{ kind: "gumbel-topk", temperature }`). */
export const gumbelTopK: mj.moe.Estimator<GumbelTopKOptions> = {
  name: "gumbel-topk",
  description:
    "Gumbel-top-k sampled routing (Kool et al. 2019): k experts sampled ∝ scores^(1/τ) in training, top-k gates and gradient",
  options: {
    temperature: {
      default: 1,
      doc: "τ, the scale of the Gumbel noise (1: sampling in proportion to the scores; 0: top-k)",
      check: (v) =>
        typeof v === "number" && Number.isFinite(v) && v >= 0
          ? undefined
          : `must be a finite number ≥ 0, got ${JSON.stringify(v)}`,
    },
  },
  sampling: true,
  // Indices come from a top-k over the N experts: in range by construction.
  trustedIndices: true,
  route(ctx, { temperature }) {
    const { selection, scores, topK, training, T, N } = ctx;
    let keys = selection;
    if (training && temperature > 0) {
      // Injected draws (tests) or fresh ones from the step's key (or a fixed seed).
      const gumbel = ctx.noise?.gumbel ?? standardGumbel([T, N], ctx);
      keys = selection.maximum(TINY).log().add(gumbel.mul(temperature));
    }
    const indices = keys.topk(topK).indices;
    return { indices, weights: scores.gather(-1, indices) };
  },
  hfFamily: "mixtral",
  inference: "softmax → top-k",
  megatron: ({ temperature }) => ({
    missing: "Gumbel-top-k sampled routing",
    detail:
      `In training this model samples its experts (Gumbel-top-k, τ = ${temperature}); Megatron routes by the plain top-k (the same function at inference)`,
  }),
  card: ({ temperature }) => [["Gumbel temperature τ", String(temperature)]],
};

/** i.i.d. standard Gumbel draws −log(−log U), U uniform in (0, 1). */
function standardGumbel(shape: number[], ctx: mj.moe.EstimatorContext): mj.Tensor {
  const src = ctx.key !== undefined ? { key: ctx.key } : { seed: ctx.seed };
  // rand is in [0, 1): half a step up keeps both logs finite.
  const u = mj.rand(shape, src).add(2 ** -25);
  return u.log().neg().log().neg();
}

mj.moe.registerEstimator(gumbelTopK);

if (import.meta.main) {
  const { runCli } = await import("../src/train/cli.ts");
  await runCli(Deno.args, {
    script: "examples/gumbel_topk_estimator.ts",
    description:
      "Train an MoE language model with Gumbel-top-k sampled routing (top-2, aux loss): a Mixtral by default.",
    model: { estimator: "gumbel-topk", topK: 2, balance: [{ kind: "auxLoss", alpha: 0.01 }] },
    run: { out: "out/gumbel_topk" },
  });
}
