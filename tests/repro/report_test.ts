/**
 * The report writer on fabricated results (no training): the claims table (per seed, mean with
 * its t-interval, a plain verdict), the per-arm tables (mean ± sd, each seed), the scale and
 * notes, the charts with their bands, and the raw JSON — for a small suite with known numbers,
 * and for every real suite's claims, columns and charts.
 */
import { assert } from "../helpers.ts";
import { chartSeries, claimOutcome, writeReport } from "../../src/repro/report.ts";
import { SUITES } from "../../src/repro/suites/index.ts";
import type { RunResult, Suite } from "../../src/repro/suite.ts";
import type { Machine } from "../../src/repro/machine.ts";
import { fakeResult, fakeSpec } from "./fake.ts";

const machine: Machine = {
  cpu: "Test CPU",
  cores: 2,
  memoryGiB: 8,
  os: "linux",
  deno: "2.9.6",
  commit: "0123456789abcdef",
  dirty: false,
};

const tiny: Suite = {
  name: "tiny",
  title: "A against B",
  summary: "Two arms.",
  scale: { steps: 100 },
  quick: { steps: 10 },
  scaleDoc: { steps: "training steps" },
  groups: () => [{
    key: "g",
    label: "the group",
    arms: [{ key: "a", label: "A" }, { key: "b", label: "B" }],
  }],
  runs: () => [],
  columns: [
    { key: "ppl", label: "val ppl", value: (r) => r.ppl, digits: 2 },
    { key: "never", label: "first step", value: () => null, digits: 0, missing: "never" },
  ],
  claims: () => [
    {
      group: "g",
      paper: "B beats A",
      source: "Table 1",
      measured: "val ppl: B − A",
      a: "a",
      b: "b",
      value: (a, b) => b.ppl - a.ppl,
      expect: "negative",
      format: (v) => v.toFixed(2),
    },
    {
      group: "g",
      paper: "A beats B",
      source: "Table 2",
      measured: "val ppl: A − B",
      a: "b",
      b: "a",
      value: (b, a) => a.ppl - b.ppl,
      expect: "negative",
      format: (v) => v.toFixed(2),
    },
  ],
  charts: () => [{
    file: "curve.svg",
    title: "Curve",
    group: "g",
    xLabel: "tokens",
    yLabel: "ppl",
    series: (r) => r.curve.map((p) => ({ x: p.tokens, y: p.ppl })),
  }],
  notes: () => ["A note."],
};

/** The tiny suite's report from `results` (seeds 0 … n−1, no failures), as Markdown. */
async function tinyReport(results: RunResult[], seeds: number, quick = false): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "moejit-report-" });
  const files = await writeReport(dir, {
    suite: tiny,
    scale: tiny.scale,
    seeds: Array.from({ length: seeds }, (_, s) => s),
    quick,
    results,
    failed: [],
    machine,
    command: "x",
  });
  return await Deno.readTextFile(files.markdown);
}

