/**
 * Training metrics as JSONL: one JSON object per line, appended as the run goes (design §7:
 * `step`, `loss`, `lr`, `grad_norm`, `tokens_per_s`, per-layer `tokens_per_expert`, `max_vio`,
 * `load_balancing_loss`, `z_loss`, …; the keys are the caller's).
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { appendLine, writeFileAtomic } from "./files.ts";

/** A metric value: a number (NaN/±Infinity are written as null), string, boolean, null, or arrays/objects of them. */
export type MetricValue =
  | number
  | string
  | boolean
  | null
  | ArrayLike<number>
  | readonly MetricValue[]
  | { readonly [key: string]: MetricValue | undefined };

/** One logged record. */
export type MetricsRecord = { readonly [key: string]: MetricValue | undefined };

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== "object") return false;
  const p = Object.getPrototypeOf(x);
  return p === Object.prototype || p === null;
}

/** A JSON-safe copy: non-finite numbers → null, typed arrays → arrays, undefined fields dropped. */
function clean(v: unknown, path: string): unknown {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return Array.from(
      v as unknown as ArrayLike<number | bigint>,
      (x, i) => clean(typeof x === "bigint" ? Number(x) : x, `${path}[${i}]`),
    );
  }
  if (Array.isArray(v)) return v.map((x, i) => clean(x ?? null, `${path}[${i}]`));
  if (isPlainObject(v)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = clean(x, `${path}.${k}`);
    return o;
  }
  if (v instanceof Tensor) {
    return fail(
      "metrics",
      `${path} is a Tensor; log its value instead (await t.item() or await t.data())`,
    );
  }
  return fail(
    "metrics",
    `${path} is ${
      typeof v === "object" ? `a ${v.constructor?.name ?? "object"}` : `a ${typeof v}`
    }; ` +
      "expected numbers, strings, booleans, or arrays/objects of them",
  );
}

/**
 * Encodes one record as a JSON line (without the newline).
 *
 * @example
 * ```ts
 * mj.io.encodeMetrics({ step: 3, loss: NaN }); // '{"step":3,"loss":null}'
 * ```
 */
export function encodeMetrics(record: MetricsRecord): string {
  if (!isPlainObject(record)) {
    fail("metrics", `a record must be a plain object, got ${JSON.stringify(record)}`);
  }
  return JSON.stringify(clean(record, "record"));
}

/**
 * An append-only JSONL metrics log. Each `log` appends one line; with `{ fresh: true }` the file
 * is emptied before the first record (otherwise a resumed run keeps appending).
 *
 * @example
 * ```ts
 * const log = new mj.io.MetricsLog("runs/a/metrics.jsonl");
 * await log.log({ step: 1, loss: 3.2, lr: 1e-3, tokens_per_expert: [[10, 6], [8, 8]] });
 * ```
 */
export class MetricsLog {
  /** The JSONL file. */
  readonly path: string;
  #fresh: boolean;
  #queue: Promise<void> = Promise.resolve();

  /** A log appending to `path` (created with its directories on the first record). */
  constructor(path: string, opts: { fresh?: boolean } = {}) {
    this.path = path;
    this.#fresh = opts.fresh ?? false;
  }

  /** Appends one record (the lines of concurrent calls keep their call order). */
  log(record: MetricsRecord): Promise<void> {
    const line = encodeMetrics(record); // errors surface at the call
    const next = this.#queue.then(async () => {
      if (this.#fresh) {
        this.#fresh = false;
        await writeFileAtomic(this.path, "");
      }
      await appendLine(this.path, line);
    });
    this.#queue = next.catch(() => {});
    return next;
  }
}

/**
 * Reads a JSONL metrics file back. Blank lines are skipped; an unparsable final line without a
 * newline (a write cut short by a crash) is ignored; any other bad line is an error naming the
 * file and line.
 *
 * @example
 * ```ts
 * const rows = await mj.io.readMetrics("runs/a/metrics.jsonl");
 * const losses = rows.map((r) => r.loss as number);
 * ```
 */
export async function readMetrics(path: string): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fail("readMetrics", `${path}: no such file`);
    throw e;
  }
  const lines = text.split("\n");
  const out: Record<string, unknown>[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      if (i === lines.length - 1) return; // truncated last line
      fail("readMetrics", `${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(v)) fail("readMetrics", `${path}:${i + 1}: expected a JSON object per line`);
    out.push(v);
  });
  return out;
}
