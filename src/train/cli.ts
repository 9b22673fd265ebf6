/**
 * The command line of the training examples (examples/grin.ts, examples/default_moe.ts): flags
 * in kebab-case of the configuration names, `--help` with every default, clear errors for bad
 * flags, and a summary at the end. Not exported from mod.ts (it reads Deno.args and prints);
 * examples import it directly.
 */
import "../runtime/all.ts";
import { parseArgs } from "node:util";
import { formatValue, MoejitError } from "../errors.ts";
import { type BackendName, setBackend } from "../backend.ts";
import { DEFAULT_CONFIG, type ModelConfig } from "../nn/config.ts";
import {
  type BalanceConfig,
  formatBalance as formatBalanceText,
  parseBalance as parseBalanceText,
} from "../moe/balancers/index.ts";
import {
  estimatorNamed,
  estimatorOptions as checkEstimatorOptions,
  estimators,
} from "../moe/estimators/index.ts";
import { balancerKinds } from "../moe/balancers/index.ts";
import { BUILTIN_CORPORA } from "../data/corpus.ts";
import { aggregate } from "../moe/metrics.ts";
import { hfFamilyDefaults, hfMatch } from "../io/hf_families.ts";
import {
  runOptionProblem,
  train,
  TRAIN_DEFAULTS,
  type TrainOptions,
  type TrainResult,
} from "./trainer.ts";
import { TrainInterrupted } from "./interrupt.ts";

/**
 * What an example fixes before the flags apply. Model settings that neither the preset nor the
 * flags give come from the Hugging Face family the run's FFN and estimator aim at
 * (`mj.io.hfFamilyDefaults`: PhiMoE's LayerNorm for SparseMixer-v2, Mixtral's renormalised top-k
 * for top-k routing, Llama's RMSNorm for dense FFNs), then from DEFAULT_CONFIG.
 */
export interface CliPreset {
  /** Script name for usage lines, e.g. "examples/grin.ts". */
  script: string;
  /** One line on what the script trains. */
  description: string;
  model?: Partial<ModelConfig>;
  /** Defaults of the run options that differ from TRAIN_DEFAULTS (e.g. out). */
  run?: Partial<TrainOptions>;
}

/**
 * Parses a --balance value through the balancer registry: comma-separated balancers
 * `name[:number][:option=value]…`, where `name` is a registered kind's command-line name (built
 * in: `aux`, `aux-seq` (scope "sequence"), `aux-hf` (convention "hf"), `z`, `lossfree`, `bip`),
 * the number sets its main option (α, β, the rate, the iteration count), and options are any
 * others of the balancer's constructor (`aux:0.01:score=softmax`,
 * `lossfree:0.002:rule=linear:violation=raw`, `bip:4:cap=3`); `none` for no balancers. Separate
 * lists with `;` to give one list per layer (`aux;bip:4` balances layer 0 with the aux loss,
 * layer 1 with BIP). Errors are CliErrors naming --balance.
 *
 * @example
 * ```ts
 * parseBalance("aux:0.01,bip:4:cap=floor"); // [{ kind: "auxLoss", alpha: 0.01 }, { kind: "bip", iters: 4, cap: "floor" }]
 * parseBalance("aux;none");                 // [[{ kind: "auxLoss" }], []]
 * ```
 */
export function parseBalance(text: string): BalanceConfig {
  try {
    return parseBalanceText(text, "--balance");
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    throw new CliError(e.message.split("\n")[0]);
  }
}

/**
 * Formats balancer specs back into --balance syntax (parseBalance reads it back to equal specs).
 *
 * @example
 * ```ts
 * formatBalance([{ kind: "bip", iters: 4, cap: 3 }]); // "bip:4:cap=3"
 * formatBalance([[{ kind: "auxLoss" }], []]);         // "aux;none"
 * ```
 */
export function formatBalance(specs: BalanceConfig): string {
  return formatBalanceText(specs);
}

/**
 * Parses an --estimator value: a registered estimator's name, optionally with its options
 * `name[:option=value]…` (e.g. `default:beta=0.99`). Errors are CliErrors listing the
 * estimators, the `first` one first (the example's own).
 *
 * @example
 * ```ts
 * parseEstimator("default:beta=0.99:mode=backwardOnly");
 * // { estimator: "default", estimatorOptions: { beta: 0.99, mode: "backwardOnly" } }
 * ```
 */
