/**
 * The part of `mj.io` that needs no file system: safetensors to and from bytes, the Hugging Face
 * layout of the model (tensor names, config.json), and SVG plots. The browser bundle exports it
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
  hfLayout,
  hfTensorShapes,
  modelConfigFromHf,
  SHAPE_FIELDS,
  toHfTensors,
} from "./hf.ts";
export type { HfEntry, HfFamily, HfTensorIn } from "./hf.ts";
export { barChart, heatmap, lineChart } from "./svg.ts";
export type { BarChartOptions, HeatmapOptions, LineChartOptions, Series } from "./svg.ts";
