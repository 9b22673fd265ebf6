/**
 * MOEJIT_DEBUG=1: prints each compiled step's schedule and writes its kernels to a folder
 * (MOEJIT_DEBUG_DIR, default ./moejit-debug), one file per kernel (WGSL, or C functions for the
 * native backend, which also writes the whole translation unit it compiles as step.c), so users
 * can read what runs.
 */
import { envVar } from "../env.ts";
import type { StepProgram } from "../passes/step_program.ts";

/** What a backend adds to the dump: its kernels' file extension and its whole source, if any. */
export interface DumpTarget {
  /** File extension of one kernel ("wgsl", "c"). */
  ext: string;
  /** The complete source the backend compiles (the native backend's step file). */
  source?: string;
}

export function debugDump(
  prog: StepProgram,
  stepNumber: number,
  target: DumpTarget = { ext: "wgsl" },
): void {
  console.error(`moejit: compiled step ${stepNumber}: ${prog.describe()}`);
  const dir = `${envVar("MOEJIT_DEBUG_DIR") ?? "moejit-debug"}/step-${
    String(stepNumber).padStart(4, "0")
  }`;
  // Looked up, not named: the browser bundle has this module too (where MOEJIT_DEBUG is never set).
  const fs = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!fs) return;
  const comment = target.ext === "c" ? (s: string) => `/* ${s} */` : (s: string) => `// ${s}`;
  try {
    fs.mkdirSync(dir, { recursive: true });
    prog.launches.forEach((l, i) => {
      const name = `${dir}/k${String(i).padStart(3, "0")}.${target.ext}`;
      fs.writeTextFileSync(
        name,
        `${comment(l.program.label)}\n${
          comment(`grid ${l.program.grid.join("x")}`)
        }\n${l.program.code}`,
      );
    });
    if (target.source !== undefined) {
      fs.writeTextFileSync(`${dir}/step.${target.ext}`, target.source);
    }
    fs.writeTextFileSync(`${dir}/schedule.txt`, prog.describe() + "\n");
    console.error(`moejit: wrote ${prog.launches.length} kernels to ${dir}/`);
  } catch (e) {
    console.error(`moejit: could not write kernels to ${dir}: ${(e as Error).message}`);
  }
}
