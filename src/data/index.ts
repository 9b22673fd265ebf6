/**
 * The data layer: tokenizers (bytes, or BPE from gpt-tokenizer), corpora (Moby Dick, State of
 * the Union speeches, SpamAssassin e-mails from npm, or your own files), deterministic splits,
 * and resumable random batches.
 *
 * @example
 * ```ts
 * import * as mj from "./mod.ts";
 * const { documents } = await mj.data.loadCorpus("moby-dick");
 * const tok = mj.data.byteTokenizer();
 * const { train, val } = mj.data.splitDocuments(documents);
 * const ds = new mj.data.TokenDataset(mj.data.tokenize(train, tok), "the corpus' training split");
 * const { x, y } = mj.data.batchTensors(ds.batch(8, 128, 0, 42), 8, 128); // i32 [8, 128]
 * ```
 * @module
 */
export * from "./portable.ts";
export { BPE_ENCODINGS, bpeTokenizer, tokenizerByName, tokenizerNames } from "./tokenizer.ts";
export type { BpeEncoding } from "./tokenizer.ts";
export { BUILTIN_CORPORA, loadCorpus } from "./corpus.ts";
export type { BuiltinCorpus, Corpus } from "./corpus.ts";
export { prepareData } from "./dataset.ts";
export { MixtureDataset, prepareMixture } from "./mixture.ts";
export type { BatchSource, PreparedMixture } from "./mixture.ts";
