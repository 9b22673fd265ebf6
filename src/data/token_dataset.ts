/**
 * Train/validation splits, token streams and batches. Training batches are random contiguous
 * windows whose starts come from a counter-based generator (Threefry-2x32 keyed by the seed,
 * counter = batch index), so batch `i` is a pure function of (seed, i): a run resumed at step
 * i sees exactly the batches the uninterrupted run would have. Everything here works on text
 * already in memory (the browser bundle has it); `prepareData` in dataset.ts adds the corpora
 * that come from files and npm.
 */
import { fail } from "../errors.ts";
import { fromHost } from "../ops/creation.ts";
import { threefry2x32 } from "../rng.ts";
import type { Tensor } from "../tensor.ts";
import { byteTokenizer, type Tokenizer } from "./byte_tokenizer.ts";

/** Documents of the training and validation splits. */
export interface Split {
  /** Training documents (or document heads). */
  train: string[];
  /** Validation documents (or document tails). */
  val: string[];
}

/** Input ids and next-token targets, row-major [rows, seqLen]. */
export interface Batch {
  /** Input ids, [rows, seqLen] row-major. */
  x: Int32Array;
  /** Targets: the ids one position later. */
  y: Int32Array;
}

/** An evaluation batch; `rows` ≤ the batch size asked for (only the last one can be short). */
export interface EvalBatch extends Batch {
  /** Number of windows in this batch. */
  rows: number;
}

function checkPositiveInt(op: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) fail(op, `${what} must be a positive integer, got ${v}`);
}

function checkIndex(op: string, what: string, v: number, limit: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= limit) {
    fail(op, `${what} must be an integer in [0, ${limit}), got ${v}`);
  }
}

/** Splits at `at` code units, moved back by one if it would cut a surrogate pair. */
function cutAt(text: string, at: number): number {
  if (at > 0 && at < text.length) {
    const hi = text.charCodeAt(at - 1), lo = text.charCodeAt(at);
    if (hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) return at - 1;
  }
  return at;
}

/**
 * Deterministic train/validation split. With at least 10 documents (and at least one whole
 * document selected), every k-th document goes to validation, k = round(1 / valFraction):
 * indices k−1, 2k−1, …. Otherwise (a single file, a few chapters) each document is cut at
 * round((1 − valFraction) · length) characters: the head trains, the tail validates.
 * `valFraction` = 0 puts everything in training.
 *
 * @example
 * ```ts
 * const { documents } = await mj.data.loadCorpus("moby-dick");
 * const { train, val } = mj.data.splitDocuments(documents, { valFraction: 0.1 });
 * // 139 chapters: val = chapters 9, 19, …, 129 (13), train = the other 126
 * ```
 */
export function splitDocuments(
  documents: readonly string[],
  opts: { valFraction?: number } = {},
): Split {
  const op = "data.splitDocuments";
  if (!Array.isArray(documents) || documents.some((d) => typeof d !== "string")) {
    fail(op, "expected an array of strings");
  }
  const f = opts.valFraction ?? 0.1;
  if (typeof f !== "number" || !(f >= 0 && f <= 0.5)) {
    fail(op, `valFraction must be a number in [0, 0.5], got ${f}`);
  }
  if (f === 0) return { train: [...documents], val: [] };
  const k = Math.round(1 / f);
  const n = documents.length;
  if (n >= 10 && k <= n) {
    const train: string[] = [], val: string[] = [];
    documents.forEach((d, i) => ((i + 1) % k === 0 ? val : train).push(d));
    return { train, val };
  }
  const train: string[] = [], val: string[] = [];
  for (const d of documents) {
    const at = cutAt(d, Math.round((1 - f) * d.length));
    train.push(d.slice(0, at));
    val.push(d.slice(at));
  }
  return { train, val };
}

/**
 * Encodes documents and concatenates their ids into one stream. No separator by default: with
 * bytes, documents simply follow each other (chapters and files usually end with a newline);
 * pass `separator` (e.g. "\n\n") to encode text between documents.
 *
 * @example
 * ```ts
 * const tok = mj.data.byteTokenizer();
 * mj.data.tokenize(["ab", "c"], tok); // Int32Array [97, 98, 99]
 * mj.data.tokenize(["ab", "c"], tok, { separator: "\n" }); // Int32Array [97, 98, 10, 99]
 * ```
 */