export function parseEstimator(
  text: string,
  first?: string,
): { estimator: string; estimatorOptions: Record<string, unknown> } {
  const [name, ...args] = text.split(":");
  if (!estimatorNamed(name)) {
    const names = estimators().map((e) => e.name);
    const ordered = first && names.includes(first)
      ? [first, ...names.filter((n) => n !== first)]
      : names;
    throw new CliError(
      `--estimator: unknown estimator ${formatValue(name)}; expected ${ordered.join(", ")}${
        estimators().length > 5 ? "" : " (or one registered by a module given with --import)"
      }`,
    );
  }
  const estimatorOptions: Record<string, unknown> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) {
      throw new CliError(
        `--estimator: cannot read ${
          JSON.stringify(text)
        }; expected name[:option=value]…, e.g. default:beta=0.99`,
      );
    }
    const v = arg.slice(eq + 1);
    const n = Number(v);
    estimatorOptions[arg.slice(0, eq)] = v === "true"
      ? true
      : v === "false"
      ? false
      : v.trim() !== "" && Number.isFinite(n)
      ? n
      : v;
  }
  // The estimator's own check of its options, in the flag's words.
  try {
    checkEstimatorOptions("--estimator", estimatorNamed(name)!, estimatorOptions);
  } catch (e) {
    if (!(e instanceof MoejitError)) throw e;
    throw new CliError(e.message.split("\n")[0]);
  }
  return { estimator: name, estimatorOptions };
}

/** A usage error: printed without a stack, exit status 2. */
export class CliError extends Error {
  override name = "CliError";
}

interface Flag {
  /** Model field or run option it sets. */
  target: { model: keyof ModelConfig } | { run: keyof TrainOptions } | {
    special: "backend" | "help" | "balance" | "estimator" | "import";
  };
  /**
   * "bool" takes a value (true | false); "boolean" is a switch without one; "strings" may be
   * given several times.
   */
  kind: "int" | "number" | "string" | "bool" | "boolean" | "strings";
  help: string;
}

