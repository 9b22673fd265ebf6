/**
 * The machine a report was made on — CPU model, logical cores, memory, OS, Deno — and the
 * repository's commit, so that figures can be read against where they came from.
 */

export interface Machine {
  cpu: string;
  /** Logical cores. */
  cores: number;
  memoryGiB: number;
  os: string;
  deno: string;
  /** The git commit of the working tree ("unknown" outside a repository). */
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

async function git(args: string[]): Promise<string | null> {
  try {
    const r = await new Deno.Command("git", { args, stdout: "piped", stderr: "null" }).output();
    return r.success ? new TextDecoder().decode(r.stdout).trim() : null;
  } catch {
    return null;
  }
}

/**
 * Describes this machine and the repository's state.
 *
 * @example
 * ```ts
 * const m = await describeMachine(); // { cpu: "AMD EPYC …", cores: 2, commit: "1a2b3c…", … }
 * ```
 */
export async function describeMachine(): Promise<Machine> {
  const commit = await git(["rev-parse", "HEAD"]);
  const status = commit ? await git(["status", "--porcelain", "--untracked-files=no"]) : null;
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
    commit: commit ?? "unknown",
    dirty: !!status,
  };
}
