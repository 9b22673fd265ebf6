/** Shared helpers of the command-line tests: a corpus file, tiny-model flags, running the CLI. */

const TEXT = [
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "However little known the feelings or views of such a man may be on his first entering a neighbourhood,",
  "this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property",
  "of some one or other of their daughters. My dear Mr. Bennet, said his lady to him one day, have you heard",
  "that Netherfield Park is let at last? Mr. Bennet replied that he had not. But it is, returned she;",
  "for Mrs. Long has just been here, and she told me all about it. Mr. Bennet made no answer.",
].join("\n").repeat(6);

/** A temporary directory holding `corpus.txt`. */
export async function cliDir(prefix: string): Promise<{ dir: string; corpus: string }> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.writeTextFile(`${dir}/corpus.txt`, TEXT);
  return { dir, corpus: `${dir}/corpus.txt` };
}

/** Flags of a tiny, fast run on `corpus` (no evaluation until the end, no samples). */
export function tinyFlags(corpus: string, backend: "cpu" | "webgpu" | "native"): string[] {
  return [
    "--data",
    corpus,
    "--backend",
    backend,
    "--layers",
    "1",
    "--d-model",
    "16",
    "--heads",
    "2",
    "--experts",
    "4",
    "--d-ff",
    "16",
    "--batch",
    "4",
    "--seq",
    "16",
    "--samples",
    "0",
    "--eval-every",
    "0",
    "--eval-batches",
    "2",
  ];
}

export const GRIN = new URL("../../examples/grin.ts", import.meta.url).pathname;

/** What a finished CLI process left. */
export interface CliOutcome {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Runs examples/grin.ts with `args` to the end. */
export async function cli(args: string[]): Promise<CliOutcome> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GRIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** The lines of stderr that moejit wrote (Deno's own npm notices left out). */
export function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !/[│╭╰]|Warning/.test(l));
}