const FLAGS: Record<string, Flag> = {
  steps: { target: { run: "steps" }, kind: "int", help: "optimizer steps" },
  batch: { target: { run: "batch" }, kind: "int", help: "sequences per batch" },
  seq: { target: { run: "seq" }, kind: "int", help: "tokens per sequence (the context length)" },
  layers: { target: { model: "nLayers" }, kind: "int", help: "transformer blocks" },
  "d-model": { target: { model: "dModel" }, kind: "int", help: "model width" },
  heads: { target: { model: "nHeads" }, kind: "int", help: "attention heads" },
  experts: { target: { model: "experts" }, kind: "int", help: "experts per MoE layer" },
  "top-k": { target: { model: "topK" }, kind: "int", help: "experts per token" },
  "d-ff": { target: { model: "dFf" }, kind: "int", help: "expert hidden size" },
  estimator: {
    target: { special: "estimator" },
    kind: "string",
    help: "router gradient estimator, with optional :option=value (e.g. default:beta=0.99)",
  },
  balance: {
    target: { special: "balance" },
    kind: "string",
    help:
      "balancers, each with optional :option=value (e.g. bip:4:cap=floor), comma-separated, or none; ';' between per-layer lists",
  },
  "router-bias": {
    target: { model: "routerBias" },
    kind: "bool",
    help: "the MoE routers add a learned bias to their logits: true | false",
  },
  "normalize-top-k": {
    target: { model: "normalizeTopK" },
    kind: "bool",
    help: "renormalise the top-k gate weights to sum to 1 (Mixtral): true | false",
  },
  "jitter-eps": {
    target: { model: "jitterEps" },
    kind: "number",
    help: "SparseMixer's ε (PhiMoE's router_jitter_noise)",
  },
  ffn: { target: { model: "ffn" }, kind: "string", help: "moe | dense" },
  block: { target: { model: "block" }, kind: "string", help: "prenorm | parallel" },
  norm: { target: { model: "norm" }, kind: "string", help: "rmsnorm | layernorm" },
  activation: { target: { model: "activation" }, kind: "string", help: "swiglu | gelu | relu" },
  rope: {
    target: { model: "rope" },
    kind: "string",
    help: "position encoding: rotateHalf (RoPE) | none",
  },
  "rope-theta": { target: { model: "ropeTheta" }, kind: "number", help: "RoPE's base θ" },
  lr: {
    target: { run: "lr" },
    kind: "number",
    help: "peak learning rate (warmup, then cosine to lr/10)",
  },
  "min-lr": { target: { run: "minLr" }, kind: "number", help: "final learning rate" },
  warmup: {
    target: { run: "warmup" },
    kind: "int",
    help: "warmup steps (default 5% of steps, ≤ 100)",
  },
  "weight-decay": {
    target: { run: "weightDecay" },
    kind: "number",
    help: "AdamW decoupled weight decay",
  },
  clip: { target: { run: "clip" }, kind: "number", help: "global gradient-norm clip (0: off)" },
  seed: { target: { run: "seed" }, kind: "int", help: "seed of init, batches and sampling noise" },
  data: {
    target: { run: "data" },
    kind: "string",
    help: `${
      BUILTIN_CORPORA.join(" | ")
    } | a text file or folder; join several with + for a mixture`,
  },
  tokenizer: {
    target: { run: "tokenizer" },
    kind: "string",
    help: "byte | bpe | bpe:<encoding> (cl100k_base, o200k_base, …)",
  },
  out: {
    target: { run: "out" },
    kind: "string",
    help: "output directory (metrics, plots, checkpoint)",
  },
  resume: {
    target: { run: "resume" },
    kind: "string",
    help: "checkpoint directory to resume from (e.g. out/grin/checkpoint)",
  },
  "eval-every": {
    target: { run: "evalEvery" },
    kind: "int",
    help: "validate every N steps (0: only at the end)",
  },
  "eval-batches": {
    target: { run: "evalBatches" },
    kind: "int",
    help: "validation batches per intermediate evaluation",
  },
  "log-every": {
    target: { run: "logEvery" },
    kind: "int",
    help: "read back and log metrics every N steps",
  },
  "checkpoint-every": {
    target: { run: "checkpointEvery" },
    kind: "int",
    help: "checkpoint every N steps (0: at the end only)",
  },
  samples: { target: { run: "samples" }, kind: "int", help: "texts sampled at the end" },
  "sample-tokens": { target: { run: "sampleTokens" }, kind: "int", help: "tokens per sample" },
  backend: {
    target: { special: "backend" },
    kind: "string",
    help:
      "native | webgpu | cpu (default: WebGPU on a GPU; native C on a software adapter or none)",
  },
  import: {
    target: { special: "import" },
    kind: "strings",
    help:
      "a module to load first (repeatable): it may register estimators and balancers (mj.moe.registerEstimator, mj.balance.registerBalancer) that --estimator and --balance then name",
  },
  help: { target: { special: "help" }, kind: "boolean", help: "print this help" },
};

/** A model field's default under a preset: the preset's, its family's, or DEFAULT_CONFIG's. */
const MODEL_FIELD_DEFAULT = (k: keyof ModelConfig, preset: CliPreset) => {
  const model = preset.model ?? {};
  return model[k] ?? hfFamilyDefaults(model)[k] ?? DEFAULT_CONFIG[k];
};

function defaultText(name: string, f: Flag, preset: CliPreset): string {
  const t = f.target;
  if ("model" in t) {
    return JSON.stringify(MODEL_FIELD_DEFAULT(t.model, preset)).replace(/^"|"$/g, "");
  }
  if ("special" in t) {
    if (t.special === "balance") {
      return formatBalance(preset.model?.balance ?? DEFAULT_CONFIG.balance);
    }
    if (t.special === "backend") return "auto";
    if (t.special === "estimator") {
      return String(MODEL_FIELD_DEFAULT("estimator", preset));
    }
    return "";
  }
  const v = (preset.run as Record<string, unknown> | undefined)?.[t.run] ??
    (TRAIN_DEFAULTS as Record<string, unknown>)[t.run];
  if (v === undefined) {
    if (name === "min-lr") return "lr/10";
    if (name === "warmup") return "auto";
    return "none";
  }
  return String(v);
}

