/**
 * The examples' command line aims at Hugging Face families: grin.ts trains a PhiMoE, default_moe.ts
 * a Mixtral, --ffn dense a Llama; settings nobody chose come from that family, a flag that leaves
 * it is kept (and labelled), and --normalize-top-k / --jitter-eps expose the choices.
 */
import * as io from "../../src/io/index.ts";
import { modelConfig } from "../../src/nn/config.ts";
import { CliError, type CliPreset, parseCli, usage } from "../../src/train/cli.ts";
import { assert } from "../helpers.ts";

/** The presets of examples/grin.ts and examples/default_moe.ts. */
const GRIN: CliPreset = {
  script: "examples/grin.ts",
  description: "grin",
  model: { estimator: "sparsemixer", topK: 2, balance: [{ kind: "auxLoss", alpha: 0.01 }] },
};
const DEFAULT_MOE: CliPreset = {
  script: "examples/default_moe.ts",
  description: "default moe",
  model: { estimator: "default", topK: 2, balance: [{ kind: "auxLoss", alpha: 0.01 }] },
};

/** The family a command line trains, and its model config. */
function family(args: string[], preset: CliPreset) {
  const { options } = parseCli(args, preset);
  const config = modelConfig(options.model);
  return { type: io.hfFamily(config), config };
}

Deno.test("cli: the examples' defaults are PhiMoE, Mixtral and, with --ffn dense, Llama", () => {
  const grin = family([], GRIN);
  assert.equal(grin.type, "phimoe");
  assert.equal(grin.config.norm, "layernorm");
  const dm = family([], DEFAULT_MOE);
  assert.equal(dm.type, "mixtral");
  assert.equal(dm.config.normalizeTopK, true);
  assert.equal(family(["--ffn", "dense"], GRIN).type, "llama");
  assert.equal(family(["--ffn", "dense"], DEFAULT_MOE).type, "llama");
  // Switching the estimator switches the family the defaults come from.
  assert.equal(family(["--estimator", "topk"], GRIN).type, "mixtral");
  const sm = family(["--estimator", "sparsemixer"], DEFAULT_MOE);
  assert.equal(sm.type, "phimoe");
  assert.equal(sm.config.normalizeTopK, false);
  // No family: the defaults of none apply, and the run is still valid.
  assert.equal(family(["--estimator", "sparsemixer-v1", "--top-k", "1"], GRIN).type, "moejit");
});

Deno.test("cli: a flag that leaves the family is kept, and the model is labelled moejit", () => {
  const rms = family(["--norm", "rmsnorm"], GRIN);
  assert.equal(rms.config.norm, "rmsnorm");
  assert.equal(rms.type, "moejit");
  const plain = family(["--normalize-top-k", "false"], DEFAULT_MOE);
  assert.equal(plain.config.normalizeTopK, false);
  assert.equal(plain.type, "moejit");
  assert.match(io.hfCompatibility(plain.config).join("\n"), /normalizeTopK false/);
  const top1 = family(["--top-k", "1"], GRIN);
  assert.equal(top1.config.norm, "layernorm");
  assert.equal(top1.type, "moejit");
  const eps = family(["--jitter-eps", "0.05"], GRIN);
  assert.equal(eps.config.jitterEps, 0.05);
  assert.equal(eps.type, "phimoe");
  assert.throws(
    () => parseCli(["--jitter-eps", "-0.5"], GRIN),
    (e: unknown) =>
      e instanceof CliError &&
      /--jitter-eps must be a finite number ≥ 0, got -0\.5/.test(e.message),
  );
  assert.throws(
    () => parseCli(["--normalize-top-k", "yes"], DEFAULT_MOE),
    (e: unknown) =>
      e instanceof CliError && /--normalize-top-k must be true or false, got "yes"/.test(e.message),
  );
});

Deno.test("cli: --resume takes family settings from the checkpoint, not from the defaults", () => {
  const { options } = parseCli(["--resume", "out/x/checkpoint"], GRIN);
  assert.equal(options.model?.norm, undefined);
  assert.equal(options.model?.normalizeTopK, undefined);
});

Deno.test("cli: --help shows the family's defaults and the new flags", () => {
  const text = usage(GRIN);
  assert.match(text, /--norm .*\(default: layernorm\)/);
  assert.match(text, /--normalize-top-k .*\(default: false\)/);
  assert.match(text, /--jitter-eps .*\(default: 0\.01\)/);
  assert.match(usage(DEFAULT_MOE), /--normalize-top-k .*\(default: true\)/);
  assert.match(usage(DEFAULT_MOE), /--norm .*\(default: rmsnorm\)/);
});
