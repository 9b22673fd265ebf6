/**
 * Corpora: the three npm data sets (downloaded once into Deno's cache, then offline) and files
 * and folders on disk, with every error case.
 */
import assert from "node:assert/strict";
import { BUILTIN_CORPORA, loadCorpus } from "../../src/data/index.ts";
import { nonTextBytes } from "../../src/data/corpus.ts";

const total = (docs: string[]) => docs.reduce((a, d) => a + d.length, 0);

Deno.test("loadCorpus: Moby Dick (the default) has 139 chapters of plausible sizes", async () => {
  const c = await loadCorpus();
  assert.equal(c.name, "moby-dick");
  assert.equal(c.documents.length, 139);
  assert.ok(c.documents.every((d) => typeof d === "string" && d.length > 200));
  const chars = total(c.documents);
  assert.ok(chars > 1_150_000 && chars < 1_300_000, `${chars} characters`);
  assert.ok(c.documents.some((d) => d.includes("Call me Ishmael.")));
  assert.ok(c.documents.at(-1)!.includes("orphan"));
  assert.deepEqual((await loadCorpus("moby-dick")).documents, c.documents);
});

Deno.test("loadCorpus: State of the Union speeches", async () => {
  const c = await loadCorpus("sotu");
  assert.equal(c.name, "sotu");
  assert.ok(c.documents.length >= 230, `${c.documents.length} speeches`);
  assert.ok(c.documents[0].includes("Fellow-Citizens"));
  assert.ok(total(c.documents) > 10_000_000);
});

Deno.test("loadCorpus: SpamAssassin e-mails", async () => {
  const c = await loadCorpus("spam-assassin");
  assert.equal(c.name, "spam-assassin");
  assert.equal(c.documents.length, 6046);
  assert.ok(c.documents[0].startsWith("From "));
});

async function tree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "moejit_corpus_" });
  for (const [rel, text] of Object.entries(files)) {
    const path = `${root}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return root;
}

Deno.test("loadCorpus: a folder loads .txt/.md files recursively, sorted by path", async () => {
  const root = await tree({
    "b.txt": "B",
    "a/z.md": "AZ",
    "a/b/c.TXT": "ABC",
    "a.txt": "A",
    "notes.json": "{}",
    "img/x.png": "not text",
    "Z.md": "Z upper",
  });
  try {
    const c = await loadCorpus(root);
    assert.equal(c.name, root);
    // Code-unit order of relative paths: "Z.md" < "a.txt" < "a/b/c.TXT" < "a/z.md" < "b.txt".
    assert.deepEqual(c.documents, ["Z upper", "A", "ABC", "AZ", "B"]);
    assert.deepEqual((await loadCorpus(`${root}/`)).documents, c.documents);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadCorpus: a single text file is one document (BOM dropped)", async () => {
  const root = await tree({ "book.txt": "\uFEFFline one\nline two\n" });
  try {
    const c = await loadCorpus(`${root}/book.txt`);
    assert.deepEqual(c.documents, ["line one\nline two\n"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadCorpus: error cases", async () => {
  const root = await tree({ "empty/a.txt": "  \n", "empty/b/c.md": "", "none/x.json": "{}" });
  try {
    await assert.rejects(
      () => loadCorpus(`${root}/missing.txt`),
      /data file not found: .*missing\.txt/,
    );
    await assert.rejects(
      () => loadCorpus("./no/such/dir"),
      /data file not found: \.\/no\/such\/dir/,
    );
    await assert.rejects(
      () => loadCorpus(`${root}/none`),
      /no text files \(\.txt, \.md\) found in folder .*none/,
    );
    await assert.rejects(
      () => loadCorpus(`${root}/empty`),
      /corpus .*empty is empty: all 2 documents are empty or whitespace/,
    );
    await assert.rejects(
      () => loadCorpus(`${root}/empty/a.txt`),
      /is empty: its only document is empty or whitespace/,
    );
    await assert.rejects(
      () => loadCorpus("shakespeare"),
      new RegExp(
        `unknown corpus "shakespeare"; the built-in corpora are ${BUILTIN_CORPORA.join(", ")}`,
      ),
    );
    await assert.rejects(() => loadCorpus(""), /expected a corpus name or a path/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadCorpus: a binary file is refused with the share of non-text bytes; a few stray bytes warn", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-binary-" });
  try {
    // 200 KB of random bytes (a fixed generator, so the share is the same every run).
    let a = 12345;
    const bytes = Uint8Array.from({ length: 200_000 }, () => {
      a = (Math.imul(a, 1103515245) + 12345) >>> 0;
      return a >>> 24;
    });
    await Deno.writeFile(`${dir}/random.bin`, bytes);
    await assert.rejects(
      () => loadCorpus(`${dir}/random.bin`),
      /data\.loadCorpus: .*random\.bin does not look like text: \d+\.\d% of its 200,000 bytes are control bytes or not UTF-8 \(at most 10\.0% is accepted\); give a UTF-8 text file/,
    );
    // UTF-16 text is half NUL bytes: refused too.
    const utf16 = new Uint8Array(
      new Uint16Array([..."plain words ".repeat(200)].map((c) => c.charCodeAt(0))).buffer,
    );
    await Deno.writeFile(`${dir}/utf16.txt`, utf16);
    await assert.rejects(
      () => loadCorpus(`${dir}/utf16.txt`),
      /utf16\.txt does not look like text: 50\.0%/,
    );
    // Latin-1 accents (invalid UTF-8) in ordinary text, 1 byte in 20: read, with a warning.
    const enc = new TextEncoder();
    const latin1 = new Uint8Array(
      Array.from({ length: 100 }, () => [...enc.encode("we met at the caf"), 0xe9, 0x2e, 0x20])
        .flat(),
    );
    await Deno.writeFile(`${dir}/latin1.txt`, latin1);
    const warned: string[] = [];
    const warn = console.warn;
    console.warn = (...a: unknown[]) => warned.push(a.join(" "));
    try {
      const c = await loadCorpus(`${dir}/latin1.txt`);
      assert.ok(c.documents[0].endsWith("caf\uFFFD. "));
    } finally {
      console.warn = warn;
    }
    assert.equal(warned.length, 1);
    assert.match(
      warned[0],
      /latin1\.txt: 5\.0% of its bytes are control bytes or not UTF-8; they are read as U\+FFFD/,
    );
    // Text (UTF-8 of every width, tabs, CR LF) counts no non-text bytes.
    assert.equal(nonTextBytes(new TextEncoder().encode("a\tb\r\nc é € 𝄞 ünïcödé\f")), 0);
    assert.equal(nonTextBytes(new Uint8Array([0, 0x7f, 0xff, 0xc0, 0x80, 0xed, 0xa0, 0x80])), 8);
    assert.equal(nonTextBytes(new Uint8Array([0xe2, 0x82])), 2); // a cut sequence
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
