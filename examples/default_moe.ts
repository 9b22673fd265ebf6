/**
 * The same training run as examples/grin.ts with Default MoE: the router gets a dense gradient
 * in which every expert a token did not use contributes its EMA "default" output instead of
 * zero. By default it is a Mixtral (RMSNorm, softmax → top-k → renormalise at inference):
 * transformers' MixtralForCausalLM reads the checkpoint as the same model. Flags as in grin.ts
 * (`--help`).
 *
 *   deno run -A examples/default_moe.ts
 */
import { runCli } from "../src/train/cli.ts";

await runCli(Deno.args, {
  script: "examples/default_moe.ts",
  description:
    "Train an MoE language model with Default MoE router gradients (EMA default outputs), top-2, aux loss: a Mixtral by default.",
  model: { estimator: "default", topK: 2, balance: [{ kind: "auxLoss", alpha: 0.01 }] },
  run: { out: "out/default_moe" },
});
