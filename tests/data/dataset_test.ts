/** Splits, token streams, resumable batches, evaluation windows and the unigram baseline. */
import assert from "node:assert/strict";
import {
  batchTensors,
  bpeTokenizer,
  byteTokenizer,
  loadCorpus,
  prepareData,
  splitDocuments,
  TokenDataset,
  tokenize,
  unigramPerplexity,
} from "../../src/data/index.ts";

const docs = (n: number) => Array.from({ length: n }, (_, i) => `doc${i} `.repeat(i + 1));

Deno.test("splitDocuments: with ≥ 10 documents every round(1/f)-th goes to validation", () => {
  const d = docs(25);
  const s = splitDocuments(d);
  assert.deepEqual(s.val, [d[9], d[19]]);
  assert.equal(s.train.length, 23);
  assert.deepEqual(splitDocuments(d), s, "deterministic");
  const q = splitDocuments(d, { valFraction: 0.25 });
  assert.deepEqual(q.val, [d[3], d[7], d[11], d[15], d[19], d[23]]);
  assert.equal(q.train.length + q.val.length, 25);
  assert.deepEqual(splitDocuments(d, { valFraction: 0 }), { train: d, val: [] });
  // 1/f larger than the number of documents: falls back to cutting each document.
  const tiny = splitDocuments(d, { valFraction: 0.01 });
  assert.equal(tiny.val.length, 25);
  assert.deepEqual(tiny.train.map((t, i) => t + tiny.val[i]), d);
});

Deno.test("splitDocuments: with < 10 documents each text is cut at (1 − f) of its length", () => {
  const text = "0123456789".repeat(10);
  const s = splitDocuments([text, "abcdefghij"], { valFraction: 0.2 });
  assert.deepEqual(s.train, [text.slice(0, 80), "abcdefgh"]);
  assert.deepEqual(s.val, [text.slice(80), "ij"]);
  // Never cuts a surrogate pair in half.
  const emoji = splitDocuments(["ab🐋cd"], { valFraction: 0.5 }); // length 6, cut at 3
  assert.deepEqual(emoji, { train: ["ab"], val: ["🐋cd"] });
  assert.throws(
    () => splitDocuments(["x"], { valFraction: 0.9 }),
    /valFraction must be .*\[0, 0\.5\]/,
  );
  assert.throws(() => splitDocuments(["x"], { valFraction: -0.1 }), /valFraction/);
  assert.throws(() => splitDocuments(["x"], { valFraction: NaN }), /valFraction/);
});

Deno.test("tokenize: concatenation without (or with) a separator", () => {
  const tok = byteTokenizer();
  assert.deepEqual([...tokenize(["ab", "", "c"], tok)], [97, 98, 99]);
  assert.deepEqual([...tokenize(["ab", "c"], tok, { separator: "\n" })], [97, 98, 10, 99]);
  assert.equal(tokenize([], tok).length, 0);
});

const stream = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

Deno.test("TokenDataset.batch: same (seed, index) → same batch, whatever came before", () => {
  const ds = new TokenDataset(stream(10_000), "toy");
  const a = ds.batch(4, 16, 7, 123);
  for (let i = 0; i < 5; i++) ds.batch(4, 16, i, 123); // unrelated draws in between
  const fresh = new TokenDataset(stream(10_000), "toy");
  assert.deepEqual(fresh.batch(4, 16, 7, 123), a);
  assert.notDeepEqual(ds.batch(4, 16, 8, 123).x, a.x, "different index");
  assert.notDeepEqual(ds.batch(4, 16, 7, 124).x, a.x, "different seed");
  assert.notDeepEqual(ds.batch(4, 16, 0, 2 ** 32).x, ds.batch(4, 16, 0, 0).x, "seed high word");
  // Row b of a batch does not depend on the batch size.
  assert.deepEqual(ds.batch(2, 16, 7, 123).x, a.x.subarray(0, 32));
});

