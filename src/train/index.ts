/**
 * `mj.train`: the language-model training loop (data, compiled step, AdamW + cosine, evaluation,
 * metrics, plots, checkpoints, resume) and its building blocks.
 *
 * @example
 * ```ts
 * import * as mj from "./mod.ts";
 * const r = await mj.train.train({ steps: 300, model: { estimator: "sparsemixer" }, out: "out/demo" });
 * console.log(`val ppl ${r.valPpl} vs unigram ${r.unigramPpl}`);
 * ```
 * @module
 */
export { train, TRAIN_DEFAULTS } from "./trainer.ts";
export type { LayerBalance, LogRecord, Schedule, TrainOptions, TrainResult } from "./trainer.ts";
export { TrainInterrupted } from "./interrupt.ts";
export * from "./portable.ts";
export { formatDuration, Progress } from "./progress.ts";
export type { ProgressOptions } from "./progress.ts";
export { writeReportPlots } from "./report.ts";
export { BAM_DEFAULTS, bamRecipe, bamTable } from "./bam.ts";
export type { BamRecipeOptions, BamResult, BamRow } from "./bam.ts";
