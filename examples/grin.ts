/**
 * The main job: train a small GRIN-style MoE language model — top-2 routing with the
 * SparseMixer-v2 gradient estimator and an auxiliary balancing loss — on Moby Dick, byte-level.
 * By default it is a PhiMoE (LayerNorm with bias, SparseMixer routing at inference, ε = 0.01,
 * top-2): transformers' PhimoeForCausalLM reads the checkpoint as the same model.
 * With no flags it finishes in under 10 minutes on a 2-core machine without a GPU (WebGPU on
 * Mesa's llvmpipe), then prints validation perplexity against the byte-unigram baseline,
 * per-layer balance, where the checkpoint and plots are, and a few sampled lines.
 *
 *   deno run -A examples/grin.ts            # defaults
 *   deno run -A examples/grin.ts --help     # every flag and its default
 *   deno run -A examples/grin.ts --steps 2000 --resume out/grin/checkpoint
 */
import { runCli } from "../src/train/cli.ts";

await runCli(Deno.args, {
  script: "examples/grin.ts",
  description:
    "Train a GRIN MoE language model (SparseMixer-v2 router gradients, top-2, aux loss): a PhiMoE by default.",
  model: { estimator: "sparsemixer", topK: 2, balance: [{ kind: "auxLoss", alpha: 0.01 }] },
  run: { out: "out/grin" },
});
