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
