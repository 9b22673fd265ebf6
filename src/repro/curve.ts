/**
 * Reading training curves: where a validation curve first reaches a value (tokens to reach the
 * other arm's final perplexity), the first step a per-step series drops to a threshold, and the
 * mean and spread of several seeds' curves.
 */

/** A point of a curve: x (tokens or step) and its value. */
export interface Point {
  x: number;
  y: number;
}

/**
 * The x at which a decreasing curve first reaches `target` (y ≤ target), interpolating linearly
 * between the evaluation before and the one at the crossing; null when it never does. A curve
 * already at or below the target at its first point returns that point's x (an upper bound).
 *
 * @example
 * ```ts
 * firstReach([{ x: 100, y: 6 }, { x: 200, y: 4 }], 5); // 150
 * ```
 */
export function firstReach(curve: readonly Point[], target: number): number | null {
  for (let i = 0; i < curve.length; i++) {
    if (curve[i].y <= target) {
      if (i === 0) return curve[0].x;
      const a = curve[i - 1], b = curve[i];
      return a.x + ((a.y - target) / (a.y - b.y)) * (b.x - a.x);
    }
  }
  return null;
}

/**
 * The first x whose y is at most `threshold`; null when none is.
 *
 * @example
 * ```ts
 * firstAtMost([{ x: 1, y: 0.9 }, { x: 2, y: 0.08 }], 0.1); // 2
 * ```
 */
export function firstAtMost(series: readonly Point[], threshold: number): number | null {
  const p = series.find((p) => p.y <= threshold);
  return p ? p.x : null;
}

/** A curve's mean over seeds with the smallest and largest seed at each x. */
export interface Band {
  x: number[];
  mean: number[];
  lo: number[];
  hi: number[];
}

/**
 * The mean, minimum and maximum over seeds at each x of the first curve (the seeds of one arm
 * share their evaluation points; an x missing from a seed's curve is left out of that seed).
 *
 * @example
 * ```ts
 * band([[{ x: 1, y: 5 }], [{ x: 1, y: 7 }]]); // { x: [1], mean: [6], lo: [5], hi: [7] }
 * ```
 */
export function band(curves: readonly (readonly Point[])[]): Band {
  const out: Band = { x: [], mean: [], lo: [], hi: [] };
  if (!curves.length) return out;
  const byX = curves.map((c) => new Map(c.map((p) => [p.x, p.y])));
  for (const { x } of curves[0]) {
    const ys = byX.map((m) => m.get(x)).filter((y): y is number =>
      y !== undefined && Number.isFinite(y)
    );
    if (!ys.length) continue;
    out.x.push(x);
    out.mean.push(ys.reduce((a, b) => a + b, 0) / ys.length);
    out.lo.push(Math.min(...ys));
    out.hi.push(Math.max(...ys));
  }
  return out;
}