Deno.test("TokenDataset.batch: windows in bounds, y = x shifted by one, starts cover the range", () => {
  const n = 50, seqLen = 9;
  const ds = new TokenDataset(stream(n), "toy");
  const seen = new Set<number>();
  for (let index = 0; index < 200; index++) {
    const { x, y } = ds.batch(3, seqLen, index, 5);
    assert.equal(x.length, 3 * seqLen);
    for (let b = 0; b < 3; b++) {
      const s = x[b * seqLen];
      assert.ok(s >= 0 && s + seqLen < n, `start ${s}`);
      seen.add(s);
      for (let t = 0; t < seqLen; t++) {
        assert.equal(x[b * seqLen + t], s + t);
        assert.equal(y[b * seqLen + t], s + t + 1);
      }
    }
  }
  assert.equal(seen.size, n - seqLen, "every valid start is drawn");
  // The shortest possible corpus: exactly one window.
  const one = new TokenDataset(stream(5), "toy").batch(2, 4, 3, 0);
  assert.deepEqual([...one.x], [0, 1, 2, 3, 0, 1, 2, 3]);
  assert.deepEqual([...one.y], [1, 2, 3, 4, 1, 2, 3, 4]);
});

Deno.test("TokenDataset: errors for short data and bad sizes", () => {
  const val = new TokenDataset(stream(300), "the corpus' validation split");
  assert.throws(
    () => val.batch(8, 512, 0, 0),
    /sequence length 512 is longer than the corpus' validation split \(300 tokens/,
  );
  assert.throws(() => val.batch(8, 300, 0, 0), /sequence length 300 is longer .*seqLen \+ 1 = 301/);
  assert.throws(() => val.evalBatches(8, 512), /sequence length 512 is longer/);
  assert.throws(() => val.batch(0, 16, 0, 0), /batch size must be a positive integer, got 0/);
  assert.throws(() => val.batch(8, -1, 0, 0), /sequence length must be a positive integer/);
  assert.throws(() => val.batch(8, 1.5, 0, 0), /sequence length must be a positive integer/);
  assert.throws(() => val.batch(8, 16, -1, 0), /batch index must be an integer/);
  assert.throws(() => val.batch(8, 16, 0, -2), /seed must be an integer/);
  assert.throws(() => val.evalBatches(0, 16), /batch size must be a positive integer/);
  assert.throws(() => val.evalBatches(4, 16, 0), /maxBatches must be a positive integer/);
  assert.throws(() => new TokenDataset([1, 2] as unknown as Int32Array), /Int32Array/);
});

Deno.test("TokenDataset.evalBatches: non-overlapping windows covering the stream", () => {
  const n = 103, seqLen = 10;
  const ds = new TokenDataset(stream(n), "toy");
  assert.equal(ds.evalWindows(seqLen), 10);
  const batches = ds.evalBatches(4, seqLen);
  assert.deepEqual(batches.map((b) => b.rows), [4, 4, 2]);
  const xs = batches.flatMap((b) => [...b.x]);
  const ys = batches.flatMap((b) => [...b.y]);
  assert.deepEqual(xs, [...stream(100)]);
  assert.deepEqual(ys, xs.map((v) => v + 1));
  assert.deepEqual(ds.evalBatches(4, seqLen), batches, "deterministic");
  // Exactly n − 1 = k·seqLen: every target is covered.
  assert.deepEqual(
    new TokenDataset(stream(21), "toy").evalBatches(8, 10).flatMap((b) => [...b.y]),
    [
      ...stream(21).subarray(1),
    ],
  );
  // maxBatches: full batches of windows spread over the stream.
  const few = ds.evalBatches(2, seqLen, 2);
  assert.deepEqual(few.map((b) => b.rows), [2, 2]);
  assert.deepEqual(few.flatMap((b) => [b.x[0], b.x[seqLen]]), [0, 20, 50, 70]);
  assert.equal(ds.evalBatches(4, seqLen, 100).length, 3, "a large limit changes nothing");
});