/** The --help text: every flag with its default. */
export function usage(preset: CliPreset): string {
  const lines = [`${preset.description}`, "", `usage: deno run -A ${preset.script} [flags]`, ""];
  const width = Math.max(...Object.keys(FLAGS).map((k) => k.length)) + 2;
  for (const [name, f] of Object.entries(FLAGS)) {
    const def = defaultText(name, f, preset);
    lines.push(`  --${name.padEnd(width)}${f.help}${def ? ` (default: ${def})` : ""}`);
  }
  const family = (f: string) =>
    estimators().filter((e) => e.hfFamily === f).map((e) => e.name).join("/");
  lines.push(
    "",
    "Estimators (--estimator name[:option=value]…):",
    ...estimators().map((e) => {
      const opts = Object.entries(e.options ?? {}).map(([n, o]) => `${n}=${o.default}`);
      return `  ${(e.name + "  ").padEnd(width)}${e.description}${
        opts.length ? ` [options: ${opts.join(", ")}]` : ""
      }`;
    }),
    "Balancers (--balance name[:number][:option=value]…):",
    ...balancerKinds().map((k) => {
      const names = [k.cli.name, ...Object.keys(k.cli.presets ?? {})].join(", ");
      return `  ${(names + "  ").padEnd(width)}${k.description}${
        k.cli.main ? ` [number: ${k.cli.main}]` : ""
      }`;
    }),
    "",
    "Model defaults follow the Hugging Face family the FFN and estimator aim at (Llama for",
    `--ffn dense, Mixtral for ${family("mixtral")}, PhiMoE for ${family("phimoe")}), so`,
    "transformers reads the checkpoint as the same model; a flag that leaves the family is",
    "allowed, and the run and the checkpoint's README say why no family matches.",
    "Ctrl-C stops after the current step, writes a checkpoint and exits with status 130 (a second",
    "Ctrl-C exits at once; the last checkpoint is intact); --resume continues from it with the",
    "run's original learning-rate schedule (--steps only sets where to stop). A step whose loss or",
    "gradient norm is NaN/Inf stops the run with status 1, keeping the last good checkpoint.",
  );
  return lines.join("\n");
}

/**
 * `--flag -1` → `--flag=-1` for flags that take a value, so a negative number after a space is
 * read as the value (as with `=`) rather than as an unknown option: there are no short flags,
 * so a single-dash word after such a flag can only be its value.
 */
function joinDashValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const flag = a.startsWith("--") && !a.includes("=") ? FLAGS[a.slice(2)] : undefined;
    if (flag && flag.kind !== "boolean" && i + 1 < args.length && /^-(?!-)./.test(args[i + 1])) {
      out.push(`${a}=${args[++i]}`);
    } else out.push(a);
  }
  return out;
}