export function tokenize(
  docs: readonly string[],
  tokenizer: Tokenizer,
  opts: { separator?: string } = {},
): Int32Array {
  const sep = opts.separator ? tokenizer.encode(opts.separator) : new Int32Array(0);
  const parts: Int32Array[] = [];
  let total = 0;
  docs.forEach((d, i) => {
    if (i > 0 && sep.length) {
      parts.push(sep);
      total += sep.length;
    }
    const ids = tokenizer.encode(d);
    parts.push(ids);
    total += ids.length;
  });
  const out = new Int32Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Tag xored into the key's high word, so data draws differ from mj.rand draws with one seed. */
const DATA_STREAM = 0x64617461; // "data"

/**
 * A token stream with language-model batches: `x` = tokens[s, s + seqLen), `y` = tokens[s + 1,
 * s + seqLen + 1) for window starts s.
 */
export class TokenDataset {
  /** The token stream (not copied). */
  readonly tokens: Int32Array;
  /** How errors refer to the data, e.g. "the corpus' validation split". */
  readonly name: string;

  /**
   * Wraps a token stream; `name` is how errors refer to it.
   *
   * @example
   * ```ts
   * const ds = new mj.data.TokenDataset(new Int32Array([1, 2, 3, 4, 5]), "toy");
   * ds.batch(2, 3, 0, 42); // { x: Int32Array(6), y: Int32Array(6) }
   * ```
   */
  constructor(tokens: Int32Array, name: string = "the data set") {
    if (!(tokens instanceof Int32Array)) {
      fail("data.TokenDataset", `expected an Int32Array of token ids, got ${typeof tokens}`);
    }
    this.tokens = tokens;
    this.name = name;
  }

  /**
   * Number of tokens.
   *
   * @example
   * ```ts
   * new mj.data.TokenDataset(new Int32Array(10)).length; // 10
   * ```
   */
  get length(): number {
    return this.tokens.length;
  }

  /** Validates sizes and that one window (seqLen + 1 tokens) fits. */
  private checkWindow(op: string, batchSize: number, seqLen: number): void {
    checkPositiveInt(op, "batch size", batchSize);
    checkPositiveInt(op, "sequence length", seqLen);
    if (seqLen + 1 > this.tokens.length) {
      fail(
        op,
        `sequence length ${seqLen} is longer than ${this.name} (${this.tokens.length} tokens; ` +
          `a window needs seqLen + 1 = ${seqLen + 1})`,
      );
    }
  }

  /** Copies the windows starting at `starts` into x and (shifted by one) y. */
  private fill(starts: ArrayLike<number>, seqLen: number): Batch {
    const rows = starts.length;
    const x = new Int32Array(rows * seqLen), y = new Int32Array(rows * seqLen);
    for (let b = 0; b < rows; b++) {
      const s = starts[b];
      x.set(this.tokens.subarray(s, s + seqLen), b * seqLen);
      y.set(this.tokens.subarray(s + 1, s + seqLen + 1), b * seqLen);
    }
    return { x, y };
  }

  /**
   * The window starts of training batch `index` (a pure function of seed, index and sizes):
   * row b starts at ⌊u · (length − seqLen)⌋, u a 53-bit uniform from Threefry-2x32 with key
   * (seed, seed_hi ^ tag) and counters (index, 2b), (index, 2b + 1).
   *
   * @example
   * ```ts
   * ds.batchStarts(8, 128, 0, 1); // Int32Array(8) of offsets in [0, ds.length - 128)
   * ```
   */
  batchStarts(batchSize: number, seqLen: number, index: number, seed: number = 0): Int32Array {
    const op = "data.TokenDataset.batch";
    this.checkWindow(op, batchSize, seqLen);
    checkIndex(op, "batch index", index, 2 ** 32);
    checkIndex(op, "seed", seed, 2 ** 53);
    if (batchSize > 2 ** 30) fail(op, `batch size ${batchSize} is too large`);
    const k0 = seed >>> 0, k1 = (Math.floor(seed / 2 ** 32) ^ DATA_STREAM) >>> 0;
    const span = this.tokens.length - seqLen; // number of valid starts
    const starts = new Int32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      const hi = threefry2x32(k0, k1, index, 2 * b) >>> 5; // 27 bits
      const lo = threefry2x32(k0, k1, index, 2 * b + 1) >>> 6; // 26 bits
      const u = (hi * 67108864 + lo) / 9007199254740992; // [0, 1), 53 bits
      starts[b] = Math.floor(u * span);
    }
    return starts;
  }

  /**
   * Training batch number `index`: `batchSize` random windows of `seqLen` tokens. The same
   * (seed, index, sizes) always gives the same batch, whatever was drawn before, so resuming
   * at step i just asks for batch i.
   *
   * @example
   * ```ts
   * const ds = new mj.data.TokenDataset(tokens, "the corpus' training split");
   * for (let step = 0; step < 100; step++) {
   *   const { x, y } = ds.batch(8, 128, step, 1234); // Int32Array(8 * 128) each
   * }
   * ```
   */
  batch(batchSize: number, seqLen: number, index: number, seed: number = 0): Batch {
    return this.fill(this.batchStarts(batchSize, seqLen, index, seed), seqLen);
  }

  /**
   * Number of non-overlapping evaluation windows: ⌊(length − 1) / seqLen⌋.
   *
   * @example
   * ```ts
   * new mj.data.TokenDataset(new Int32Array(103)).evalWindows(10); // 10
   * ```
   */
  evalWindows(seqLen: number): number {
    checkPositiveInt("data.TokenDataset.evalWindows", "sequence length", seqLen);
    return Math.max(0, Math.floor((this.tokens.length - 1) / seqLen));
  }

  /**
   * Deterministic evaluation batches: non-overlapping windows starting at 0, seqLen, 2·seqLen,
   * … that cover the stream (all but at most seqLen trailing targets), grouped `batchSize` at
   * a time; the last batch may have fewer `rows`. With `maxBatches`, at most that many full
   * batches of windows spread evenly over the stream.
   *
   * @example
   * ```ts
   * const val = new mj.data.TokenDataset(valTokens, "the corpus' validation split");
   * for (const { x, y, rows } of val.evalBatches(8, 128, 20)) {
   *   // rows × 128 tokens each
   * }
   * ```
   */
  evalBatches(batchSize: number, seqLen: number, maxBatches?: number): EvalBatch[] {
    const op = "data.TokenDataset.evalBatches";
    this.checkWindow(op, batchSize, seqLen);
    if (maxBatches !== undefined) checkPositiveInt(op, "maxBatches", maxBatches);
    const total = this.evalWindows(seqLen);
    let windows: number[];
    if (maxBatches !== undefined && maxBatches * batchSize < total) {
      const m = maxBatches * batchSize;
      windows = Array.from({ length: m }, (_, j) => Math.floor((j * total) / m));
    } else {
      windows = Array.from({ length: total }, (_, j) => j);
    }
    const out: EvalBatch[] = [];
    for (let i = 0; i < windows.length; i += batchSize) {
      const starts = windows.slice(i, i + batchSize).map((w) => w * seqLen);
      out.push({ ...this.fill(starts, seqLen), rows: starts.length });
    }
    return out;
  }
}

