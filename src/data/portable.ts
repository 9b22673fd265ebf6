/**
 * The part of `mj.data` that works on text already in memory: the byte tokenizer, splits, token
 * streams, batches. It reads no files and imports nothing from npm, so the browser bundle exports
 * it as `mj.data`; `mj.data` in mod.ts adds BPE tokenizers and the named corpora.
 *
 * @example
 * ```ts
 * import * as mj from "moejit"; // the npm bundle
 * const data = mj.data.prepareText(await (await fetch("book.txt")).text(), { valFraction: 0.1 });
 * const { x, y } = mj.data.batchTensors(data.train.batch(8, 64, 0, 1), 8, 64);
 * ```
 * @module
 */
export { byteTokenizer } from "./byte_tokenizer.ts";
export type { Tokenizer } from "./byte_tokenizer.ts";
export {
  batchTensors,
  prepareText,
  splitDocuments,
  TokenDataset,
  tokenize,
  unigramPerplexity,
} from "./token_dataset.ts";
export type { Batch, EvalBatch, PreparedData, Split } from "./token_dataset.ts";
