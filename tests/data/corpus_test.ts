/**
 * Corpora: the three npm data sets (downloaded once into Deno's cache, then offline) and files
 * and folders on disk, with every error case.
 */
import assert from "node:assert/strict";
import { BUILTIN_CORPORA, loadCorpus } from "../../src/data/index.ts";

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