/**
 * The unigram baseline: an add-one-smoothed unigram model fit on `trainTokens`, scored on
 * `evalTokens`: exp(−mean log p(t)), p(v) = (count(v) + 1) / (N + vocabSize). A model that
 * cannot beat this has learned nothing about context (bytes of English text: about 20–25).
 *
 * @example
 * ```ts
 * mj.data.unigramPerplexity(new Int32Array([0, 0, 1]), new Int32Array([0, 1]), 2);
 * // p(0) = 3/5, p(1) = 2/5 → exp(−(ln 0.6 + ln 0.4) / 2) ≈ 2.041
 * ```
 */
export function unigramPerplexity(
  trainTokens: ArrayLike<number>,
  evalTokens: ArrayLike<number>,
  vocabSize: number,
): number {
  const op = "data.unigramPerplexity";
  checkPositiveInt(op, "vocabSize", vocabSize);
  if (evalTokens.length === 0) fail(op, "the evaluation tokens are empty");
  const counts = new Float64Array(vocabSize);
  for (let i = 0; i < trainTokens.length; i++) {
    const t = trainTokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      fail(op, `training token ${i} is ${t}, outside [0, ${vocabSize})`);
    }
    counts[t]++;
  }
  const denom = Math.log(trainTokens.length + vocabSize);
  let nll = 0;
  for (let i = 0; i < evalTokens.length; i++) {
    const t = evalTokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      fail(op, `evaluation token ${i} is ${t}, outside [0, ${vocabSize})`);
    }
    nll += denom - Math.log(counts[t] + 1);
  }
  return Math.exp(nll / evalTokens.length);
}

