/**
 * Errors that name the op, what was given and what was expected, and point at the user's call
 * site rather than at library internals.
 */

import { envVar } from "./env.ts";

const LIB_ROOT = new URL("../", import.meta.url).href;

function isLibraryFrame(line: string): boolean {
  if (!line.includes(LIB_ROOT)) return false;
  const rest = line.slice(line.indexOf(LIB_ROOT) + LIB_ROOT.length);
  // Frames in src/ and codegen/ are internals; tests, examples and user code are not.
  return rest.startsWith("src/") || rest.startsWith("codegen/") || rest.startsWith("mod.ts");
}

/** The first stack frame outside the library, as "file:line:col", or undefined. */
export function userCallSite(): string | undefined {
  const stack = new Error().stack ?? "";
  for (const line of stack.split("\n").slice(1)) {
    const t = line.trim();
    if (!t.startsWith("at ")) continue;
    if (isLibraryFrame(t)) continue;
    if (t.includes("ext:") || t.includes("node:")) continue;
    const m = t.match(/\(?([a-z]+:\/\/[^\s()]+:\d+:\d+)\)?$/);
    return m ? m[1] : t.slice(3);
  }
  return undefined;
}

/**
 * The error every moejit op throws. `op` is the user-facing name (`add`, `moe.route`); the
 * stack is trimmed so that its first frame is the user's call.
 */
export class MoejitError extends Error {
  readonly op: string;
  constructor(op: string, message: string) {
    const site = userCallSite();
    super(`${op}: ${message}${site ? `\n    at your call: ${site}` : ""}`);
    this.name = "MoejitError";
    this.op = op;
    if (this.stack && !envVar("MOEJIT_DEBUG")) {
      const lines = this.stack.split("\n");
      const head: string[] = [];
      const frames: string[] = [];
      for (const l of lines) (l.trim().startsWith("at ") ? frames : head).push(l);
      const user = frames.filter((l) => !isLibraryFrame(l.trim()));
      this.stack = [...head, ...(user.length ? user : frames)].join("\n");
    }
  }
}

/** Throws a MoejitError; typed `never` so callers can use it in expressions. */
export function fail(op: string, message: string): never {
  throw new MoejitError(op, message);
}
