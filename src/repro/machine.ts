/**
 * The machine a report was made on — CPU model, logical cores, memory, OS, Deno — and the
 * commit of moejit's checkout, so that figures can be read against where they came from.
 */

export interface Machine {
  cpu: string;
  /** Logical cores. */
  cores: number;
  memoryGiB: number;
  os: string;
  deno: string;
  /** The git commit of moejit's checkout ("unknown" outside a git checkout). */
  commit: string;
  /** True when tracked files differ from that commit. */
  dirty: boolean;
}

async function cpuModel(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    const m = info.match(/^model name\s*:\s*(.+)$/m) ?? info.match(/^Hardware\s*:\s*(.+)$/m);
    if (m) return m[1].trim();
  } catch { /* not Linux */ }
  return `unknown ${Deno.build.arch} CPU`;
}

/** The directory of moejit's own checkout (the code that runs), or null when not from files. */
function sourceDir(): string | null {
  const url = new URL("../..", import.meta.url);
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : null;
}

async function git(args: string[]): Promise<string | null> {
  const cwd = sourceDir();
  if (cwd === null) return null;
  try {
    const r = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "null" })
      .output();
    return r.success ? new TextDecoder().decode(r.stdout).trim() : null;
  } catch {
    return null;
  }
}

/**
 * The git commit of the moejit checkout this code runs from, with "+changes" appended when
 * tracked files other than documentation and reports (docs/, reports/, Markdown) differ from it; null outside a git checkout (e.g. imported from a URL).
 *
 * @example
 * ```ts
 * const c = await sourceCommit(); // "1a2b3c4d…" or "1a2b3c4d…+changes"
 * ```
 */
export async function sourceCommit(): Promise<string | null> {
  const commit = await git(["rev-parse", "HEAD"]);
  if (!commit) return null;
  // Changes to documentation and reports (a report being rewritten) do not change the code.
  const status = await git([
    "status",
    "--porcelain",
    "--untracked-files=no",
    "--",
    ".",
    ":(exclude)docs",
    ":(exclude)reports",
    ":(exclude)*.md",
  ]);
  return status ? `${commit}+changes` : commit;
}

/**
 * Describes this machine and the state of the moejit checkout it runs from.
 *
 * @example
 * ```ts
 * const m = await describeMachine(); // { cpu: "AMD EPYC …", cores: 2, commit: "1a2b3c…", … }
 * ```
 */
export async function describeMachine(): Promise<Machine> {
  const commit = await sourceCommit();
  let memoryGiB = NaN;
  try {
    memoryGiB = Deno.systemMemoryInfo().total / 2 ** 30;
  } catch { /* not available */ }
  return {
    cpu: await cpuModel(),
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(memoryGiB * 10) / 10,
    os: `${Deno.build.os} ${Deno.osRelease()} (${Deno.build.arch})`,
    deno: Deno.version.deno,
    commit: commit?.replace("+changes", "") ?? "unknown",
    dirty: !!commit?.endsWith("+changes"),
  };
}
