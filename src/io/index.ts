/**
 * `mj.io`: files in and out of moejit.
 *
 *  - safetensors, our own implementation of the format with full validation (every error names
 *    the file and the problem): {@link readSafetensors}, {@link writeSafetensors},
 *    {@link encodeSafetensors}, {@link decodeSafetensors};
 *  - the Hugging Face layout of the model (mixtral / phimoe / llama names and config.json):
 *    {@link hfConfigJson}, {@link modelConfigFromHf}, {@link toHfTensors}, {@link fromHfTensors};
 *    which family, if any, computes a configuration's function: {@link hfMatch};
 *  - what explains a checkpoint: {@link modelCard} (README.md), {@link megatronArgs}
 *    (megatron_args.txt), {@link hfGenerationConfig} (generation_config.json);
 *  - checkpoints (model + config + training state + a SHA-256 manifest, swapped in whole so a
 *    kill never loses one, checked on load): {@link saveCheckpoint}, {@link loadCheckpoint},
 *    {@link checkpointExists};
 *  - crash-safe files and directories: {@link writeFileAtomic}, {@link replaceDirectory},
 *    {@link recoverDirectory};
 *  - JSONL metrics: {@link MetricsLog}, {@link readMetrics}.
 *
 * @example
 * ```ts
 * import * as mj from "moejit";
 * await mj.io.saveCheckpoint("runs/a/step-100", { config, params, trainingState: { json: { step: 100 } } });
 * const ck = await mj.io.loadCheckpoint("runs/a/step-100", { expect: config });
 * ```
 * @module
 */
export * from "./portable.ts";
export { readSafetensors, writeSafetensors } from "./safetensors_file.ts";
export {
  checkpointExists,
  configDifferences,
  loadCheckpoint,
  NonFiniteCheckpoint,
  saveCheckpoint,
} from "./checkpoint.ts";
export type {
  Checkpoint,
  ParamTree,
  SaveCheckpointOptions,
  TrainingStateIn,
} from "./checkpoint.ts";
export { encodeMetrics, MetricsLog, readMetrics } from "./metrics.ts";
export type { MetricsRecord, MetricValue } from "./metrics.ts";
export {
  appendLine,
  recoverDirectory,
  replaceDirectory,
  syncDirectory,
  writeFileAtomic,
  writeFileSynced,
} from "./files.ts";
export type { Recovery } from "./files.ts";
