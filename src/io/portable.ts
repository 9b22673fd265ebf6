/**
 * The part of `mj.io` that needs no file system: safetensors to and from bytes, the Hugging Face
 * layout of the model (tensor names, config.json, the family decision, the checkpoint's README
 * and megatron_args.txt), and SVG plots. The browser bundle exports it
 * as `mj.io`; `mj.io` in mod.ts adds files, checkpoints and the metrics log.
 *
 * @example
 * ```ts
 * import * as mj from "moejit"; // the npm bundle
 * const bytes = mj.io.encodeSafetensors({
 *   w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
 * });
 * const { tensors } = mj.io.decodeSafetensors(bytes, "w.safetensors");
 * ```
 * @module
 */
export {
  decodeSafetensors,
  encodeSafetensors,
  moejitDtype,
  safetensorsDtype,
  toMoejitData,
} from "./safetensors.ts";
export type {
  HostArray,
  Safetensors,
  SafetensorsDtype,
  SafetensorsInput,
  SafetensorsTensor,
} from "./safetensors.ts";
export {
  fromHfTensors,
  hfCompatibility,
  hfConfigJson,
  hfFamily,
  hfGenerationConfig,
  hfLayout,
  hfTensorShapes,
  modelConfigFromHf,
  SHAPE_FIELDS,
  toHfTensors,
} from "./hf.ts";
export type { HfConfigOptions, HfEntry, HfFamily, HfTensorIn, TokenizerRef } from "./hf.ts";
export { HF_FAMILIES, hfFamilyDefaults, hfMatch } from "./hf_families.ts";
export type { HfFamilyName, HfFamilySpec, HfMatch, HfRequirement } from "./hf_families.ts";
export { modelCard } from "./model_card.ts";
export { megatronArgs } from "./megatron.ts";
export type { RunInfo } from "./run_info.ts";
export { barChart, heatmap, lineChart } from "./svg.ts";
export type { BarChartOptions, HeatmapOptions, LineChartOptions, Series } from "./svg.ts";
