/**
 * The byte tokenizer (UTF-8 bytes, vocabulary 256) and the interface every tokenizer implements.
 * Needs nothing but the platform's TextEncoder, so the browser bundle has it.
 */
import { fail } from "../errors.ts";

/** Text ↔ token ids. `vocabSize` is one more than the largest id `encode` can produce. */
export interface Tokenizer {
  /** A name `tokenizerByName` accepts: "byte" or "bpe:<encoding>". */
  readonly name: string;
  /** Size of the embedding table a model needs: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  /** Token ids of `text`. */
  encode(text: string): Int32Array;
  /** Text of `ids`; never throws: invalid UTF-8 and unknown ids become U+FFFD. */
  decode(ids: ArrayLike<number>): string;
  /**
   * The id of the encoding's `<|endoftext|>` (a checkpoint's bos/eos id); absent where the
   * tokenizer has no special token (bytes).
   */
  readonly endOfText?: number;
}

/** UTF-8 of U+FFFD, what decoders emit for ids and bytes they cannot decode. */
export const REPLACEMENT = new Uint8Array([0xef, 0xbf, 0xbd]);

/** Whether `v` is a valid id below `vocab`. */
export function isId(v: number, vocab: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < vocab;
}

/**
 * The byte tokenizer: a token is one byte of the text's UTF-8 encoding (vocabulary 256).
 * Decoding replaces invalid UTF-8 sequences (e.g. a multi-byte character cut in half) and ids
 * outside [0, 256) with U+FFFD instead of throwing.
 *
 * @example
 * ```ts
 * const tok = mj.data.byteTokenizer();
 * const ids = tok.encode("héllo"); // Int32Array [104, 195, 169, 108, 108, 111]
 * tok.decode(ids); // "héllo"
 * tok.decode([104, 195]); // "h\uFFFD"
 * ```
 */
export function byteTokenizer(): Tokenizer {
  const encoder = new TextEncoder();
  return {
    name: "byte",
    vocabSize: 256,
    encode(text: string): Int32Array {
      if (typeof text !== "string") {
        fail("data.byteTokenizer.encode", `expected a string, got ${typeof text}`);
      }
      return Int32Array.from(encoder.encode(text));
    },
    decode(ids: ArrayLike<number>): string {
      const bytes = new Uint8Array(ids.length * REPLACEMENT.length);
      let n = 0;
      for (let i = 0; i < ids.length; i++) {
        const v = Number(ids[i]);
        if (isId(v, 256)) {
          bytes[n++] = v;
        } else {
          bytes.set(REPLACEMENT, n);
          n += REPLACEMENT.length;
        }
      }
      return new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, n));
    },
  };
}