Deno.test("writeReport: claims with per-seed values, interval and verdict; arms with mean ± sd", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-report-" });
  // B is better than A by 0.3, 0.5, 0.4 on seeds 0–2.
  const a = [10, 11, 12], b = [9.7, 10.5, 11.6];
  const results: RunResult[] = [0, 1, 2].flatMap((s) => [
    fakeResult(fakeSpec("g", "a", s), a[s]),
    fakeResult(fakeSpec("g", "b", s), b[s]),
  ]);
  const files = await writeReport(dir, {
    suite: tiny,
    scale: tiny.scale,
    seeds: [0, 1, 2],
    quick: false,
    results,
    failed: [{ id: "g/c/seed-0", error: "exit code 1; diverged\nmore" }],
    machine,
    command: "deno task reproduce --suite tiny",
    date: new Date("2025-01-02T03:04:05Z"),
  });
  const md = await Deno.readTextFile(files.markdown);
  assert.match(md, /^# A against B\n/);
  assert.match(md, /Made by `deno task reproduce --suite tiny` on 2025-01-02 03:04 UTC/);
  assert.match(md, /Test CPU, 2 logical cores, 8 GiB/);
  assert.match(md, /\*\*Backend\*\*: cpu\./);
  assert.match(md, /`0123456789ab`/);
  assert.match(md, /2 claims: 1 held, 1 did not hold, 0 inside the noise/);
  // d = −0.3, −0.5, −0.4: mean −0.4, sd 0.1, t(0.975, 2) = 4.3027 → ±0.248.
  assert.match(
    md,
    /\| 1 \| B beats A \(Table 1\) \| val ppl: B − A; claim: < 0 \| -0\.30, -0\.50, -0\.40 \| -0\.40 \[-0\.65, -0\.15\] \| ✅ held: the 95 % interval is entirely on the claimed side \|/,
  );
  assert.match(md, /\| 2 \| A beats B \(Table 2\) .* \| 0\.40 \[0\.15, 0\.65\] \| ❌ did not hold/);
  assert.match(
    md,
    /\| A \| 11\.00 ± 1\.00 \| never \| val ppl: 0: 10\.00, 1: 11\.00, 2: 12\.00 \|/,
  );
  assert.match(md, /\| B \| 10\.60 ± 0\.95 \|/);
  assert.match(md, /!\[Curve\]\(curve\.svg\)/);
  assert.match(md, /\| steps \| 100 \| training steps \|/);
  assert.match(md, /- A note\./);
  assert.match(md, /## Failed runs\n\n- `g\/c\/seed-0`: exit code 1; diverged\n/);
  const svg = await Deno.readTextFile(`${dir}/curve.svg`);
  assert.equal([...svg.matchAll(/fill-opacity="0\.18"/g)].length, 2, "one band per arm");
  assert.match(svg, />Curve</);
  assert.match(
    md,
    /\*Curve: the mean over seeds; the band spans the smallest and largest seed\.\*/,
  );
  const json = JSON.parse(await Deno.readTextFile(files.json));
  assert.equal(json.runs.length, 6);
  assert.equal(json.claims[0].verdict.kind, "held");
  assert.deepEqual(json.claims[0].perSeed.map((p: { seed: number }) => p.seed), [0, 1, 2]);
  assert.deepEqual(json.arms[0].columns.ppl.perSeed, [10, 11, 12]);
});

Deno.test("claimOutcome: a claim with a threshold is judged against it, reported in its own units", () => {
  const results = [0, 1, 2].flatMap((s) => [
    fakeResult(fakeSpec("g", "a", s), 10, { stepSeconds: 1 }),
    fakeResult(fakeSpec("g", "b", s), 10, { stepSeconds: [1.01, 1.015, 1.012][s] }),
  ]);
  const overhead = (threshold: number) =>
    claimOutcome({
      group: "g",
      paper: "B's overhead is under the threshold",
      source: "Table 3",
      measured: "step time: B / A − 1",
      a: "a",
      b: "b",
      value: (a, b) => b.stepSeconds / a.stepSeconds - 1,
      expect: "negative",
      threshold,
      format: (v) => v.toFixed(3),
    }, results);
  const two = overhead(0.02);
  assert.equal(two.verdict.kind, "held", two.verdict.text);
  assert.ok(
    Math.abs(two.verdict.estimate!.mean - 0.0123333) < 1e-6,
    "the mean overhead, not its distance",
  );
  assert.equal(overhead(0.005).verdict.kind, "did not hold");
  const near = overhead(0.012);
  assert.equal(near.verdict.kind, "inside the noise");
  assert.match(near.verdict.text, /the 95 % interval includes 0\.012 /);
});

Deno.test("writeReport: a seed only one arm finished is left out of the pairing", async () => {
  const results = [
    fakeResult(fakeSpec("g", "a", 0), 10),
    fakeResult(fakeSpec("g", "b", 0), 9),
    fakeResult(fakeSpec("g", "a", 1), 10),
  ];
  const md = await tinyReport(results, 2, true);
  assert.match(md, /quick harness check \(not science\)/);
  assert.match(md, /\| -1\.00 \| -1\.00 \| one seed, no interval: the direction held \|/);
});

Deno.test("writeReport: the commit line names the commits the runs were made at", async () => {
  const commitLine = async (commits: (string | undefined)[]) => {
    const results = commits.map((commit, s) => ({
      ...fakeResult(fakeSpec("g", "a", s), 10),
      ...(commit ? { commit } : {}),
    }));
    return (await tinyReport(results, commits.length)).match(/\*\*Commit\*\*: (.*)\n/)![1];
  };
  const here = machine.commit;
  assert.equal(await commitLine([here, here]), "`0123456789ab` (the report and every run).");
  assert.equal(
    await commitLine([here, "fedcba9876543210+changes", undefined]),
    "report written at `0123456789ab`; runs made at `0123456789ab` (1), `fedcba987654` with uncommitted changes (1); 1 run did not record theirs.",
  );
  assert.equal(
    await commitLine([undefined, undefined]),
    "report written at `0123456789ab`; 2 runs did not record theirs.",
  );
});

Deno.test("writeReport: the backend line names the native threads and BLAS of the runs", async () => {
  const results: RunResult[] = [
    {
      ...fakeResult(fakeSpec("g", "a", 0), 10),
      backend: "native",
      native: { threads: 1, blas: "/lib/libopenblas.so.0" },
    },
    {
      ...fakeResult(fakeSpec("g", "b", 0), 9),
      backend: "native",
      native: { threads: 2, blas: null },
    },
    { ...fakeResult(fakeSpec("g", "a", 1), 10), backend: "native" },
    { ...fakeResult(fakeSpec("g", "b", 1), 9), backend: "webgpu", adapter: "llvmpipe" },
  ];
  const md = await tinyReport(results, 2);
  assert.match(
    md,
    /\*\*Backend\*\*: native \(1 thread, BLAS \/lib\/libopenblas\.so\.0\), native \(2 threads, moejit's own sgemm\), native, webgpu \(llvmpipe\)\./,
  );
});

Deno.test("chartSeries: mean and band over seeds, or each seed's difference from the baseline's run", () => {
  const a = [10, 11, 12], b = [9.7, 10.5, 11.6];
  const results: RunResult[] = [0, 1, 2].flatMap((s) => [
    fakeResult(fakeSpec("g", "a", s), a[s]),
    fakeResult(fakeSpec("g", "b", s), b[s]),
  ]);
  const g = tiny.groups(tiny.scale)[0];
  const chart = tiny.charts(tiny.scale)[0];
  const plain = chartSeries(chart, g, results);
  assert.deepEqual(plain.map((s) => s.name), ["A", "B"]);
  // The curves end at each seed's final perplexity.
  assert.deepEqual([plain[0].y.at(-1), plain[0].lo.at(-1), plain[0].hi.at(-1)], [11, 10, 12]);
  const diff = chartSeries({ ...chart, baseline: "a" }, g, results);
  assert.deepEqual(diff.map((s) => s.name), ["B"], "the baseline itself is not drawn");
  const last = diff[0].y.length - 1;
  assert.ok(Math.abs(diff[0].y[last] + 0.4) < 1e-9, `mean difference ${diff[0].y[last]}`);
  assert.ok(Math.abs(diff[0].lo[last] + 0.5) < 1e-9 && Math.abs(diff[0].hi[last] + 0.3) < 1e-9);
  // A seed without a baseline run is left out.
  const partial = chartSeries(
    { ...chart, baseline: "a" },
    g,
    results.filter((r) => r.id !== "g/a/seed-1"),
  );
  assert.ok(Math.abs(partial[0].y[last] + 0.35) < 1e-9);
});

/** Fake results for every run a real suite plans (with every domain for mixtures). */
function fakeRunsOf(suite: Suite, seeds: number[]): RunResult[] {
  return suite.runs(suite.quick, seeds).map((spec, i) => {
    const domains = spec.train.data.split("+");
    const byDomain = Object.fromEntries(
      domains.map((d, j) => [d, 5 + j + spec.seed * 0.1 + (i % 7) * 0.01]),
    );
    return fakeResult(spec, 5 + spec.seed * 0.1 + (i % 7) * 0.01, {
      byDomain,
      vio: (s) => 1 / s,
    });
  });
}

for (const suite of SUITES) {
  Deno.test(`writeReport (${suite.name}): every claim is judged, every chart drawn, from fake runs`, async () => {
    const dir = await Deno.makeTempDir({ prefix: `moejit-report-${suite.name}-` });
    const results = fakeRunsOf(suite, [0, 1, 2]);
    const files = await writeReport(dir, {
      suite,
      scale: suite.quick,
      seeds: [0, 1, 2],
      quick: true,
      results,
      failed: [],
      machine,
      command: `deno task reproduce --suite ${suite.name} --quick`,
    });
    const md = await Deno.readTextFile(files.markdown);
    const json = JSON.parse(await Deno.readTextFile(files.json));
    const claims = suite.claims(suite.quick);
    assert.ok(claims.length > 0);
    assert.equal(json.claims.length, claims.length);
    for (const c of json.claims) {
      assert.equal(c.perSeed.length, 3, `${c.measured}: every seed pairs up`);
      assert.notEqual(c.verdict.kind, "no data", c.measured);
    }
    // Every group's arms have runs, and every chart exists with a band per plotted arm.
    for (const g of suite.groups(suite.quick)) {
      for (const a of g.arms) {
        assert.ok(
          results.some((r) => r.spec.group === g.key && r.spec.arm === a.key),
          `${g.key}/${a.key}`,
        );
      }
    }
    assert.equal(files.svgs.length, suite.charts(suite.quick).length);
    for (const f of files.svgs) assert.match(await Deno.readTextFile(f), /fill-opacity="0\.18"/);
    assert.ok(
      !/NaN|undefined/.test(md.replace(/Raw numbers.*$/s, "")),
      "no NaN or undefined in the text",
    );
    for (const key of Object.keys(suite.quick)) {
      assert.ok(suite.scaleDoc[key], `${key} is documented`);
    }
  });
}
