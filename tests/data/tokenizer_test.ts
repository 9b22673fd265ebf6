/** Tokenizers: byte round trips (multi-byte, invalid UTF-8), BPE round trips and vocab sizes. */
import assert from "node:assert/strict";
import {
  bpeTokenizer,
  byteTokenizer,
  tokenizerByName,
  tokenizerNames,
} from "../../src/data/index.ts";

const SAMPLE = "Call me Ishmael. Héllo wörld — 世界 🐋 naïve café\n\ttabs & <|endoftext|>";

Deno.test("byteTokenizer: UTF-8 bytes, vocab 256, round trip incl. multi-byte", () => {
  const tok = byteTokenizer();
  assert.equal(tok.name, "byte");
  assert.equal(tok.vocabSize, 256);
  assert.deepEqual([...tok.encode("aé世🐋")], [
    97,
    0xc3,
    0xa9,
    0xe4,
    0xb8,
    0x96,
    0xf0,
    0x9f,
    0x90,
    0x8b,
  ]);
  const ids = tok.encode(SAMPLE);
  assert.ok(ids instanceof Int32Array);
  assert.equal(ids.length, new TextEncoder().encode(SAMPLE).length);
  assert.ok(ids.every((v) => v >= 0 && v < 256));
  assert.equal(tok.decode(ids), SAMPLE);
  assert.equal(tok.decode(Array.from(ids)), SAMPLE);
  assert.equal(tok.decode([]), "");
});

Deno.test("byteTokenizer: invalid UTF-8 and out-of-range ids decode to U+FFFD, never throw", () => {
  const tok = byteTokenizer();
  const whale = tok.encode("🐋");
  assert.equal(tok.decode(whale.subarray(0, 2)), "\uFFFD"); // truncated 4-byte sequence
  assert.equal(tok.decode([104, 0xc3]), "h\uFFFD");
  assert.equal(tok.decode([0xff, 104, 0x80, 105]), "\uFFFDh\uFFFDi"); // never-valid bytes
  assert.equal(tok.decode([0xc3, 0x28]), "\uFFFD("); // bad continuation
  assert.equal(tok.decode([104, 256, -1, 1.5, 105]), "h\uFFFD\uFFFD\uFFFDi");
});

Deno.test("bpeTokenizer: cl100k_base round trip, vocab size, specials as text", async () => {
  const tok = await bpeTokenizer();
  assert.equal(tok.name, "bpe:cl100k_base");
  assert.equal(tok.vocabSize, 100277); // ids 0..100255 merges, specials up to 100276
  const ids = tok.encode(SAMPLE);
  assert.ok(ids instanceof Int32Array);
  assert.ok(ids.length < new TextEncoder().encode(SAMPLE).length);
  assert.ok(ids.every((v) => v >= 0 && v < tok.vocabSize));
  assert.equal(tok.decode(ids), SAMPLE);
  // "<|endoftext|>" in the text is plain text, not the special id 100257.
  assert.ok(!ids.includes(100257));
  assert.deepEqual([...tok.encode("Hello world")], [9906, 1917]);
});

Deno.test("bpeTokenizer: split characters, specials and unknown ids decode without throwing", async () => {
  const tok = await bpeTokenizer("cl100k_base");
  const whale = tok.encode("🐋");
  assert.ok(whale.length > 1, "the emoji spans several tokens");
  assert.equal(tok.decode(whale.subarray(0, 1)), "\uFFFD");
  assert.equal(tok.decode(whale), "🐋"); // and no state leaks from the previous call
  assert.equal(tok.decode([100257]), "<|endoftext|>");
  assert.equal(tok.decode([9906, 100261, 1917]), "Hello\uFFFD world"); // 100261 is a hole
  assert.equal(tok.decode([9906, 100277, -3]), "Hello\uFFFD\uFFFD");
});

Deno.test("bpeTokenizer: vocab sizes of the other encodings (from the package)", async () => {
  const expected: Record<string, number> = {
    r50k_base: 50257,
    p50k_base: 50281,
    o200k_base: 200007,
  };
  for (const [enc, size] of Object.entries(expected)) {
    const tok = await bpeTokenizer(enc);
    assert.equal(tok.vocabSize, size, enc);
    assert.equal(tok.decode(tok.encode(SAMPLE)), SAMPLE, enc);
  }
  await assert.rejects(() => bpeTokenizer("gpt2"), /unknown BPE encoding "gpt2".*cl100k_base/);
});

Deno.test("tokenizerByName: byte, bpe, bpe:<encoding>, names round-trip, clear errors", async () => {
  assert.equal((await tokenizerByName("byte")).name, "byte");
  const bpe = await tokenizerByName("bpe");
  assert.equal(bpe.name, "bpe:cl100k_base");
  assert.equal((await tokenizerByName(bpe.name)).vocabSize, 100277);
  assert.equal((await tokenizerByName("bpe:r50k_base")).vocabSize, 50257);
  assert.ok(tokenizerNames().includes("bpe:o200k_base"));
  await assert.rejects(
    () => tokenizerByName("sentencepiece"),
    /unknown tokenizer "sentencepiece"; expected one of byte, bpe, bpe:cl100k_base/,
  );
  await assert.rejects(() => tokenizerByName("bpe:nope"), /unknown tokenizer "bpe:nope"/);
});
