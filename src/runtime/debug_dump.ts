/**
 * MOEJIT_DEBUG=1: prints each compiled step's schedule and writes its WGSL to a folder
 * (MOEJIT_DEBUG_DIR, default ./moejit-debug), one file per kernel, so users can read what runs.
 */
import { envVar } from "../env.ts";
import type { StepProgram } from "../passes/step_program.ts";

export function debugDump(prog: StepProgram, stepNumber: number): void {
  console.error(`moejit: compiled step ${stepNumber}: ${prog.describe()}`);
  const dir = `${envVar("MOEJIT_DEBUG_DIR") ?? "moejit-debug"}/step-${
    String(stepNumber).padStart(4, "0")
  }`;
  // Looked up, not named: the browser bundle has this module too (where MOEJIT_DEBUG is never set).
  const fs = (globalThis as { Deno?: typeof Deno }).Deno;
  if (!fs) return;
  try {
    fs.mkdirSync(dir, { recursive: true });
    prog.launches.forEach((l, i) => {
      const name = `${dir}/k${String(i).padStart(3, "0")}.wgsl`;
      fs.writeTextFileSync(
        name,
        `// ${l.program.label}\n// grid ${l.program.grid.join("x")}\n${l.program.code}`,
      );
    });
    fs.writeTextFileSync(`${dir}/schedule.txt`, prog.describe() + "\n");
    console.error(`moejit: wrote ${prog.launches.length} kernels to ${dir}/`);
  } catch (e) {
    console.error(`moejit: could not write kernels to ${dir}: ${(e as Error).message}`);
  }
}
