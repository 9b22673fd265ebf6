/**
 * The fuzz loop: generate the program of each seed, run it on the interpreter and on the compiled
 * backend under test (WebGPU or native) in the modes drawn for that seed, and on a mismatch shrink
 * it and print the smallest failing program as a runnable snippet.
 *
 * `MOEJIT_FUZZ_SEED=s` (with `MOEJIT_FUZZ_COUNT=n`, default 1) runs seeds s … s+n−1 instead of a
 * tier's defaults; every report names its seed, so one failing graph is rerun with
 * `MOEJIT_FUZZ_SEED=<seed> deno test -A tests/fuzz/fuzz_test.ts`.
 */
import { checkProgram, DEFAULT_MODE, type Mode, modeName, type Verdict } from "./check.ts";
import { mulberry32 } from "./data.ts";
import { generate } from "./generate.ts";
import { live } from "./program.ts";
import { shrink } from "./shrink.ts";
import { snippet } from "./snippet.ts";
import { backend } from "../webgpu/harness.ts";

export interface Seeds {
  first: number;
  count: number;
  /** Whether the seeds came from the environment. */
  chosen: boolean;
}

/** The seeds to run: the tier's defaults, or MOEJIT_FUZZ_SEED / MOEJIT_FUZZ_COUNT. */
export function seedsFrom(
  defaults: { first: number; count: number },
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Seeds {
  const seed = env("MOEJIT_FUZZ_SEED"), count = env("MOEJIT_FUZZ_COUNT");
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`${name}=${v} is not a non-negative integer`);
    }
    return n;
  };
  if (seed === undefined || seed === "") {
    return {
      first: defaults.first,
      count: count ? int("MOEJIT_FUZZ_COUNT", count) : defaults.count,
      chosen: false,
    };
  }
  return {
    first: int("MOEJIT_FUZZ_SEED", seed),
    count: count ? int("MOEJIT_FUZZ_COUNT", count) : 1,
    chosen: true,
  };
}

/** The modes a seed runs in: always fused and eager with gradients, sometimes more. */
export function modesFor(seed: number): Mode[] {
  const r = mulberry32(seed ^ 0x2f6b_a3c1);
  const modes: Mode[] = [DEFAULT_MODE];
  if (r() < 0.35) modes.push({ fusion: false, jit: false, grads: true });
  if (r() < 0.3) modes.push({ fusion: true, jit: true, grads: true });
  if (r() < 0.2) modes.push({ fusion: true, jit: false, grads: false });
  return modes;
}

export interface SeedResult {
  seed: number;
  verdict: Verdict;
  /** For a failure: the shrunk program as a snippet, with what disagreed. */
  report?: string;
}

/** Runs one seed; a failure is shrunk (within the given budget) and printed. */
export async function runSeed(
  seed: number,
  opts: { shrinkBudget?: number; shrinkMs?: number; log?: (s: string) => void } = {},
): Promise<SeedResult> {
  const p = generate(seed);
  const modes = modesFor(seed);
  const verdict = await checkProgram(p, modes);
  if (verdict.status !== "fail") return { seed, verdict };
  const small = await shrink(p, verdict.mode, verdict, {
    budget: opts.shrinkBudget,
    timeLimitMs: opts.shrinkMs,
    log: opts.log,
  });
  const v = small.verdict;
  const note = [
    `${backend()} (${modeName(small.mode)}) disagrees with the interpreter on ${v.what}:`,
    firstLines(v.detail),
    `Shrunk from ${live(p).length} to ${live(small.program).length} nodes in ${small.tried} runs.`,
  ].join("\n");
  const code = snippet(small.program, { seed, note, mode: small.mode, backend: backend() });
  const report = [
    `seed ${seed}: ${backend()} (${modeName(verdict.mode)}) disagrees with the interpreter on ` +
    `${verdict.what}: ${firstLines(verdict.detail)}`,
    `Rerun: MOEJIT_FUZZ_SEED=${seed} deno test -A tests/fuzz/fuzz_test.ts`,
    `Minimal failing graph (save at the repository root and run with deno run -A):`,
    code,
  ].join("\n");
  return { seed, verdict, report };
}

/** The first lines of a failure's detail: what went wrong (a shader error goes on with its source). */
function firstLines(detail: string, n = 12): string {
  const lines = detail.split("\n");
  return [...lines.slice(0, n), ...(lines.length > n ? ["…"] : [])].join("\n");
}
