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

/** The "scheme:path:line:col" a frame points at, when it points into a source file. */
function frameLocation(line: string): string | undefined {
  const m = line.match(/\(?([a-z][a-z0-9+.-]*:[^\s()]+:\d+:\d+)\)?$/i);
  if (!m) return undefined;
  // Runtime internals are not the user's code either.
  if (m[1].startsWith("ext:") || m[1].startsWith("node:")) return undefined;
  return m[1];
}

/**
 * A frame the user wrote: one with a source location outside the library. Builtins such as
 * `Array.map (<anonymous>)` sit between the library and the user whenever an op validates its
 * inputs inside a callback, so they must not count as the call site.
 */
function isUserFrame(line: string): boolean {
  return !isLibraryFrame(line) && frameLocation(line) !== undefined;
}

// V8 keeps 10 frames by default; a check a few helpers deep inside an op (or inside the backward
// sweep of mj.grad) would otherwise lose the user's frame.
const DEEP_STACK = 100;

/** The current stack's frames ("at ..." lines), captured without the default depth limit. */
function captureFrames(): string[] {
  const E = Error as { stackTraceLimit?: number };
  const prev = E.stackTraceLimit;
  const raise = typeof prev === "number" && prev < DEEP_STACK;
  if (raise) E.stackTraceLimit = DEEP_STACK;
  try {
    const stack = new Error().stack ?? "";
    return stack.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("at "));
  } finally {
    if (raise) E.stackTraceLimit = prev;
  }
}

/**
 * The library function the user called (the frame just above the user's own), e.g. "ones" or
 * "matmul" for a check deep inside the IR; undefined when the stack does not tell.
 */
export function calledOp(): string | undefined {
  const frames = captureFrames();
  const first = frames.findIndex(isUserFrame);
  if (first < 1) return undefined;
  const m = frames[first - 1].match(/^at (?:async )?(?:new )?([\w$.]+) \(/);
  if (!m) return undefined;
  const name = m[1].replace(/^(Tensor|Object|Module)\./, "");
  return /^[A-Za-z_$][\w$]*$/.test(name) ? name : undefined;
}

/** The first stack frame outside the library, as "file:line:col", or undefined. */
export function userCallSite(): string | undefined {
  const user = captureFrames().find(isUserFrame);
  return user === undefined ? undefined : frameLocation(user);
}

/**
 * The error every moejit op throws. `op` is the user-facing name (`add`, `moe.route`); the
 * stack is trimmed so that its first frame is the user's call (set MOEJIT_DEBUG to keep it).
 */
export class MoejitError extends Error {
  readonly op: string;
  /**
   * `site` names the user's call when the error is raised later than the call (an index check
   * that a kernel reports at the next readback); by default it is the current stack's.
   */
  constructor(op: string, message: string, site?: string) {
    const frames = captureFrames();
    const first = frames.findIndex(isUserFrame);
    site ??= first >= 0 ? frameLocation(frames[first]) : undefined;
    const head = `${op}: ${message}`;
    super(`${head}${site ? `\n    at your call: ${site}` : ""}`);
    this.name = "MoejitError";
    this.op = op;
    if (!envVar("MOEJIT_DEBUG") && first >= 0) {
      // Everything above the user's frame is library or builtin; below it, library frames are
      // noise too (user callbacks invoked by mj.grad stay).
      const kept = frames.slice(first).filter((l) => !isLibraryFrame(l));
      // The stack leaves the call-site line out: runtimes print the message (which has it)
      // above the frames, and a frame-shaped line in the stack would be printed twice.
      this.stack = [`${this.name}: ${head}`, ...kept.map((l) => `    ${l}`)].join("\n");
    }
  }
}

/** Throws a MoejitError; typed `never` so callers can use it in expressions. */
export function fail(op: string, message: string, site?: string): never {
  throw new MoejitError(op, message, site);
}

/**
 * A value as an error message shows it: JSON for the plain parts, but NaN, ±Infinity, -0,
 * undefined, bigints and functions as themselves (JSON.stringify would print NaN as `null`) and
 * class instances by class name. Long arrays and deep trees are cut with "…".
 *
 * @example
 * ```ts
 * formatValue({ lr: NaN, steps: [1, Infinity] }); // '{"lr":NaN,"steps":[1,Infinity]}'
 * ```
 */
export function formatValue(v: unknown, depth = 0): string {
  switch (typeof v) {
    case "number":
      return Object.is(v, -0) ? "-0" : String(v);
    case "string":
      return JSON.stringify(v);
    case "undefined":
      return "undefined";
    case "boolean":
      return String(v);
    case "bigint":
      return `${v}n`;
    case "function":
      return v.name ? `function ${v.name}` : "a function";
    case "symbol":
      return String(v);
  }
  if (v === null) return "null";
  if (depth >= 4) return "…";
  if (Array.isArray(v)) {
    const shown = v.slice(0, 16).map((x) => formatValue(x, depth + 1));
    if (v.length > 16) shown.push(`… (${v.length} items)`);
    return `[${shown.join(",")}]`;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) {
    return `a ${(v as object).constructor?.name ?? "object"}`;
  }
  const entries = Object.entries(v as Record<string, unknown>);
  const shown = entries.slice(0, 16).map(([k, x]) =>
    `${JSON.stringify(k)}:${formatValue(x, depth + 1)}`
  );
  if (entries.length > 16) shown.push("…");
  return `{${shown.join(",")}}`;
}