/** Turns argv into train() options; throws CliError on anything it cannot read. */
export function parseCli(
  args: string[],
  preset: CliPreset,
): { options: TrainOptions; backend?: string; help: boolean; imports: string[] } {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinDashValues(args),
      options: Object.fromEntries(
        Object.entries(FLAGS).map((
          [k, f],
        ) => [k, {
          type: f.kind === "boolean" ? "boolean" : "string",
          ...(f.kind === "strings" ? { multiple: true } : {}),
        }]),
      ),
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | boolean | string[] | undefined> });
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = msg.match(/Unknown option '([^']+)'/)?.[1];
    if (unknown) {
      const name = unknown.replace(/^-+/, "");
      const near = Object.keys(FLAGS).filter((k) =>
        k.startsWith(name.slice(0, 3)) || name.startsWith(k.slice(0, 3))
      );
      throw new CliError(
        `unknown flag ${unknown}${
          near.length ? ` (did you mean ${near.map((k) => `--${k}`).join(" or ")}?)` : ""
        }; run with --help for the list`,
      );
    }
    throw new CliError(msg.replace(/\. To specify a positional argument.*$/, ""));
  }
  const model: Partial<ModelConfig> = { ...(preset.model ?? {}) };
  const run: TrainOptions = { ...(preset.run ?? {}) };
  let backend: string | undefined;
  const imports: string[] = [];
  for (const [name, raw] of Object.entries(values)) {
    if (raw === undefined) continue;
    const f = FLAGS[name];
    if (Array.isArray(raw)) {
      imports.push(...raw);
      continue;
    }
    let value: string | number | boolean = raw;
    if (f.kind === "int" || f.kind === "number") {
      const n = Number(raw);
      if (
        String(raw).trim() === "" || !Number.isFinite(n) ||
        (f.kind === "int" && !Number.isInteger(n))
      ) {
        throw new CliError(
          `--${name} expects ${f.kind === "int" ? "an integer" : "a number"}, got ${
            formatValue(raw)
          }`,
        );
      }
      value = n;
      // The same rules (and words) as train() applies to the option, under the flag's name.
      const problem = "run" in f.target
        ? runOptionProblem(f.target.run, n)
        : f.kind === "int"
        ? (n >= 1 ? null : `must be an integer ≥ 1, got ${n}`)
        : (n >= 0 ? null : `must be a finite number ≥ 0, got ${n}`);
      if (problem) throw new CliError(`--${name} ${problem}`);
    } else if (f.kind === "bool") {
      if (raw !== "true" && raw !== "false") {
        throw new CliError(`--${name} must be true or false, got ${formatValue(raw)}`);
      }
      value = raw === "true";
    }
    const t = f.target;
    if ("model" in t) {
      (model as Record<string, unknown>)[t.model] = value;
    } else if ("run" in t) (run as Record<string, unknown>)[t.run] = value;
    else if (t.special === "balance") model.balance = parseBalance(String(value));
    else if (t.special === "estimator") {
      const e = parseEstimator(String(value), preset.model?.estimator);
      model.estimator = e.estimator;
      // Options given with another estimator than the preset's belong to that one only.
      model.estimatorOptions = e.estimatorOptions;
    } else if (t.special === "backend") {
      if (value !== "native" && value !== "webgpu" && value !== "cpu") {
        throw new CliError(
          `--backend: expected native, webgpu or cpu, got ${formatValue(value)}`,
        );
      }
      backend = String(value);
    }
  }
  if (!run.resume && run.minLr !== undefined) {
    const lr = run.lr ?? TRAIN_DEFAULTS.lr;
    if (run.minLr > lr) {
      throw new CliError(
        `--min-lr ${run.minLr} is above --lr ${lr}${
          run.lr === undefined ? " (the default)" : ""
        }: the learning rate decays from --lr to --min-lr`,
      );
    }
  }
  // Settings nobody chose come from the Hugging Face family the run aims at.
  Object.assign(model, hfFamilyDefaults(model));
  if (run.resume) {
    // A resumed run takes the model from the checkpoint: only flags given here are compared.
    const given = new Set(Object.keys(values).filter((k) => values[k] !== undefined));
    for (const [name, f] of Object.entries(FLAGS)) {
      if ("model" in f.target && !given.has(name)) {
        delete (model as Record<string, unknown>)[f.target.model];
      }
    }
    if (!given.has("balance")) delete model.balance;
    if (!given.has("estimator")) {
      delete model.estimator;
      delete model.estimatorOptions;
    }
  }
  return {
    options: { ...run, model },
    ...(backend ? { backend } : {}),
    help: values.help === true,
    imports,
  };
}

/** The values of every --import in argv (`--import file` and `--import=file`). */
function importsOf(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--import" && i + 1 < args.length) out.push(args[++i]);
    else if (args[i].startsWith("--import=")) out.push(args[i].slice("--import=".length));
  }
  return out;
}

/**
 * Loads modules given with --import, in order, relative to the working directory (or URLs):
 * what they register (estimators, balancers) is then known to --estimator and --balance.
 *
 * @example
 * ```ts
 * await importModules(["examples/ema_loss_free.ts"]);
 * ```
 */
export async function importModules(specs: readonly string[]): Promise<void> {
  for (const spec of specs) {
    const url = /^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)
      ? spec
      : new URL(spec, `file://${Deno.cwd()}/`).href;
    try {
      await import(url);
    } catch (e) {
      if (e instanceof MoejitError) throw new CliError(`--import ${spec}: ${e.message}`);
      const msg = (e as Error).message?.split("\n")[0] ?? String(e);
      throw new CliError(`--import ${spec}: cannot load the module: ${msg}`);
    }
  }
}

