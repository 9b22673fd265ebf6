/**
 * BAM's whole recipe in miniature (docs/methods.md §3; the paper's Table 1 at toy scale):
 *
 *  1. pretrain a dense parallel-attention seed on a mixture of the domains;
 *  2. branch it into one expert per domain by continued pretraining (peak lr halved);
 *  3. upcycle seed + experts into BTX (FFN experts; attention averaged), BAM with KV experts and
 *     BAM with shared K/V (attention experts too), and train each for the same tokens on the
 *     mixture;
 *  4. report validation perplexity per domain and their average for every model.
 *
 * Each phase writes its checkpoint under `out/<phase>/checkpoint`, and the upcycling reads the
 * seed and experts back from theirs, as a user would.
 */
import { fail } from "../errors.ts";
import { realize } from "../realize.ts";
import { type ModelConfig, modelConfig, parameterCount } from "../nn/config.ts";
import type { Params } from "../nn/model.ts";
import { upcycle } from "../nn/upcycle.ts";
import { prepareMixture } from "../data/mixture.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { writeFileAtomic } from "../io/files.ts";
import { barChart } from "../io/svg.ts";
import { evaluate } from "./evaluate.ts";
import { train, type TrainOptions } from "./trainer.ts";

export interface BamRecipeOptions {
  /** The domains (corpus names or paths); default Moby Dick, SOTU, SpamAssassin. */
  corpora?: string[];
  /** The dense seed's architecture (a parallel-attention block is forced). */
  model?: Partial<ModelConfig>;
  batch?: number;
  seq?: number;
  seedSteps?: number;
  branchSteps?: number;
  /** Steps of each mixture (BTX, BAM kvExperts, BAM sharedKV): the same tokens for each. */
  mixSteps?: number;
  /** Peak learning rates: pretraining, continued pretraining (default half), mixtures (default = pretraining). */
  lr?: number;
  branchLr?: number;
  mixLr?: number;
  /** Validation batches per domain for the table. */
  evalBatches?: number;
  out?: string;
  seed?: number;
  /** Progress output of each phase (default true). */
  progress?: boolean;
  /** Lines describing the recipe's progress (default: stderr). */
  log?: (line: string) => void;
}

/** One row of the table. */
export interface BamRow {
  model: string;
  /** Validation perplexity per domain, in the order of `domains`. */
  ppl: number[];
  /** Mean of the per-domain perplexities (the paper's "Avg"). */
  avg: number;
  params: { total: number; active: number };
  /** Seconds this model's own training phase took. */
  seconds: number;
}

export interface BamResult {
  domains: string[];
  rows: BamRow[];
  /** Tokens each phase trained on. */
  tokens: { seed: number; branch: number; mix: number };
  paths: { markdown: string; svg: string; json: string };
}

export const BAM_DEFAULTS = {
  corpora: ["moby-dick", "sotu", "spam-assassin"],
  model: {
    ffn: "dense",
    block: "parallel",
    norm: "layernorm",
    nLayers: 2,
    dModel: 128,
    nHeads: 4,
    dFf: 256,
  } as Partial<ModelConfig>,
  batch: 16,
  seq: 128,
  seedSteps: 900,
  branchSteps: 300,
  mixSteps: 400,
  lr: 3e-3,
  evalBatches: 24,
  out: "out/bam",
  seed: 0,
};

function join(dir: string, f: string): string {
  return dir.endsWith("/") ? dir + f : `${dir}/${f}`;
}

/**
 * Runs the recipe and writes the table (Markdown, SVG, JSON) into `out`.
 *
 * @example
 * ```ts
 * const r = await mj.train.bamRecipe({ seedSteps: 100, branchSteps: 30, mixSteps: 40 });
 * console.log(mj.train.bamTable(r));
 * ```
 */
