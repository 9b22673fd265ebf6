/**
 * The reproduction harness's numbers: Student-t quantiles (closed forms for 1 and 2 degrees of
 * freedom, table values otherwise), the regularized incomplete beta function, estimates and
 * paired differences with their t-intervals, verdicts, curve readings and training FLOPs.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose } from "../helpers.ts";
import {
  incompleteBeta,
  logGamma,
  studentTCdf,
  studentTQuantile,
} from "../../src/repro/student_t.ts";
import { estimate, pairedDifference } from "../../src/repro/stats.ts";
import { judge } from "../../src/repro/verdict.ts";
import { band, firstAtMost, firstReach } from "../../src/repro/curve.ts";
import { trainingFlopsPerToken } from "../../src/repro/compute.ts";

Deno.test("student t: quantiles match the closed forms for 1 and 2 degrees of freedom", () => {
  for (const p of [0.51, 0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995, 0.05, 0.025, 0.3]) {
    assertClose([studentTQuantile(p, 1)], [Math.tan(Math.PI * (p - 0.5))], { rtol: 1e-9 });
    assertClose([studentTQuantile(p, 2)], [(2 * p - 1) / Math.sqrt(2 * p * (1 - p))], {
      rtol: 1e-9,
    });
  }
  assert.equal(studentTQuantile(0.5, 7), 0);
});

Deno.test("student t: two-sided 95 % critical values from the tables, and the normal limit", () => {
  const table: [number, number][] = [[3, 3.182446], [4, 2.776445], [5, 2.570582], [9, 2.262157], [
    29,
    2.04523,
  ], [120, 1.97993]];
  for (const [df, t] of table) assertClose([studentTQuantile(0.975, df)], [t], { rtol: 2e-6 });
  assertClose([studentTQuantile(0.975, 1e7)], [1.959964], { rtol: 1e-5 });
  assertClose([studentTQuantile(0.995, 5)], [4.032143], { rtol: 2e-6 });
  // The CDF inverts the quantile, and is symmetric.
  for (const df of [1, 2.5, 4, 30]) {
    for (const p of [0.01, 0.2, 0.7, 0.999]) {
      assertClose([studentTCdf(studentTQuantile(p, df), df)], [p], { rtol: 1e-9 });
    }
    assertClose([studentTCdf(-1.3, df) + studentTCdf(1.3, df)], [1], { rtol: 1e-12 });
  }
  assert.throws(() => studentTQuantile(1, 3), /studentTQuantile: p must be in \(0, 1\), got 1/);
  assert.throws(() => studentTCdf(1, 0), /studentTCdf: degrees of freedom must be a positive/);
});

Deno.test("incomplete beta and log gamma: identities", () => {
  for (const x of [0.05, 0.3, 0.5, 0.8, 0.99]) {
    assertClose([incompleteBeta(x, 1, 1)], [x], { rtol: 1e-12 });
    assertClose([incompleteBeta(x, 3, 1)], [x ** 3], { rtol: 1e-10 });
    assertClose([incompleteBeta(x, 2.5, 0.5) + incompleteBeta(1 - x, 0.5, 2.5)], [1], {
      rtol: 1e-12,
    });
  }
  assert.equal(incompleteBeta(0, 2, 3), 0);
  assert.equal(incompleteBeta(1, 2, 3), 1);
  assertClose([logGamma(5)], [Math.log(24)], { rtol: 1e-13 });
  assertClose([logGamma(0.5)], [0.5 * Math.log(Math.PI)], { rtol: 1e-13 });
  assertClose([logGamma(0.1)], [2.252712651734206], { rtol: 1e-12 });
});

Deno.test("estimate: mean, sample sd and the t-interval; one value has no interval", () => {
  const e = estimate([5.1, 5.3, 5.2]);
  assertClose([e.mean, e.sd], [5.2, 0.1], { rtol: 1e-12 });
  const half = 4.302652729749464 * 0.1 / Math.sqrt(3);
  assertClose([e.lo, e.hi], [5.2 - half, 5.2 + half], { rtol: 1e-9 });
  assert.deepEqual([e.n, e.level, e.values], [3, 0.95, [5.1, 5.3, 5.2]]);
  const e90 = estimate([5.1, 5.3, 5.2], 0.9);
  assert.ok(e90.hi - e90.lo < e.hi - e.lo, "a lower level gives a narrower interval");
  const one = estimate([2]);
  assert.equal(one.mean, 2);
  assert.ok(Number.isNaN(one.sd) && Number.isNaN(one.lo) && Number.isNaN(one.hi));
  assert.throws(() => estimate([]), /estimate: expected at least one value/);
  assert.throws(() => estimate([1, NaN]), /estimate: value 1 is NaN/);
  assert.throws(() => estimate([1, 2], 1), /estimate: level must be in \(0, 1\)/);
});

Deno.test("pairedDifference: b − a seed by seed, then its interval", () => {
  const d = pairedDifference([5.2, 5.4, 5.1], [5.0, 5.3, 5.0]);
  assertClose(d.values, [-0.2, -0.1, -0.1], { rtol: 1e-9 });
  assertClose([d.mean], [-0.4 / 3], { rtol: 1e-9 });
  // Pairing removes the shared seed effect: the unpaired spreads are far wider.
  assert.ok(d.sd < estimate([5.2, 5.4, 5.1]).sd);
  assert.throws(() => pairedDifference([1], [1, 2]), /pairedDifference: expected as many values/);
});

Deno.test("judge: held, did not hold, inside the noise, one seed, never happened", () => {
  assert.equal(judge([-0.12, -0.08, -0.1], "negative").kind, "held");
  assert.equal(judge([0.12, 0.08, 0.1], "positive").kind, "held");
  assert.equal(judge([0.12, 0.08, 0.1], "negative").kind, "did not hold");
  const noise = judge([-0.12, 0.05, -0.1], "negative");
  assert.equal(noise.kind, "inside the noise");
  assert.match(noise.text, /interval includes 0 \(the mean is on the claimed side\)/);
  assert.ok(noise.estimate!.lo < 0 && noise.estimate!.hi > 0);
  assert.equal(judge([-0.1], "negative").kind, "one seed");
  assert.match(judge([0.1], "negative").text, /did not hold/);
  // Missing values: the event never happened on that seed — a seed against the claim.
  const missing = judge([0.1, null, 0.12], "positive");
  assert.equal(missing.kind, "inside the noise");
  assert.equal(missing.missing, 1);
  assert.match(missing.text, /on 1 of 3 seeds it never happened/);
  assert.equal(judge([null, null], "positive").kind, "did not hold");
  assert.equal(judge([], "positive").kind, "no data");
  assert.throws(
    () => judge([1], "down" as never),
    /judge: expect must be "negative" or "positive"/,
  );
});

Deno.test("curves: first reach (interpolated), first at most, and bands over seeds", () => {
  const c = [{ x: 100, y: 6 }, { x: 200, y: 4 }, { x: 300, y: 3 }];
  assert.equal(firstReach(c, 5), 150);
  assert.equal(firstReach(c, 3.5), 250);
  assert.equal(firstReach(c, 6.5), 100, "already below at the first point");
  assert.equal(firstReach(c, 2), null);
  assert.equal(firstAtMost(c, 4), 200);
  assert.equal(firstAtMost(c, 1), null);
  const b = band([[{ x: 1, y: 5 }, { x: 2, y: 3 }], [{ x: 1, y: 7 }, { x: 2, y: NaN }], [{
    x: 1,
    y: 6,
  }]]);
  assert.deepEqual(b, { x: [1, 2], mean: [6, 3], lo: [5, 3], hi: [7, 3] });
  assert.deepEqual(band([]), { x: [], mean: [], lo: [], hi: [] });
});

Deno.test("trainingFlopsPerToken: 6 per active weight plus the attention scores, per attention expert", () => {
  const dense = mj.nn.modelConfig({
    ffn: "dense",
    dModel: 16,
    nHeads: 2,
    dFf: 32,
    nLayers: 2,
    vocabSize: 64,
    maxSeqLen: 8,
  });
  const { active } = mj.nn.parameterCount(dense);
  assert.equal(trainingFlopsPerToken(dense, 8), 6 * active + 12 * 8 * 16 * 2);
  // An untied input embedding is a lookup: its separate output projection costs what the tied
  // one did, so the FLOPs do not change although the active parameters grow by V·d.
  const untied = mj.nn.modelConfig({ ...dense, tiedEmbeddings: false });
  assert.equal(mj.nn.parameterCount(untied).active, active + 64 * 16);
  assert.equal(trainingFlopsPerToken(untied, 8), trainingFlopsPerToken(dense, 8));
  // Four soft-routed attention experts: four times the score FLOPs, and their projections.
  const moa = mj.nn.modelConfig({ ...dense, block: "parallel", attnExperts: 4 });
  assert.equal(
    trainingFlopsPerToken(moa, 8),
    6 * mj.nn.parameterCount(moa).active + 12 * 8 * 16 * 2 * 4,
  );
  assert.ok(trainingFlopsPerToken(moa, 8) > trainingFlopsPerToken(dense, 8));
});
