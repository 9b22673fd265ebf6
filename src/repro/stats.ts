/**
 * Statistics over seeds: mean, sample standard deviation and the Student-t confidence interval
 * of a mean — applied to one arm's metric, or to the per-seed differences of two arms run with
 * the same seeds (a paired comparison).
 */
import { fail } from "../errors.ts";
import { studentTQuantile } from "./student_t.ts";

/** A mean over seeds with its spread and t-interval. */
export interface Estimate {
  /** Number of values. */
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1 in the denominator); NaN for one value. */
  sd: number;
  /** The two-sided confidence interval of the mean at `level`; NaN bounds for one value. */
  lo: number;
  hi: number;
  level: number;
  /** The values, in seed order. */
  values: number[];
}

/**
 * Mean, standard deviation and the t-interval mean ± t_{(1+level)/2, n−1}·sd/√n.
 *
 * @example
 * ```ts
 * const e = estimate([5.1, 5.3, 5.2]); // { mean: 5.2, sd: 0.1, lo: 4.95, hi: 5.45, … }
 * ```
 */
export function estimate(values: readonly number[], level = 0.95): Estimate {
  if (!values.length) fail("estimate", "expected at least one value, got none");
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) fail("estimate", `value ${bad} is ${values[bad]}; expected finite numbers`);
  if (!(level > 0 && level < 1)) fail("estimate", `level must be in (0, 1), got ${level}`);
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : NaN;
  const half = n > 1 ? studentTQuantile((1 + level) / 2, n - 1) * sd / Math.sqrt(n) : NaN;
  return { n, mean, sd, lo: mean - half, hi: mean + half, level, values: [...values] };
}

/**
 * The paired differences b − a of two arms' values seed by seed, and their t-interval.
 *
 * @example
 * ```ts
 * const d = pairedDifference([5.2, 5.4, 5.1], [5.0, 5.3, 5.0]); // mean −0.133, its 95 % interval
 * ```
 */
export function pairedDifference(
  a: readonly number[],
  b: readonly number[],
  level = 0.95,
): Estimate {
  if (a.length !== b.length) {
    fail(
      "pairedDifference",
      `expected as many values in each arm, got ${a.length} and ${b.length}`,
    );
  }
  return estimate(b.map((v, i) => v - a[i]), level);
}
