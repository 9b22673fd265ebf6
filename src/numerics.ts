/**
 * The numerics check (`mj.debug.checkNumerics`, or `MOEJIT_CHECK_NUMERICS=1`): every value a
 * computation realizes is tested for NaN and ±Inf by its bits (WGSL lets compilers assume
 * floats are finite, so `x != x` may be folded away; a bit test cannot be), and the first op
 * that *produced* one — a NaN from inputs without NaN, or an infinity from finite inputs — is
 * raised by name, with the call site that built it; so is NaN in a value given to the
 * computation. Masks and constants that are infinite on purpose only propagate, and are not
 * reported. Checked steps run one op per kernel, so they are
 * slow: a debugging tool.
 */
import { envVar } from "./env.ts";
import { MoejitError, userCallSite } from "./errors.ts";
import type { Node } from "./ir/node.ts";
import type { OpArgs } from "./ir/ops.ts";
import { fmtShape } from "./shape.ts";

let enabled = envVar("MOEJIT_CHECK_NUMERICS") === "1";

/**
 * Turns the numerics check on or off for computations compiled from now on; returns the
 * previous setting. While it is on, nodes also remember where they were built.
 *
 * @example
 * ```ts
 * mj.debug.checkNumerics(true);
 * await mj.tensor([-1, 2]).log().mul(2).data(); // throws: log produced NaN … at your call: …
 * ```
 */
export function checkNumerics(on: boolean): boolean {
  const was = enabled;
  enabled = !!on;
  return was;
}

/** Whether the numerics check is on. */
export function numericsChecked(): boolean {
  return enabled;
}

const sites = new WeakMap<Node, string>();

/** Records where a new node was built (only while the check is on: a stack trace per node). */
export function recordSite(n: Node): void {
  if (!enabled) return;
  const site = userCallSite();
  if (site) sites.set(n, site);
}

/**
 * Gives `to` (a node rebuilt by a graph rewrite) the call site of `from`, so that a compiled
 * graph still names where the user built each op.
 */
export function copySite(from: Node, to: Node): void {
  const site = sites.get(from);
  if (site && from !== to) sites.set(to, site);
}

/** Bit flags of a value's non-finite elements. */
export const HAS_NAN = 1;
export const HAS_INF = 2;

/** The flags of a constant leaf (its value is known without running anything). */
function constFlags(n: Node): number {
  if (n.op !== "const" || n.dtype !== "f32") return 0;
  const v = (n.arg as OpArgs["const"]).value;
  return Number.isNaN(v) ? HAS_NAN : Number.isFinite(v) ? 0 : HAS_INF;
}

/** The flags and the first non-finite element of a host array. */
export function scanHost(values: ArrayLike<number>): { flags: number; first: number } {
  let flags = 0, first = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) continue;
    flags |= Number.isNaN(v) ? HAS_NAN : HAS_INF;
    if (first < 0) first = i;
  }
  return { flags, first };
}

/**
 * Follows values in evaluation order: `seen` records each checked value's flags, and the first
 * node whose output has a NaN (or an infinity) that none of its inputs had is raised.
 */
export class NumericsTracker {
  #flags = new Map<Node, number>();

  /** Records `n`'s flags; throws if `n` produced a non-finite value. */
  seen(n: Node, flags: number, first: number): void {
    this.#flags.set(n, flags);
    if (!flags) return;
    let inputs = 0;
    for (const s of n.src) inputs |= this.#flags.get(s) ?? constFlags(s);
    const nan = (flags & HAS_NAN) !== 0 && (inputs & HAS_NAN) === 0;
    // A value given to the computation may be infinite on purpose (a mask); NaN never is.
    const inf = (flags & HAS_INF) !== 0 && inputs === 0 && n.src.length > 0;
    if (!nan && !inf) return;
    const what = nan ? "NaN" : "an infinity";
    const where = `first non-finite element ${unravelText(first, n.shape)} of ${n.dtype}${
      fmtShape(n.shape)
    } (mj.debug.checkNumerics)`;
    const message = n.src.length === 0
      ? `a value given to the computation holds ${what}: ${where}`
      : `produced ${what} from ${nan ? "inputs without NaN" : "finite inputs"}: ${where}`;
    throw new MoejitError(n.src.length === 0 ? "input" : n.op, message, sites.get(n));
  }
}

function unravelText(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `[${idx.join(",")}]`;
}
