/**
 * A suite's report: a Markdown page — where and how it ran, the scale, every claim of the papers
 * next to what was measured (per seed, the mean with its t-interval, and a plain verdict), the
 * per-arm tables (mean ± standard deviation and each seed's value) and the notes — SVG curves
 * (mean over seeds with a min–max band) and all the raw numbers as JSON.
 */
import { writeFileAtomic } from "../io/files.ts";
import { lineChart } from "../io/svg.ts";
import { formatDuration } from "../train/progress.ts";
import { band } from "./curve.ts";
import type { Machine } from "./machine.ts";
import { type Estimate, estimate } from "./stats.ts";
import type { Chart, Claim, Column, GroupInfo, RunResult, Scale, Suite } from "./suite.ts";
import { judge, type Verdict } from "./verdict.ts";

export interface ReportInput {
  suite: Suite;
  scale: Scale;
  seeds: number[];
  quick: boolean;
  results: readonly RunResult[];
  failed: readonly { id: string; error: string }[];
  machine: Machine;
  /** The command that made it. */
  command: string;
  /** When it was written (default now). */
  date?: Date;
}

/** One claim's outcome. */
export interface ClaimOutcome {
  group: string;
  paper: string;
  source: string;
  measured: string;
  a: string;
  b: string;
  expect: string;
  /** The quantity per seed (null: the event never happened), for the seeds both arms finished. */
  perSeed: { seed: number; value: number | null }[];
  verdict: Verdict;
}

/** One arm's column values over its seeds. */
export interface ArmSummary {
  group: string;
  arm: string;
  label: string;
  columns: Record<string, { perSeed: (number | null)[]; estimate: Estimate | null }>;
  seeds: number[];
}

/** Results of one (group, arm), in seed order. */
function runsOf(results: readonly RunResult[], group: string, arm: string): RunResult[] {
  return results.filter((r) => r.spec.group === group && r.spec.arm === arm)
    .sort((a, b) => a.spec.seed - b.spec.seed);
}

/** judge() of the values' distance to `threshold`, with the interval reported in the values' units. */
function judgeAgainst(
  values: readonly (number | null)[],
  expect: "negative" | "positive",
  threshold: number,
  format: (v: number) => string,
): Verdict {
  const v = judge(values.map((x) => (x === null ? null : x - threshold)), expect);
  if (!v.estimate || threshold === 0) return v;
  const e = v.estimate;
  return {
    ...v,
    text: v.text.replace("includes 0", `includes ${format(threshold)}`),
    estimate: {
      ...e,
      mean: e.mean + threshold,
      lo: e.lo + threshold,
      hi: e.hi + threshold,
      values: e.values.map((x) => x + threshold),
    },
  };
}

/**
 * Evaluates a claim over the seeds both of its arms finished.
 *
 * @example
 * ```ts
 * const o = claimOutcome(claim, results); // o.verdict.kind: "held" | "did not hold" | …
 * ```
 */
export function claimOutcome(c: Claim, results: readonly RunResult[]): ClaimOutcome {
  const a = new Map(runsOf(results, c.group, c.a).map((r) => [r.spec.seed, r]));
  const b = new Map(runsOf(results, c.group, c.b).map((r) => [r.spec.seed, r]));
  const perSeed = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y).map((seed) => {
    const v = c.value(a.get(seed)!, b.get(seed)!);
    return { seed, value: v === null || Number.isFinite(v) ? v : null };
  });
  return {
    group: c.group,
    paper: c.paper,
    source: c.source,
    measured: c.measured,
    a: c.a,
    b: c.b,
    expect: c.expect,
    perSeed,
    verdict: judgeAgainst(perSeed.map((p) => p.value), c.expect, c.threshold ?? 0, c.format),
  };
}

/**
 * Every arm's column values: per seed, and their mean, sd and t-interval.
 *
 * @example
 * ```ts
 * const arms = armSummaries(suite.groups(scale), suite.columns, results);
 * arms[0].columns.ppl.estimate?.mean;
 * ```
 */