/**
 * A batch as i32 tensors of shape [batchSize, seqLen] (for an `EvalBatch`, pass `rows`).
 *
 * @example
 * ```ts
 * const { x, y } = mj.data.batchTensors(ds.batch(8, 128, step, seed), 8, 128);
 * x.shape; // [8, 128], dtype "i32"
 * ```
 */
export function batchTensors(
  batch: Batch,
  batchSize: number,
  seqLen: number,
): { x: Tensor; y: Tensor } {
  const op = "data.batchTensors";
  checkPositiveInt(op, "batch size", batchSize);
  checkPositiveInt(op, "sequence length", seqLen);
  const n = batchSize * seqLen;
  for (const [k, v] of [["x", batch?.x], ["y", batch?.y]] as const) {
    if (!(v instanceof Int32Array) || v.length !== n) {
      fail(
        op,
        `batch.${k} must be an Int32Array of batchSize × seqLen = ${n} ids, got ${
          v instanceof Int32Array ? `${v.length}` : typeof v
        }`,
      );
    }
  }
  return {
    x: fromHost(batch.x.slice(), [batchSize, seqLen], "i32"),
    y: fromHost(batch.y.slice(), [batchSize, seqLen], "i32"),
  };
}

/** Everything a training run needs from the data side. */
export interface PreparedData {
  /** The corpus name (or path). */
  corpus: string;
  /** The tokenizer both splits were encoded with. */
  tokenizer: Tokenizer;
  /** The training token stream. */
  train: TokenDataset;
  /** The validation token stream. */
  val: TokenDataset;
  /** Documents in each split. */
  documents: { train: number; val: number };
}

/**
 * Splits and tokenizes documents already in memory (a string is one document): `prepareData`
 * without the loading, for text a page or a test holds.
 *
 * @example
 * ```ts
 * const text = "Call me Ishmael. Some years ago—never mind how long precisely—".repeat(50);
 * const data = mj.data.prepareText(text, { name: "opening", valFraction: 0.1 });
 * const { x, y } = data.train.batch(4, 32, 0, 1);
 * ```
 */
export function prepareText(
  text: string | readonly string[],
  opts: { name?: string; tokenizer?: Tokenizer; valFraction?: number; separator?: string } = {},
): PreparedData {
  const name = opts.name ?? "text";
  if (typeof text !== "string" && !Array.isArray(text)) {
    fail("data.prepareText", `expected a string or an array of strings, got ${typeof text}`);
  }
  const documents = typeof text === "string" ? [text] : text;
  const tokenizer = opts.tokenizer ?? byteTokenizer();
  const split = splitDocuments(documents, { valFraction: opts.valFraction });
  const sep = { separator: opts.separator };
  return {
    corpus: name,
    tokenizer,
    train: new TokenDataset(
      tokenize(split.train, tokenizer, sep),
      `the ${name} corpus' training split`,
    ),
    val: new TokenDataset(
      tokenize(split.val, tokenizer, sep),
      `the ${name} corpus' validation split`,
    ),
    documents: { train: split.train.length, val: split.val.length },
  };
}
