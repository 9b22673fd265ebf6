/**
 * Tokenizers: UTF-8 bytes (the default, nothing to download) and byte-level BPE encodings from
 * the `gpt-tokenizer` npm package (loaded on first use with a dynamic import of a pinned
 * specifier, so that `mod.ts` stays importable from a URL).
 */
import { fail, formatValue } from "../errors.ts";
import { byteTokenizer, isId, REPLACEMENT, type Tokenizer } from "./byte_tokenizer.ts";

export { byteTokenizer } from "./byte_tokenizer.ts";
export type { Tokenizer } from "./byte_tokenizer.ts";

/** The BPE encodings bundled with gpt-tokenizer 3.4.0. */
export const BPE_ENCODINGS = [
  "cl100k_base",
  "o200k_base",
  "r50k_base",
  "p50k_base",
  "p50k_edit",
  "o200k_harmony",
] as const;

/** One of `BPE_ENCODINGS`. */
export type BpeEncoding = (typeof BPE_ENCODINGS)[number];

type Module = Record<string, unknown>;

/** Static specifiers (one per encoding) so the imports stay analyzable and pinned. */
function importEncoding(encoding: BpeEncoding): Promise<Module> {
  switch (encoding) {
    case "cl100k_base":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/cl100k_base");
    case "o200k_base":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/o200k_base");
    case "r50k_base":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/r50k_base");
    case "p50k_base":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/p50k_base");
    case "p50k_edit":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/p50k_edit");
    case "o200k_harmony":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:gpt-tokenizer@3.4.0/encoding/o200k_harmony");
  }
}

interface EncodingApi {
  encode(text: string, opts?: { disallowedSpecial?: Set<string> }): number[];
  decode(ids: number[]): string;
  vocabularySize?: number;
  specialTokensEncoder?: Map<string, number>;
  bytePairEncodingCoreProcessor?: {
    bytePairRankDecoder?: unknown[];
    tryDecodeToken?: (id: number) => string | Uint8Array | undefined;
  };
}

function encodingApi(mod: Module, encoding: string): EncodingApi {
  const api = (mod.default ?? mod) as Partial<EncodingApi>;
  if (typeof api?.encode !== "function" || typeof api?.decode !== "function") {
    fail(
      "data.bpeTokenizer",
      `npm:gpt-tokenizer@3.4.0/encoding/${encoding} has an unexpected shape (no encode/decode)`,
    );
  }
  return api as EncodingApi;
}

/**
 * The id range of an encoding: the largest mergeable rank or special-token id, plus one. The
 * package's own `vocabularySize` counts tokens, which is smaller where ids have holes (cl100k:
 * 100264 tokens, ids up to 100276).
 */
function idRange(api: EncodingApi, encoding: string): number {
  const ranks = api.bytePairEncodingCoreProcessor?.bytePairRankDecoder;
  const specials = api.specialTokensEncoder;
  if (Array.isArray(ranks) && specials instanceof Map) {
    let top = ranks.length - 1;
    for (const id of specials.values()) top = Math.max(top, id);
    return top + 1;
  }
  if (typeof api.vocabularySize === "number") return api.vocabularySize;
  return fail("data.bpeTokenizer", `cannot determine the vocabulary size of ${encoding}`);
}

/**
 * A byte-level BPE tokenizer from gpt-tokenizer 3.4.0 (downloaded from npm on first use).
 * `vocabSize` is the id range from the package: cl100k_base 100277, o200k_base 200007 (this
 * package's special tokens end at 200006; tiktoken reserves up to 200018), r50k_base 50257,
 * p50k_base 50281. Text that spells a special token (`<|endoftext|>`) is encoded as ordinary
 * text, never as the special id.
 *
 * @example
 * ```ts
 * const tok = await mj.data.bpeTokenizer("cl100k_base");
 * tok.vocabSize; // 100277
 * tok.endOfText; // 100257
 * tok.decode(tok.encode("Call me Ishmael.")); // "Call me Ishmael."
 * ```
 */
export async function bpeTokenizer(encoding: string = "cl100k_base"): Promise<Tokenizer> {
  if (!(BPE_ENCODINGS as readonly string[]).includes(encoding)) {
    fail(
      "data.bpeTokenizer",
      `unknown BPE encoding ${formatValue(encoding)}; expected one of ${BPE_ENCODINGS.join(", ")}`,
    );
  }
  const api = encodingApi(await importEncoding(encoding as BpeEncoding), encoding);
  const vocabSize = idRange(api, encoding);
  const noSpecial = new Set<string>();
  const tryDecode = api.bytePairEncodingCoreProcessor?.tryDecodeToken?.bind(
    api.bytePairEncodingCoreProcessor,
  );
  const utf8 = new TextEncoder();
  const name = `bpe:${encoding}`;
  const endOfText = api.specialTokensEncoder?.get("<|endoftext|>");
  return {
    name,
    vocabSize,
    ...(endOfText !== undefined ? { endOfText } : {}),
    encode(text: string): Int32Array {
      if (typeof text !== "string") {
        fail("data.bpeTokenizer.encode", `expected a string, got ${typeof text}`);
      }
      return Int32Array.from(api.encode(text, { disallowedSpecial: noSpecial }));
    },
    decode(ids: ArrayLike<number>): string {
      // Concatenate the bytes of every token, then decode once: a character split across
      // tokens comes out whole, and invalid sequences become U+FFFD.
      const parts: Uint8Array[] = [];
      let total = 0;
      for (let i = 0; i < ids.length; i++) {
        const id = Number(ids[i]);
        let bytes: Uint8Array = REPLACEMENT;
        if (isId(id, vocabSize)) {
          if (tryDecode) {
            const v = tryDecode(id);
            if (typeof v === "string") bytes = utf8.encode(v);
            else if (v instanceof Uint8Array) bytes = v;
          } else {
            try {
              bytes = utf8.encode(api.decode([id]));
            } catch {
              bytes = REPLACEMENT;
            }
          }
        }
        parts.push(bytes);
        total += bytes.length;
      }
      const all = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        all.set(p, off);
        off += p.length;
      }
      return new TextDecoder("utf-8", { fatal: false }).decode(all);
    },
  };
}

/**
 * The names `tokenizerByName` accepts.
 *
 * @example
 * ```ts
 * mj.data.tokenizerNames(); // ["byte", "bpe", "bpe:cl100k_base", "bpe:o200k_base", …]
 * ```
 */
export function tokenizerNames(): string[] {
  return ["byte", "bpe", ...BPE_ENCODINGS.map((e) => `bpe:${e}`)];
}

/**
 * A tokenizer by name: "byte", "bpe" (cl100k_base) or "bpe:<encoding>". `tok.name` always
 * round-trips through this function.
 *
 * @example
 * ```ts
 * const bytes = await mj.data.tokenizerByName("byte");
 * const gpt4 = await mj.data.tokenizerByName("bpe:cl100k_base");
 * const again = await mj.data.tokenizerByName(gpt4.name);
 * ```
 */
export async function tokenizerByName(name: string): Promise<Tokenizer> {
  if (name === "byte") return byteTokenizer();
  if (name === "bpe") return await bpeTokenizer("cl100k_base");
  if (typeof name === "string" && name.startsWith("bpe:")) {
    const enc = name.slice(4);
    if ((BPE_ENCODINGS as readonly string[]).includes(enc)) return await bpeTokenizer(enc);
  }
  return fail(
    "data.tokenizerByName",
    `unknown tokenizer ${JSON.stringify(name)}; expected one of ${tokenizerNames().join(", ")}`,
  );
}