export function armSummaries(
  groups: readonly GroupInfo[],
  columns: readonly Column[],
  results: readonly RunResult[],
): ArmSummary[] {
  return groups.flatMap((g) =>
    g.arms.map((arm) => {
      const runs = runsOf(results, g.key, arm.key);
      const cols: ArmSummary["columns"] = {};
      for (const c of columns) {
        const perSeed = runs.map((r) => {
          const v = c.value(r);
          return v !== null && Number.isFinite(v) ? v : null;
        });
        const present = perSeed.filter((v): v is number => v !== null);
        cols[c.key] = { perSeed, estimate: present.length ? estimate(present) : null };
      }
      return {
        group: g.key,
        arm: arm.key,
        label: arm.label,
        columns: cols,
        seeds: runs.map((r) => r.spec.seed),
      };
    })
  );
}

const cell = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");

function fmtColumn(c: Column, v: number | null): string {
  if (v === null) return c.missing ?? "–";
  return c.format ? c.format(v) : v.toFixed(c.digits);
}

function meanSd(c: Column, col: ArmSummary["columns"][string]): string {
  const e = col.estimate;
  const missing = col.perSeed.filter((v) => v === null).length;
  if (!e) return missing ? (c.missing ?? "–") : "–";
  const f = (v: number) => (c.format ? c.format(v) : v.toFixed(c.digits));
  // A value every seed shares (a parameter count, a token budget) has no spread to show.
  const sd = e.n > 1 && e.sd > 0 ? ` ± ${c.format ? c.format(e.sd) : e.sd.toFixed(c.digits)}` : "";
  return `${f(e.mean)}${sd}${missing ? ` (${missing} ${c.missing ?? "missing"})` : ""}`;
}

const VERDICT_MARK: Record<string, string> = {
  "held": "✅ held",
  "did not hold": "❌ did not hold",
  "inside the noise": "〰️ inside the noise",
  "one seed": "one seed, no interval",
  "no data": "no data",
};

function claimRow(i: number, o: ClaimOutcome, c: Claim): string {
  const perSeed = o.perSeed.map((p) => `${p.value === null ? "never" : c.format(p.value)}`)
    .join(", ");
  const e = o.verdict.estimate;
  const ci = e
    ? e.n > 1 ? `${c.format(e.mean)} [${c.format(e.lo)}, ${c.format(e.hi)}]` : c.format(e.mean)
    : "–";
  const bound = c.threshold ? c.format(c.threshold) : "0";
  const want = c.expect === "negative" ? `< ${bound}` : `> ${bound}`;
  return `| ${i} | ${cell(o.paper)} (${cell(o.source)}) | ${cell(o.measured)}; claim: ${want} | ${
    perSeed || "–"
  } | ${ci} | ${VERDICT_MARK[o.verdict.kind]}: ${cell(o.verdict.text.replace(/^[^:]*: /, ""))} |`;
}

/**
 * A chart's lines: per plotted arm, the mean over seeds of its series (or of its difference
 * from the baseline arm's run of the same seed) with the smallest and largest seed as the band.
 *
 * @example
 * ```ts
 * const lines = chartSeries(suite.charts(scale)[0], suite.groups(scale)[0], results);
 * ```
 */
export function chartSeries(
  ch: Chart,
  g: GroupInfo,
  results: readonly RunResult[],
): { name: string; x: number[]; y: number[]; lo: number[]; hi: number[] }[] {
  const shown = g.arms.filter((a) =>
    (!ch.arms || ch.arms.includes(a.key)) && a.key !== ch.baseline
  );
  const base = new Map(
    ch.baseline ? runsOf(results, g.key, ch.baseline).map((r) => [r.spec.seed, r]) : [],
  );
  const curveOf = (r: RunResult) => {
    const pts = ch.series(r);
    if (!ch.baseline) return pts;
    const b = base.get(r.spec.seed);
    if (!b) return [];
    const at = new Map(ch.series(b).map((p) => [p.x, p.y]));
    return pts.filter((p) => at.has(p.x)).map((p) => ({ x: p.x, y: p.y - at.get(p.x)! }));
  };
  return shown.map((a) => {
    const b = band(runsOf(results, g.key, a.key).map(curveOf));
    return { name: a.label, x: b.x, y: b.mean, lo: b.lo, hi: b.hi };
  }).filter((s) => s.x.length);
}

