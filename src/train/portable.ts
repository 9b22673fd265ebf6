/**
 * The part of `mj.train` that needs no file system: the compiled training and evaluation steps,
 * evaluation on a token stream, and the run's plots as SVG text. The browser bundle exports it as
 * `mj.train`; `mj.train` in mod.ts adds the whole training loop (files, progress, signals) and
 * the BAM recipe.
 *
 * @example
 * ```ts
 * import * as mj from "moejit"; // the npm bundle
 * const config = mj.nn.modelConfig({ nLayers: 1, dModel: 32, experts: 4 });
 * const step = mj.train.trainStep(config, { optimizer: mj.optim.adamw() });
 * ```
 * @module
 */
export { evalStep, initLayerState, LAYER_SCALARS, trainStep, unpackMetrics } from "./step.ts";
export type { EvalStep, StepMetrics, TrainState, TrainStep, TrainStepOptions } from "./step.ts";
export { evaluate } from "./evaluate.ts";
export type { EvaluateOptions, Evaluation } from "./evaluate.ts";
export { reportPlots } from "./plots.ts";
export type { ReportPlot } from "./plots.ts";
