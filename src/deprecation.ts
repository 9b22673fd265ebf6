/**
 * Deprecated names: an old option or field name keeps working for one release, with a warning on
 * stderr the first time each one is used in a process (not on every call: a jitted step would
 * repeat it on every trace).
 */

import { fail } from "./errors.ts";

const warned = new Set<string>();

/**
 * Warns once per process that `old` (as used in `op`) is deprecated in favour of `replacement`.
 *
 * @example
 * ```ts
 * if (opts.k !== undefined) deprecated("moe.route", "option k", "topK");
 * ```
 */
export function deprecated(op: string, old: string, replacement: string): void {
  const key = `${op}\u0000${old}`;
  if (warned.has(key)) return;
  warned.add(key);
  console.warn(
    `moejit: ${op}: ${old} is deprecated and will be removed in the next release; use ${replacement}`,
  );
}

/**
 * Moves a deprecated option to its new name in a copy of `opts` (warning once): an error when
 * both are given, since they would disagree or repeat each other.
 *
 * @example
 * ```ts
 * const o = renamed("moe.route", opts, "k", "topK"); // { topK: 2 } from { k: 2 }
 * ```
 */
export function renamed<T extends object>(op: string, opts: T, old: string, now: string): T {
  if (!opts || typeof opts !== "object" || !(old in opts)) return opts;
  const o = { ...opts } as Record<string, unknown>;
  if (o[now] !== undefined && o[old] !== undefined) {
    fail(op, `give ${now} only (${old} is its deprecated name)`);
  }
  deprecated(op, `option ${old}`, now);
  if (o[old] !== undefined) o[now] = o[old];
  delete o[old];
  return o as T;
}

/**
 * Adds to `ctx` a read-only `k` equal to its `topK` that warns once when read (the old name of
 * the field in the contexts estimators and balancers receive).
 *
 * @example
 * ```ts
 * const ctx = withDeprecatedK("balance context", { topK: 2 });
 * ctx.k; // 2, with a one-time warning
 * ```
 */
export function withDeprecatedK<T extends { topK: number }>(
  what: string,
  ctx: T,
): T & { readonly k: number } {
  Object.defineProperty(ctx, "k", {
    get() {
      deprecated(what, "field k", "topK");
      return ctx.topK;
    },
    enumerable: false,
  });
  return ctx as T & { readonly k: number };
}