/** The files a report consists of. */
export interface ReportFiles {
  markdown: string;
  json: string;
  svgs: string[];
}

/** A run's backend as the report names it: the adapter, or the native threads and BLAS. */
function backendOf(r: RunResult): string {
  if (r.adapter) return `${r.backend} (${r.adapter})`;
  if (!r.native) return r.backend;
  const { threads, blas } = r.native;
  return `${r.backend} (${threads} thread${threads === 1 ? "" : "s"}, ${
    blas ? `BLAS ${blas}` : "moejit's own sgemm"
  })`;
}

/** The report's commit and, where they differ from it, the commits the runs were made at. */
function commitLine(m: Machine, results: readonly RunResult[]): string {
  const short = (c: string) =>
    `\`${c.replace("+changes", "").slice(0, 12)}\`${
      c.endsWith("+changes") ? " with uncommitted changes" : ""
    }`;
  const here = m.commit + (m.dirty ? "+changes" : "");
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.commit ?? "", (counts.get(r.commit ?? "") ?? 0) + 1);
  if (counts.size === 1 && counts.has(here)) return `${short(here)} (the report and every run)`;
  let line = `report written at ${short(here)}`;
  const made = [...counts].filter(([c]) => c).map(([c, n]) => `${short(c)} (${n})`);
  const unknown = counts.get("") ?? 0;
  if (made.length) line += `; runs made at ${made.join(", ")}`;
  if (unknown) line += `; ${unknown} run${unknown === 1 ? "" : "s"} did not record theirs`;
  return line;
}

/**
 * Writes `README.md`, `results.json` and the charts into `dir`.
 *
 * @example
 * ```ts
 * await writeReport("reports/grin", { suite: grinSuite, scale, seeds, quick: false, results, failed: [], machine, command });
 * ```
 */