/** Prints what a run produced: perplexities, balance, files, samples. */
export function printSummary(r: TrainResult): void {
  const lines: string[] = [];
  const kind = r.tokenizer.name === "byte" ? "byte" : "token";
  lines.push(
    "",
    `validation perplexity ${r.valPpl.toFixed(3)} (loss ${
      r.valLoss.toFixed(4)
    } nats/${kind}) after ${r.step} steps` +
      ` — ${kind}-unigram baseline on the same split: ${r.unigramPpl.toFixed(3)}`,
  );
  if (r.valByDomain.length > 1) {
    for (const d of r.valByDomain) {
      lines.push(
        `  ${d.name}: perplexity ${d.ppl.toFixed(3)} (unigram ${d.unigramPpl.toFixed(3)})`,
      );
    }
  }
  if (r.balance.length) {
    lines.push(
      "balance per MoE layer (MaxVio: 0 = every expert gets T·K/E; loads over the validation split):",
    );
    for (const b of r.balance) {
      lines.push(
        `  layer ${b.layer}: MaxVio_global ${b.maxVioGlobal.toFixed(3)}, last-step MaxVio_batch ${
          b.maxVioLastStep.toFixed(3)
        }, loads [${b.tokensPerExpert.join(", ")}]`,
      );
    }
    if (r.balance.length > 1) {
      const over = aggregate(
        r.balance.map((b) => ({ global: b.maxVioGlobal, batch: b.maxVioLastStep })),
      );
      lines.push(
        `  over layers: MaxVio_global mean ${over.mean.global.toFixed(3)}, max ${
          over.max.global.toFixed(3)
        }; last-step MaxVio_batch mean ${over.mean.batch.toFixed(3)}, max ${
          over.max.batch.toFixed(3)
        }`,
      );
    }
  }
  lines.push(
    `throughput ${Math.round(r.tokensPerSec).toLocaleString("en-US")} tokens/s on ${r.backend}; ${
      r.seconds.toFixed(0)
    } s in all`,
  );
  const hf = hfMatch(r.config);
  lines.push(
    `checkpoint: ${r.paths.checkpoint}/ (model_type ${hf.modelType}: ${
      hf.family
        ? `transformers' ${hf.family.architecture} reads it exactly`
        : "no Hugging Face family computes this model, see README.md"
    }; megatron_args.txt; training_state.safetensors to --resume)`,
  );
  lines.push(`metrics:    ${r.paths.metrics}`);
  if (r.paths.plots.length) lines.push(`plots:      ${r.paths.plots.join(", ")}`);
  if (r.samples.length) {
    lines.push(`samples (${r.paths.samples}):`);
    for (const s of r.samples) {
      const show = (t: string) => t.replace(/\s+/g, " ").trim();
      lines.push(`  » ${show(s.prompt)} ⟶ ${show(s.text)}`);
    }
  }
  console.log(lines.join("\n"));
}

/**
 * Runs a training example from argv: parses the flags (or prints --help), trains, prints the
 * summary. Errors in the flags or data print one clear line and exit with status 2 or 1.
 *
 * @example
 * ```ts
 * await runCli(Deno.args, { script: "examples/grin.ts", description: "…", model: { estimator: "sparsemixer" } });
 * ```
 */
export async function runCli(args: string[], preset: CliPreset): Promise<TrainResult | null> {
  let parsed;
  try {
    // Registration modules first: the estimators and balancers they add are flag values.
    await importModules(importsOf(args));
    parsed = parseCli(args, preset);
  } catch (e) {
    if (e instanceof CliError) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
  if (parsed.help) {
    console.log(usage(preset));
    return null;
  }
  let r: TrainResult;
  try {
    if (parsed.backend) setBackend(parsed.backend as BackendName);
    r = await train(parsed.options);
  } catch (e) {
    const line = (e as Error).message?.replace(/\n\s*at your call:[^]*$/, "");
    if (e instanceof TrainInterrupted) {
      console.error(line.replace(/^train: /, ""));
      Deno.exit(130);
    }
    if (e instanceof MoejitError) {
      console.error(`error: ${line}`);
      Deno.exit(1);
    }
    // A file-system or permission error outside the checks: one line, not a stack trace.
    if (Object.values(Deno.errors).some((E) => e instanceof E)) {
      console.error(`error: ${line}`);
      Deno.exit(1);
    }
    throw e;
  }
  printSummary(r);
  // 130, as for a process ended by SIGINT: a script running this knows the run is not finished.
  if (r.interrupted) Deno.exit(130);
  return r;
}
