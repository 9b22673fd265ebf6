/**
 * `prepareData`: a named corpus (from npm or files) split and tokenized. The splits, token
 * streams and batches themselves live in token_dataset.ts (re-exported here).
 */
import { type Corpus, loadCorpus } from "./corpus.ts";
import { type Tokenizer, tokenizerByName } from "./tokenizer.ts";
import { type PreparedData, prepareText } from "./token_dataset.ts";

export {
  batchTensors,
  prepareText,
  splitDocuments,
  TokenDataset,
  tokenize,
  unigramPerplexity,
} from "./token_dataset.ts";
export type { Batch, EvalBatch, PreparedData, Split } from "./token_dataset.ts";

/**
 * Loads a corpus, splits it, and tokenizes both splits: the usual first lines of a training
 * script. Defaults: Moby Dick, bytes, 10% validation.
 *
 * @example
 * ```ts
 * const data = await mj.data.prepareData({ corpus: "moby-dick", tokenizer: "byte" });
 * data.train.length; // ≈ 1.09M byte tokens
 * const { x, y } = data.train.batch(8, 128, 0, 1);
 * ```
 */
export async function prepareData(
  opts: {
    corpus?: string | Corpus;
    tokenizer?: string | Tokenizer;
    valFraction?: number;
    separator?: string;
  } = {},
): Promise<PreparedData> {
  const corpus = typeof opts.corpus === "object"
    ? opts.corpus
    : await loadCorpus(opts.corpus ?? "moby-dick");
  const tokenizer = typeof opts.tokenizer === "object"
    ? opts.tokenizer
    : await tokenizerByName(opts.tokenizer ?? "byte");
  return prepareText(corpus.documents, {
    name: corpus.name,
    tokenizer,
    valFraction: opts.valFraction,
    separator: opts.separator,
  });
}
