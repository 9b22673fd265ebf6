/**
 * The system C compiler for the native backend: found once per process (CC, then cc, gcc,
 * clang), its flags probed (OpenMP and -march=native when they work), and each step's source
 * compiled to a shared library cached on disk by a hash of the source, the flags, the compiler
 * and the CPU — so a second run of the same program compiles nothing. Cache writes are atomic
 * (a temporary file renamed into place), so concurrent processes never see half a library.
 */
import { contentHash } from "../../ir/node.ts";
import { envVar } from "../../env.ts";

export interface Toolchain {
  /** The compiler command and its version line. */
  cc: string;
  version: string;
  flags: string[];
  openmp: boolean;
  /** Where compiled libraries are cached. */
  cacheDir: string;
}

export const NO_COMPILER_HELP =
  "no working C compiler was found (tried $CC, cc, gcc, clang). Install one for the native " +
  "backend (Debian/Ubuntu: `sudo apt-get install gcc`; macOS: `xcode-select --install`)";

/**
 * The flags every step is compiled with, before the probed -march=native / -fopenmp (tests that
 * build C fragments on their own start from these too).
 */
export const BASE_FLAGS: readonly string[] = [
  "-O3",
  "-fPIC",
  "-shared",
  "-fwrapv",
  "-fno-math-errno",
  // Floating-point exceptions are never read; without this GCC keeps a loop's float compares
  // and selects as branches, and loops over them (exp, erf, clamps) do not vectorize.
  "-fno-trapping-math",
  "-std=gnu11",
];

const PROBE = `#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
int mj_probe(float* x, int n) {
  #pragma omp parallel for
  for (int i = 0; i < n; i++) x[i] = expf(x[i]);
  return n;
}
`;

let probed: Promise<Toolchain | { error: string }> | null = null;

interface DenoLike {
  Command: typeof Deno.Command;
  makeTempDir: typeof Deno.makeTempDir;
  writeTextFile: typeof Deno.writeTextFile;
  remove: typeof Deno.remove;
  rename: typeof Deno.rename;
  stat: typeof Deno.stat;
  mkdir: typeof Deno.mkdir;
  readTextFile: typeof Deno.readTextFile;
  pid: number;
  dlopen?: unknown;
}

function deno(): DenoLike | undefined {
  return (globalThis as { Deno?: DenoLike }).Deno;
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const d = deno()!;
  try {
    const r = await new d.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: (e as Error).message };
  }
}

function cacheDir(): string {
  const explicit = envVar("MOEJIT_CACHE_DIR");
  if (explicit) return `${explicit}/native`;
  const xdg = envVar("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/moejit/native`;
  const home = envVar("HOME");
  return home ? `${home}/.cache/moejit/native` : "/tmp/moejit-native";
}

/** A fingerprint of the CPU, so a cache shared by several machines never mixes -march=native code. */
async function cpuFingerprint(): Promise<string> {
  try {
    const info = await deno()!.readTextFile("/proc/cpuinfo");
    const model = info.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "";
    const flags = info.match(/^(flags|Features)\s*:\s*(.*)$/m)?.[2] ?? "";
    return contentHash(`${model}|${flags}`);
  } catch {
    return "unknown";
  }
}

async function probe(): Promise<Toolchain | { error: string }> {
  const d = deno();
  if (!d?.Command || !d.dlopen) return { error: "this runtime has no subprocesses or FFI" };
  const candidates = [envVar("CC"), "cc", "gcc", "clang"].filter((c): c is string => !!c);
  let dir: string;
  try {
    dir = await d.makeTempDir({ prefix: "moejit-probe-" });
  } catch (e) {
    return { error: `cannot create a temporary directory: ${(e as Error).message}` };
  }
  try {
    await d.writeTextFile(`${dir}/probe.c`, PROBE);
    for (const cc of candidates) {
      const v = await run(cc, ["--version"]);
      if (!v.ok) continue;
      const version = v.out.split("\n")[0].trim();
      // The fastest flags that work: OpenMP and the host's instruction set when available.
      const variants = [
        { extra: ["-march=native", "-fopenmp"], openmp: true },
        { extra: ["-fopenmp"], openmp: true },
        { extra: ["-march=native"], openmp: false },
        { extra: [], openmp: false },
      ];
      for (const { extra, openmp } of variants) {
        const flags = [...BASE_FLAGS, ...extra];
        const r = await run(cc, [...flags, "-o", `${dir}/probe.so`, `${dir}/probe.c`, "-lm"]);
        if (r.ok) return { cc, version, flags, openmp, cacheDir: cacheDir() };
      }
    }
    return { error: NO_COMPILER_HELP };
  } finally {
    await d.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The toolchain, or why there is none (probed once per process). */
export function toolchain(): Promise<Toolchain | { error: string }> {
  probed ??= probe();
  return probed;
}

/** Raised when the compiler rejects a generated step: the message keeps its diagnostics. */
export class NativeCompileError extends Error {
  override name = "NativeCompileError";
}

/**
 * Compiles `source` to a shared library (or finds it in the cache) and returns its path.
 *
 * @example
 * ```ts
 * const path = await compileShared(stepSource(program));
 * ```
 */
export async function compileShared(source: string): Promise<string> {
  const tc = await toolchain();
  if ("error" in tc) throw new NativeCompileError(tc.error);
  const d = deno()!;
  const key = contentHash(
    `${tc.version}|${tc.flags.join(" ")}|${await cpuFingerprint()}|${source}`,
  );
  const path = `${tc.cacheDir}/${key}.so`;
  try {
    await d.stat(path);
    return path;
  } catch {
    // not cached yet
  }
  await d.mkdir(tc.cacheDir, { recursive: true });
  const tmp = `${tc.cacheDir}/${key}.${d.pid}.${Math.random().toString(36).slice(2)}`;
  await d.writeTextFile(`${tmp}.c`, source);
  // -z nodelete: a library that started OpenMP threads must never be unmapped under them.
  const r = await run(tc.cc, [
    ...tc.flags,
    "-o",
    `${tmp}.so`,
    `${tmp}.c`,
    "-lm",
    "-ldl",
    "-Wl,-z,nodelete",
  ]);
  if (!r.ok) {
    const kept = `${tc.cacheDir}/${key}.failed.c`;
    await d.rename(`${tmp}.c`, kept).catch(() => {});
    throw new NativeCompileError(
      `the C compiler (${tc.cc}) rejected a generated step; its source is ${kept}:\n${
        r.out.split("\n").slice(0, 40).join("\n")
      }`,
    );
  }
  await d.rename(`${tmp}.so`, path);
  if (envVar("MOEJIT_DEBUG")) await d.rename(`${tmp}.c`, `${tc.cacheDir}/${key}.c`);
  else await d.remove(`${tmp}.c`).catch(() => {});
  return path;
}
