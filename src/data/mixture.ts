/**
 * Mixtures of corpora (BAM's mixture phase trains on equal parts of every domain): training
 * batches whose rows are dealt round-robin over the domains, each domain's rows drawn from its
 * own split by its own counter-based generator, so batch i is still a pure function of
 * (seed, i); validation stays per domain.
 */
import { fail } from "../errors.ts";
import type { Batch } from "./dataset.ts";
import { prepareData, type PreparedData } from "./dataset.ts";
import { type Tokenizer, tokenizerByName } from "./tokenizer.ts";

/** Something that deals training batches (a TokenDataset or a mixture of them). */
export interface BatchSource {
  /** Training batch number `index` (a pure function of its arguments). */
  batch(batchSize: number, seqLen: number, index: number, seed?: number): Batch;
  /** Tokens available (for reports). */
  readonly length: number;
}

/** Equal shares of several token streams, row by row. */
export class MixtureDataset implements BatchSource {
  readonly parts: readonly BatchSource[];

  /**
   * @example
   * ```ts
   * const mix = new mj.data.MixtureDataset([moby.train, sotu.train, spam.train]);
   * const { x, y } = mix.batch(12, 128, step, seed); // rows 0, 3, 6, 9 from moby, …
   * ```
   */
  constructor(parts: readonly BatchSource[]) {
    if (!Array.isArray(parts) || parts.length === 0) {
      fail("data.MixtureDataset", "expected at least one data set");
    }
    this.parts = parts;
  }

  get length(): number {
    return this.parts.reduce((a, p) => a + p.length, 0);
  }

  /**
   * Batch `index`: row r comes from part (r + index) mod P (rotating, so small batches still
   * see every part equally over steps); each part's rows are its own batch `index` drawn with
   * seed + part number.
   *
   * @example
   * ```ts
   * mix.batch(8, 128, 0, 1).x.length; // 8 · 128
   * ```
   */
  batch(batchSize: number, seqLen: number, index: number, seed = 0): Batch {
    const P = this.parts.length;
    const rowsOf = Array.from({ length: P }, () => [] as number[]);
    for (let r = 0; r < batchSize; r++) rowsOf[(r + index) % P].push(r);
    const x = new Int32Array(batchSize * seqLen), y = new Int32Array(batchSize * seqLen);
    rowsOf.forEach((rows, p) => {
      if (!rows.length) return;
      const b = this.parts[p].batch(rows.length, seqLen, index, seed + p);
      rows.forEach((r, j) => {
        x.set(b.x.subarray(j * seqLen, (j + 1) * seqLen), r * seqLen);
        y.set(b.y.subarray(j * seqLen, (j + 1) * seqLen), r * seqLen);
      });
    });
    return { x, y };
  }
}

/** A mixture of prepared corpora sharing one tokenizer. */
export interface PreparedMixture {
  /** "moby-dick+sotu+spam-assassin". */
  name: string;
  tokenizer: Tokenizer;
  train: MixtureDataset;
  /** Every domain, prepared on its own (its validation split is the domain's). */
  domains: PreparedData[];
}

/**
 * Loads, splits and tokenizes each corpus and mixes their training splits in equal parts.
 *
 * @example
 * ```ts
 * const mix = await mj.data.prepareMixture(["moby-dick", "sotu", "spam-assassin"]);
 * mix.domains.map((d) => d.val.length); // validation tokens per domain
 * ```
 */
export async function prepareMixture(
  corpora: readonly string[],
  opts: { tokenizer?: string | Tokenizer; valFraction?: number } = {},
): Promise<PreparedMixture> {
  if (!Array.isArray(corpora) || corpora.length < 1) {
    fail("data.prepareMixture", "expected a list of corpus names or paths");
  }
  const tokenizer = typeof opts.tokenizer === "object"
    ? opts.tokenizer
    : await tokenizerByName(opts.tokenizer ?? "byte");
  const domains: PreparedData[] = [];
  for (const c of corpora) {
    domains.push(await prepareData({ corpus: c, tokenizer, valFraction: opts.valFraction }));
  }
  return {
    name: domains.map((d) => d.corpus).join("+"),
    tokenizer,
    train: new MixtureDataset(domains.map((d) => d.train)),
    domains,
  };
}