export async function bamRecipe(opts: BamRecipeOptions = {}): Promise<BamResult> {
  const o = { ...BAM_DEFAULTS, ...opts, model: { ...BAM_DEFAULTS.model, ...(opts.model ?? {}) } };
  const log = opts.log ?? ((line: string) => console.error(line));
  const branchLr = opts.branchLr ?? o.lr / 2, mixLr = opts.mixLr ?? o.lr;
  if (o.corpora.length < 2) {
    fail("bamRecipe", `expected at least two domains, got ${o.corpora.length}`);
  }
  const data = await prepareMixture(o.corpora);
  const domains = data.domains.map((d) => d.corpus);
  const common: Partial<TrainOptions> = {
    batch: o.batch,
    seq: o.seq,
    seed: o.seed,
    evalEvery: 0,
    samples: 0,
    finalEvalBatches: 1,
    checkpointEvery: 0,
    progress: o.progress ?? true,
    handleInterrupt: false,
  };
  const tokens = (steps: number) => steps * o.batch * o.seq;
  const rows: BamRow[] = [];
  const table = async (name: string, config: ModelConfig, params: Params, seconds: number) => {
    const ppl: number[] = [];
    for (const d of data.domains) {
      ppl.push(
        (await evaluate(params, config, d.val, {
          batch: o.batch,
          seq: o.seq,
          maxBatches: o.evalBatches,
        })).ppl,
      );
    }
    const row = {
      model: name,
      ppl,
      avg: ppl.reduce((a, b) => a + b, 0) / ppl.length,
      params: parameterCount(config),
      seconds,
    };
    rows.push(row);
    log(
      `  ${name}: ${domains.map((d, i) => `${d} ${ppl[i].toFixed(3)}`).join(", ")}; avg ${
        row.avg.toFixed(3)
      }`,
    );
  };

  // 1. The dense seed on the mixture.
  log(
    `[1/3] pretraining the dense seed on ${data.name} (${o.seedSteps} steps, ${
      tokens(o.seedSteps).toLocaleString("en-US")
    } tokens)`,
  );
  const seedModel = modelConfig({
    ...o.model,
    block: "parallel",
    ffn: "dense",
    vocabSize: data.tokenizer.vocabSize,
    maxSeqLen: o.seq,
  });
  const seedRun = await train({
    ...common,
    model: seedModel,
    data,
    steps: o.seedSteps,
    lr: o.lr,
    out: join(o.out, "seed"),
  });
  await table("Seed (dense)", seedRun.config, seedRun.params, seedRun.seconds);

  // 2. One expert per domain, continued from the seed's checkpoint.
  log(
    `[2/3] branching: continued pretraining on each domain (${o.branchSteps} steps each, peak lr ${branchLr})`,
  );
  const seedCk = await loadCheckpoint<Params>(seedRun.paths.checkpoint);
  const expertDirs: string[] = [];
  for (const d of data.domains) {
    const run = await train({
      ...common,
      init: { config: seedCk.config, params: await realize(seedCk.params) },
      data: d,
      steps: o.branchSteps,
      lr: branchLr,
      out: join(o.out, `expert-${d.corpus}`),
    });
    expertDirs.push(run.paths.checkpoint);
    await table(`${d.corpus} expert`, run.config, run.params, run.seconds);
  }

  // 3. Upcycle (from the checkpoints) and train each mixture on the same tokens.
  log(
    `[3/3] mixtures of ${
      domains.length + 1
    } experts (seed + ${domains.length}), ${o.mixSteps} steps each on ${data.name}`,
  );
  const seed = await loadCheckpoint<Params>(seedRun.paths.checkpoint);
  const experts = [];
  for (const dir of expertDirs) experts.push(await loadCheckpoint<Params>(dir));
  const variants = [
    ["BTX", "btx", { method: "btx" as const }],
    ["BAM (KV experts)", "bam-kv", { method: "bam" as const, attention: "kvExperts" as const }],
    ["BAM (shared KV)", "bam-shared", { method: "bam" as const, attention: "sharedKV" as const }],
  ] as const;
  for (const [name, dir, how] of variants) {
    const up = upcycle(seed, experts, { ...how, seed: o.seed });
    const run = await train({
      ...common,
      init: { config: up.config, params: await realize(up.params) },
      data,
      steps: o.mixSteps,
      lr: mixLr,
      out: join(o.out, dir),
    });
    await table(name, run.config, run.params, run.seconds);
  }

  const result: BamResult = {
    domains,
    rows,
    tokens: { seed: tokens(o.seedSteps), branch: tokens(o.branchSteps), mix: tokens(o.mixSteps) },
    paths: {
      markdown: join(o.out, "table.md"),
      svg: join(o.out, "table.svg"),
      json: join(o.out, "table.json"),
    },
  };
  await writeFileAtomic(result.paths.markdown, bamTable(result, "markdown"));
  await writeFileAtomic(
    result.paths.svg,
    barChart(rows.map((r) => ({ name: r.model, y: [...r.ppl, r.avg] })), {
      title: "Validation perplexity per domain (lower is better)",
      groups: [...domains, "Avg"],
      yLabel: "perplexity (bytes)",
    }),
  );
  await writeFileAtomic(result.paths.json, JSON.stringify(result, null, 2) + "\n");
  return result;
}

/**
 * The table as aligned text (default) or Markdown: perplexity per domain, their average, the
 * parameters (total / active) and the training time of each model; the best mixture value per
 * column in bold in Markdown.
 *
 * @example
 * ```ts
 * console.log(mj.train.bamTable(result));
 * ```
 */
export function bamTable(r: BamResult, format: "text" | "markdown" = "text"): string {
  const header = ["Model", ...r.domains, "Avg", "Params (total / active)", "Train s"];
  const M = (n: number) => `${(n / 1e6).toFixed(2)}M`;
  const mixtures = r.rows.filter((x) => /BTX|BAM/.test(x.model));
  const best = [...r.domains.map((_, i) => i), r.domains.length].map((i) =>
    Math.min(...mixtures.map((x) => (i < r.domains.length ? x.ppl[i] : x.avg)))
  );
  const cells = r.rows.map((x) => [
    x.model,
    ...[...x.ppl, x.avg].map((v, i) => {
      const s = v.toFixed(3);
      return format === "markdown" && mixtures.includes(x) && v === best[i] ? `**${s}**` : s;
    }),
    `${M(x.params.total)} / ${M(x.params.active)}`,
    x.seconds.toFixed(0),
  ]);
  if (format === "markdown") {
    return [
      `| ${header.join(" | ")} |`,
      `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
      ...cells.map((c) => `| ${c.join(" | ")} |`),
      "",
      `Validation perplexity per byte (lower is better). Tokens: seed ${
        r.tokens.seed.toLocaleString("en-US")
      }, ` +
      `each domain expert ${r.tokens.branch.toLocaleString("en-US")}, each mixture ${
        r.tokens.mix.toLocaleString("en-US")
      }.`,
      "",
    ].join("\n");
  }
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c.map((v, i) => (i ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n");
}