export async function writeReport(dir: string, input: ReportInput): Promise<ReportFiles> {
  const { suite, scale, results } = input;
  const groups = suite.groups(scale);
  const claims = suite.claims(scale);
  const outcomes = claims.map((c) => claimOutcome(c, results));
  const arms = armSummaries(groups, suite.columns, results);
  const date = input.date ?? new Date();
  const backends = [...new Set(results.map(backendOf))];
  const computeSeconds = results.reduce((a, r) => a + r.wallSeconds, 0);
  const loads = results.map((r) => r.load[0]);
  const m = input.machine;
  const lines: string[] = [];
  lines.push(`# ${suite.title}${input.quick ? " — quick harness check (not science)" : ""}`, "");
  lines.push(suite.summary, "");
  lines.push(
    `Made by \`${input.command}\` on ${date.toISOString().slice(0, 16).replace("T", " ")} UTC.`,
    "",
    `- **Machine**: ${m.cpu}, ${m.cores} logical cores, ${m.memoryGiB} GiB; ${m.os}; Deno ${m.deno}.`,
    `- **Backend**: ${backends.join(", ") || "–"}.`,
    `- **Commit**: ${commitLine(m, results)}.`,
    `- **Runs**: ${results.length} finished${
      input.failed.length ? `, ${input.failed.length} failed` : ""
    }; seeds ${
      input.seeds.join(", ")
    } (every arm of a comparison uses the same seeds: same initialisation where the shapes agree, same data order).`,
    `- **Compute**: ${formatDuration(computeSeconds)} of wall time over all runs${
      loads.length
        ? `; 1-minute load average at run starts ${Math.min(...loads).toFixed(2)}–${
          Math.max(...loads).toFixed(2)
        } on ${m.cores} cores (timings from a busy machine are noisy)`
        : ""
    }.`,
    "",
  );
  const tally = (k: string) => outcomes.filter((o) => o.verdict.kind === k).length;
  lines.push(
    "## Claims",
    "",
    `${outcomes.length} claims: ${tally("held")} held, ${tally("did not hold")} did not hold, ${
      tally("inside the noise")
    } inside the noise${
      tally("one seed") + tally("no data")
        ? `, ${tally("one seed") + tally("no data")} without an interval`
        : ""
    }. Each row is a paper's claim and the quantity measured here, per seed (paired: both arms ran with that seed), with its mean and 95 % t-interval over seeds. *Held*: the whole interval is on the claimed side; *did not hold*: on the other side; *inside the noise*: the interval includes 0.`,
    "",
  );
  for (const g of groups) {
    const rows = outcomes.map((o, i) => [o, claims[i]] as const).filter(([o]) => o.group === g.key);
    if (!rows.length) continue;
    lines.push(`### ${g.label}`, "");
    lines.push("| # | Paper's claim | Measured here | Per seed | Mean [95 % CI] | Verdict |");
    lines.push("|---|---|---|---|---|---|");
    rows.forEach(([o, c]) => lines.push(claimRow(outcomes.indexOf(o) + 1, o, c)));
    lines.push("");
  }
  lines.push("## Results", "");
  const charts = suite.charts(scale);
  const svgs: string[] = [];
  for (const g of groups) {
    lines.push(`### ${g.label}`, "");
    const header = ["arm", ...suite.columns.map((c) => `${c.label} (mean ± sd)`), "per seed"];
    lines.push(`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`);
    for (const a of arms.filter((x) => x.group === g.key)) {
      // Each seed's value of the first column this arm has values for.
      const first = suite.columns.find((c) => a.columns[c.key].estimate) ?? suite.columns[0];
      const perSeed = a.seeds.map((s, i) =>
        `${s}: ${fmtColumn(first, a.columns[first.key].perSeed[i])}`
      ).join(", ");
      lines.push(
        `| ${cell(a.label)} | ${
          suite.columns.map((c) => meanSd(c, a.columns[c.key])).join(" | ")
        } | ${perSeed ? `${cell(first.label)}: ${perSeed}` : "no finished run"} |`,
      );
    }
    lines.push("");
    for (const ch of charts.filter((c) => c.group === g.key)) {
      const series = chartSeries(ch, g, results);
      await writeFileAtomic(
        `${dir}/${ch.file}`,
        lineChart(series, {
          title: ch.title,
          xLabel: ch.xLabel,
          yLabel: ch.yLabel,
          logY: ch.logY,
          ...(ch.baseline ? { refY: 0 } : {}),
          width: 860,
          height: 460,
        }),
      );
      svgs.push(`${dir}/${ch.file}`);
      lines.push(
        `![${ch.title}](${ch.file})`,
        "",
        `*${ch.title}: the mean over seeds; the band spans the smallest and largest seed.*`,
        "",
      );
    }
  }
  lines.push("## Scale", "", "| entry | value | meaning |", "|---|---|---|");
  for (const [k, v] of Object.entries(scale)) {
    lines.push(`| ${k} | ${v} | ${cell(suite.scaleDoc[k] ?? "")} |`);
  }
  lines.push("", "## Notes", "", ...suite.notes(scale).map((n) => `- ${n}`), "");
  if (input.failed.length) {
    lines.push("## Failed runs", "");
    for (const f of input.failed) lines.push(`- \`${f.id}\`: ${cell(f.error.split("\n")[0])}`);
    lines.push("");
  }
  lines.push(
    "Raw numbers: [results.json](results.json) (every run's curves, per-step metrics and configuration).",
    "",
  );
  const markdown = `${dir}/README.md`, json = `${dir}/results.json`;
  await writeFileAtomic(markdown, lines.join("\n"));
  await writeFileAtomic(
    json,
    JSON.stringify(
      {
        suite: suite.name,
        title: suite.title,
        quick: input.quick,
        command: input.command,
        date: date.toISOString(),
        machine: m,
        backends,
        seeds: input.seeds,
        scale,
        claims: outcomes,
        arms,
        failed: input.failed,
        runs: results,
      },
      null,
      1,
    ) + "\n",
  );
  return { markdown, json, svgs };
}
