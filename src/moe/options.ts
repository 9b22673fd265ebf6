/** Option checking shared by the MoE front end: unknown names and bad values are errors. */
import { fail, formatValue } from "../errors.ts";

export function checkKeys(op: string, opts: object, known: readonly string[]): void {
  if (!opts || typeof opts !== "object") fail(op, `expected an options object, got ${typeof opts}`);
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected one of ${known.join(", ")}`);
    }
  }
}

export function checkChoice<T extends string>(
  op: string,
  name: string,
  v: unknown,
  choices: readonly T[],
  dflt: T,
): T {
  if (v === undefined) return dflt;
  if (!choices.includes(v as T)) {
    fail(
      op,
      `${name} must be one of ${choices.map((c) => formatValue(c)).join(", ")}, got ${
        formatValue(v)
      }`,
    );
  }
  return v as T;
}

/**
 * An options object whose names are all in `known` (undefined counts as `{}`), for constructors
 * such as the balancers'.
 */
export function checkOptions(
  op: string,
  opts: object | undefined,
  known: readonly string[],
): Record<string, unknown> {
  const o = (opts ?? {}) as Record<string, unknown>;
  if (typeof o !== "object") fail(op, `expected an options object, got ${typeof o}`);
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected one of ${known.join(", ")}`);
    }
  }
  return o;
}

/** A non-negative (or, with `allowZero` false, positive) number, or `dflt` when undefined. */
export function nonNegative(
  op: string,
  name: string,
  v: unknown,
  dflt: number,
  allowZero = true,
): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    fail(
      op,
      `${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${
        JSON.stringify(v)
      }`,
    );
  }
  return v;
}
