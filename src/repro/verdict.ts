/**
 * Whether a paper's claim held at this scale: from the per-seed values of a signed quantity
 * (e.g. the paired difference of perplexities, b − a) and the sign the claim predicts, say
 * plainly whether the direction held (the whole interval on the claimed side), did not (the
 * whole interval on the other side), or is inside the noise (the interval includes 0).
 */
import { fail } from "../errors.ts";
import { type Estimate, estimate } from "./stats.ts";

/** The sign a claim predicts for its measured quantity. */
export type Direction = "negative" | "positive";

export type VerdictKind = "held" | "did not hold" | "inside the noise" | "one seed" | "no data";

export interface Verdict {
  kind: VerdictKind;
  /** One plain sentence. */
  text: string;
  /** The interval over the seeds that have a value (absent when none has). */
  estimate?: Estimate;
  /** Seeds whose value is missing: the event did not happen within the run (e.g. never reached). */
  missing: number;
}

/**
 * Judges one claim. A `null` value means the measured event did not happen on that seed within
 * the run (e.g. the other arm's final perplexity was never reached) — a seed against the claim.
 *
 * @example
 * ```ts
 * judge([-0.12, -0.08, -0.1], "negative").kind; // "held"
 * judge([-0.12, 0.05, -0.1], "negative").kind;  // "inside the noise"
 * ```
 */
export function judge(
  values: readonly (number | null)[],
  expect: Direction,
  level = 0.95,
): Verdict {
  if (expect !== "negative" && expect !== "positive") {
    fail("judge", `expect must be "negative" or "positive", got ${JSON.stringify(expect)}`);
  }
  const present = values.filter((v): v is number => v !== null);
  const missing = values.length - present.length;
  const pct = `${Math.round(level * 100)} %`;
  if (!present.length) {
    return missing
      ? {
        kind: "did not hold",
        text: `did not hold: the event never happened on any of ${missing} seeds`,
        missing,
      }
      : { kind: "no data", text: "no finished runs to judge", missing };
  }
  const e = estimate(present, level);
  const side = (v: number) => (expect === "negative" ? v < 0 : v > 0);
  const note = missing ? `; on ${missing} of ${values.length} seeds it never happened` : "";
  if (e.n === 1 && !missing) {
    return {
      kind: "one seed",
      text: `one seed, no interval: the direction ${side(e.mean) ? "held" : "did not hold"}`,
      estimate: e,
      missing,
    };
  }
  if (e.n === 1) {
    return {
      kind: side(e.mean) ? "inside the noise" : "did not hold",
      text: side(e.mean)
        ? `inside the noise: the direction held on the one seed that has a value${note}`
        : `did not hold: against the claim on every seed${note}`,
      estimate: e,
      missing,
    };
  }
  if (side(e.lo) && side(e.hi)) {
    return missing
      ? {
        kind: "inside the noise",
        text: `inside the noise: the ${pct} interval is on the claimed side${note}`,
        estimate: e,
        missing,
      }
      : {
        kind: "held",
        text: `held: the ${pct} interval is entirely on the claimed side`,
        estimate: e,
        missing,
      };
  }
  if (!side(e.lo) && !side(e.hi) && e.lo !== 0 && e.hi !== 0) {
    return {
      kind: "did not hold",
      text: `did not hold: the ${pct} interval is entirely on the other side${note}`,
      estimate: e,
      missing,
    };
  }
  return {
    kind: "inside the noise",
    text: `inside the noise: the ${pct} interval includes 0 (the mean is on the ${
      side(e.mean) ? "claimed" : "other"
    } side)${note}`,
    estimate: e,
    missing,
  };
}