Deno.test("unigramPerplexity: hand-computed add-one example", () => {
  // Train counts: 0 → 2, 1 → 1, 2 → 0; N = 3, V = 3: p = 3/6, 2/6, 1/6.
  const ppl = unigramPerplexity(new Int32Array([0, 0, 1]), new Int32Array([0, 1, 2, 2]), 3);
  const expected = Math.exp(-(Math.log(3 / 6) + Math.log(2 / 6) + 2 * Math.log(1 / 6)) / 4);
  assert.ok(Math.abs(ppl - expected) < 1e-12, `${ppl} vs ${expected}`);
  // Nothing learned: the uniform distribution's perplexity is the vocabulary size.
  assert.ok(Math.abs(unigramPerplexity([], [5, 9, 200], 256) - 256) < 1e-9);
  assert.throws(() => unigramPerplexity([0], [], 4), /evaluation tokens are empty/);
  assert.throws(() => unigramPerplexity([0], [4], 4), /evaluation token 0 is 4, outside \[0, 4\)/);
  assert.throws(() => unigramPerplexity([7], [0], 4), /training token 0 is 7/);
  assert.throws(() => unigramPerplexity([0], [0], 0), /vocabSize must be a positive integer/);
});

Deno.test("batchTensors: i32 [B, S] tensors holding the batch", async () => {
  const ds = new TokenDataset(stream(1000), "toy");
  const batch = ds.batch(3, 8, 1, 9);
  const { x, y } = batchTensors(batch, 3, 8);
  assert.deepEqual(x.shape, [3, 8]);
  assert.equal(x.dtype, "i32");
  assert.deepEqual([...await x.data()], [...batch.x]);
  assert.deepEqual([...await y.data()], [...batch.y]);
  assert.throws(
    () => batchTensors(batch, 4, 8),
    /batch\.x must be an Int32Array of .* = 32 ids, got 24/,
  );
  assert.throws(() => batchTensors(batch, 3, 0), /sequence length must be a positive integer/);
});

Deno.test("Moby Dick: split, token counts (bytes and cl100k), unigram baseline", async () => {
  const { documents } = await loadCorpus("moby-dick");
  const split = splitDocuments(documents);
  assert.equal(split.val.length, 13);
  assert.equal(split.train.length, 126);
  const bytes = byteTokenizer();
  const all = tokenize(documents, bytes);
  assert.equal(all.length, 1_216_302);
  const train = tokenize(split.train, bytes), val = tokenize(split.val, bytes);
  assert.equal(train.length + val.length, all.length);
  const ppl = unigramPerplexity(train, val, 256);
  assert.ok(ppl > 15 && ppl < 35, `byte unigram perplexity ${ppl}`);
  const cl = tokenize(documents, await bpeTokenizer("cl100k_base"));
  assert.ok(cl.length > 270_000 && cl.length < 300_000, `${cl.length} cl100k tokens`);
  console.log(
    `moby-dick: ${all.length} bytes (train ${train.length}, val ${val.length}), ` +
      `${cl.length} cl100k tokens, byte unigram perplexity ${ppl.toFixed(3)}`,
  );
});

Deno.test("prepareData: corpus + tokenizer + split in one call", async () => {
  const root = await Deno.makeTempDir({ prefix: "moejit_prepare_" });
  try {
    await Deno.writeTextFile(`${root}/a.txt`, "x".repeat(900) + "y".repeat(100));
    const data = await prepareData({ corpus: `${root}/a.txt`, tokenizer: "byte" });
    assert.equal(data.tokenizer.name, "byte");
    assert.equal(data.train.length, 900);
    assert.equal(data.val.length, 100);
    assert.deepEqual(data.documents, { train: 1, val: 1 });
    assert.ok(data.val.tokens.every((v) => v === 121));
    assert.throws(
      () => data.val.batch(2, 128, 0, 0),
      /sequence length 128 is longer than the .*a\.txt corpus' validation split \(100 tokens/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
