/**
 * Running a suite's runs in child processes: each run gets its own process (a crash, a leak or
 * a device loss ends that run only), its output goes to the run's log.txt, and a stop request
 * is forwarded as SIGINT (the child checkpoints and exits with 130); a hard stop kills it.
 */
import { RunInterrupted } from "./interrupted.ts";
import { runDir } from "./layout.ts";
import type { Executor } from "./runner.ts";
import type { RunSpec } from "./suite.ts";

/** The exit status a child uses for "stopped on request, checkpoint written". */
export const EXIT_INTERRUPTED = 130;

/**
 * Runs `argv` with stdout and stderr appended to `logPath`; SIGINT on `signal`, SIGKILL on
 * `hardSignal`. Resolves with the exit code.
 *
 * @example
 * ```ts
 * const code = await spawnLogged([Deno.execPath(), "--version"], "out/log.txt");
 * ```
 */
export async function spawnLogged(
  argv: readonly string[],
  logPath: string,
  o: { signal?: AbortSignal; hardSignal?: AbortSignal } = {},
): Promise<number> {
  await Deno.mkdir(logPath.slice(0, logPath.lastIndexOf("/")) || ".", { recursive: true });
  const log = await Deno.open(logPath, { append: true, create: true, write: true });
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Copied chunk by chunk (a file's WritableStream may hold the text until it is closed), so the
  // log shows a run's progress while it runs.
  const copy = async (from: ReadableStream<Uint8Array>) => {
    for await (const chunk of from) {
      let off = 0;
      while (off < chunk.length) off += await log.write(chunk.subarray(off));
    }
  };
  const pipes = Promise.all([copy(child.stdout), copy(child.stderr)]);
  const kill = (sig: Deno.Signal) => () => {
    try {
      child.kill(sig);
    } catch { /* already exited */ }
  };
  const onStop = kill("SIGINT"), onHard = kill("SIGKILL");
  if (o.signal?.aborted) onStop();
  o.signal?.addEventListener("abort", onStop);
  o.hardSignal?.addEventListener("abort", onHard);
  try {
    const status = await child.status;
    await pipes.catch(() => {});
    return status.signal === "SIGINT" ? EXIT_INTERRUPTED : status.code;
  } finally {
    log.close();
    o.signal?.removeEventListener("abort", onStop);
    o.hardSignal?.removeEventListener("abort", onHard);
  }
}

/** The last `n` lines of a text file ("" when it cannot be read). */
async function tail(path: string, n: number): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

/**
 * An executor that runs each spec as `command(spec, suiteDir)` in a child process, which must
 * run it to the end and write its result.json (e.g. `runOne`), or exit with EXIT_INTERRUPTED
 * after a SIGINT.
 *
 * @example
 * ```ts
 * const exec = subprocessExecutor((spec, dir) =>
 *   [Deno.execPath(), "run", "-A", "examples/reproduce.ts", "--run-one", dir, spec.id]);
 * ```
 */
export function subprocessExecutor(
  command: (spec: RunSpec, suiteDir: string) => string[],
): Executor {
  return {
    async run(spec, ctx) {
      const log = `${runDir(ctx.suiteDir, spec.id)}/log.txt`;
      const code = await spawnLogged(command(spec, ctx.suiteDir), log, ctx);
      if (code === 0) return;
      if (code === EXIT_INTERRUPTED) throw new RunInterrupted(spec.id);
      throw new Error(`exit code ${code}; the end of ${log}:\n${await tail(log, 15)}`);
    },
  };
}
