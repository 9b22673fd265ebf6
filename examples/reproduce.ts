/**
 * The four papers' headline comparisons in miniature, with seeds and error bars: Default MoE vs
 * TopK, GRIN's SparseMixer-v2 vs TopK, BIP vs aux loss vs loss-free balancing, BAM vs BTX. Each
 * suite trains every arm with the same seeds on Moby Dick, State of the Union addresses and
 * SpamAssassin e-mails, then writes a report (Markdown, SVG, JSON) that puts each paper's claim
 * next to what was measured and says whether the direction held.
 *
 *   deno task reproduce --suite grin              # one suite, 3 seeds, into reports/grin/
 *   deno task reproduce --suite all --seeds 5
 *   deno task reproduce --suite balance --plan    # the scale, the runs and a measured estimate
 *   deno task reproduce --suite bam --quick       # a tiny end-to-end check of the harness
 *   deno task reproduce --help
 *
 * Every training run is a child process writing into reports/<suite>/runs/<id>/; a finished run
 * is never run again, so the same command resumes a suite that was stopped (Ctrl-C checkpoints
 * the current run; a second Ctrl-C kills it).
 */
import { parseArgs } from "node:util";
import * as mj from "../mod.ts";
import { suiteByName, SUITES } from "../src/repro/suites/index.ts";
import type { RunSpec, Scale, Suite } from "../src/repro/suite.ts";
import { readResult, readSpec, runDir } from "../src/repro/layout.ts";
import { runSuite } from "../src/repro/runner.ts";
import { EXIT_INTERRUPTED, spawnLogged, subprocessExecutor } from "../src/repro/subprocess.ts";
import { estimateSuite } from "../src/repro/estimate.ts";
import { probeRun, runOne } from "../src/repro/run_one.ts";
import { RunInterrupted } from "../src/repro/interrupted.ts";
import { describeMachine } from "../src/repro/machine.ts";
import { writeReport } from "../src/repro/report.ts";
import { writeFileAtomic } from "../src/io/files.ts";
import { formatDuration } from "../src/train/progress.ts";

const HELP = `The papers' headline comparisons in miniature, with seeds and error bars.

usage: deno task reproduce --suite ${SUITES.map((s) => s.name).join("|")}|all [flags]

  --suite NAME        the suite to run (required)
  --seeds N           seeds per arm (default 3; quick 2)
  --quick             a tiny scale that checks the harness end to end in minutes (not science)
  --backend NAME      the backend of every run (default: the fastest available)
  --out DIR           where reports go: DIR/<suite>/ (default reports; quick reports/quick)
  --set K=V,...       change entries of the suite's scale (e.g. --set steps=300,dModel=64)
  --plan              print the scale, the runs and a time estimate; run nothing
  --no-estimate       skip the timing probes before a suite
  --report-only       write the report from the runs finished so far; run nothing
  --keep-checkpoints  keep finished runs' checkpoints (default: deleted once unneeded)
  --help              this text

Suites:
${SUITES.map((s) => `  ${s.name.padEnd(12)}${s.title}`).join("\n")}`;

function die(msg: string): never {
  console.error(`error: ${msg}`);
  Deno.exit(2);
}

function childSignal(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    if (Deno.build.os !== "windows" || sig === "SIGINT") {
      Deno.addSignalListener(sig, () => ac.abort());
    }
  }
  return ac.signal;
}

async function adapterDescription(): Promise<string | null> {
  return (await mj.backendName()) === "webgpu"
    ? ((await mj.backendInfo())?.adapter.description ?? null)
    : null;
}

// ---- child modes: one run, or one timing probe, in this process ---------------------------------

async function childMain(args: string[]): Promise<never> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      "run-one": { type: "boolean" },
      probe: { type: "string" },
      backend: { type: "string" },
    },
    allowPositionals: true,
  });
  if (values.backend) mj.setBackend(values.backend as mj.BackendName);
  const [suiteDir, id] = positionals;
  try {
    if (values.probe) {
      // --probe OUT.json SUITE_DIR SPEC.json: time the configuration of the spec in the file.
      const spec = JSON.parse(await Deno.readTextFile(id)) as RunSpec;
      const p = await probeRun(spec, { suiteDir });
      await writeFileAtomic(values.probe, JSON.stringify(p) + "\n");
    } else {
      const spec = await readSpec(suiteDir, id);
      if (!spec) die(`no spec.json in ${runDir(suiteDir, id)}`);
      await runOne(spec, {
        suiteDir,
        signal: childSignal(),
        progress: true,
        adapter: await adapterDescription(),
      });
    }
    Deno.exit(0);
  } catch (e) {
    if (e instanceof RunInterrupted) {
      console.error(e.message);
      Deno.exit(EXIT_INTERRUPTED);
    }
    console.error(e instanceof mj.MoejitError ? `error: ${e.message}` : e);
    Deno.exit(1);
  }
}

if (Deno.args.includes("--run-one") || Deno.args.includes("--probe")) await childMain(Deno.args);

// ---- the suite runner ---------------------------------------------------------------------------

let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: {
      suite: { type: "string" },
      seeds: { type: "string" },
      quick: { type: "boolean" },
      backend: { type: "string" },
      out: { type: "string" },
      set: { type: "string" },
      plan: { type: "boolean" },
      "no-estimate": { type: "boolean" },
      "report-only": { type: "boolean" },
      "keep-checkpoints": { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  }));
} catch (e) {
  die(`${(e as Error).message.replace(/\. To specify a positional argument.*$/, "")}; see --help`);
}
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const quick = values.quick === true;
const names = values.suite === "all"
  ? SUITES.map((s) => s.name)
  : values.suite
  ? [String(values.suite)]
  : die(`--suite is required: ${SUITES.map((s) => s.name).join(", ")} or all`);
const suites = names.map((n) =>
  suiteByName(n) ??
    die(`--suite: unknown suite ${JSON.stringify(n)}; expected ${
      SUITES.map((s) => s.name).join(", ")
    } or all`)
);
const nSeeds = values.seeds === undefined ? (quick ? 2 : 3) : Number(values.seeds);
if (!Number.isInteger(nSeeds) || nSeeds < 1) {
  die(`--seeds expects a positive integer, got ${JSON.stringify(values.seeds)}`);
}
const seeds = Array.from({ length: nSeeds }, (_, i) => i);
const backend = values.backend === undefined ? undefined : String(values.backend);
if (backend !== undefined) {
  try {
    mj.setBackend(backend as mj.BackendName); // checks the name before any run starts
  } catch (e) {
    die(`--backend: ${(e as Error).message.replace(/^setBackend: /, "")}`);
  }
}
const outRoot = String(values.out ?? (quick ? "reports/quick" : "reports"));

/** The suite's scale with --set applied. */
function scaleOf(suite: Suite): Scale {
  const scale = { ...(quick ? suite.quick : suite.scale) };
  if (values.set === undefined) return scale;
  for (const kv of String(values.set).split(",").filter(Boolean)) {
    const [k, v] = kv.split("=");
    if (!(k in scale)) {
      die(
        `--set: ${suite.name} has no scale entry ${JSON.stringify(k)}; it has ${
          Object.keys(scale).join(", ")
        }`,
      );
    }
    const n = Number(v);
    if (v === undefined || v.trim() === "" || !Number.isFinite(n)) {
      die(`--set: ${k} expects a number, got ${JSON.stringify(v)}`);
    }
    scale[k] = n;
  }
  return scale;
}

const script = import.meta.filename ?? import.meta.url;
const childArgv = (mode: string[], suiteDir: string, id: string) => [
  Deno.execPath(),
  "run",
  "-A",
  script,
  ...mode,
  suiteDir,
  id,
  ...(backend ? ["--backend", backend] : []),
];

// Ctrl-C: the first stops after the current run has checkpointed, the second kills it.
const stop = new AbortController(), hard = new AbortController();
const onSignal = () => {
  if (stop.signal.aborted) {
    hard.abort();
    console.error("\nkilled; the current run restarts from its last checkpoint next time");
    Deno.exit(EXIT_INTERRUPTED);
  }
  console.error("\nstopping: the current run checkpoints first (Ctrl-C again to kill it)");
  stop.abort();
};
const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
for (const s of signals) Deno.addSignalListener(s, onSignal);

const command = `deno task reproduce ${Deno.args.join(" ")}`;
const machine = await describeMachine();
let exitCode = 0;
for (const suite of suites) {
  if (stop.signal.aborted) break;
  const scale = scaleOf(suite);
  const suiteDir = `${outRoot}/${suite.name}`;
  const specs: RunSpec[] = suite.runs(scale, seeds);
  console.error(`\n== ${suite.name}: ${suite.title}`);
  console.error(
    `   scale: ${Object.entries(scale).map(([k, v]) => `${k} ${v}`).join(", ")}`,
  );
  const done = new Set<string>();
  for (const s of specs) if (await readResult(suiteDir, s.id)) done.add(s.id);
  const todo = specs.filter((s) => !done.has(s.id));
  console.error(
    `   ${specs.length} runs (${seeds.length} seed${
      seeds.length > 1 ? "s" : ""
    }), ${todo.length} to do, in ${suiteDir}/`,
  );
  let estimates: Map<string, number> | undefined;
  if (todo.length && !values["report-only"] && !values["no-estimate"] && (!quick || values.plan)) {
    console.error("   measuring step times (a few steps of each configuration)…");
    const est = await estimateSuite(todo, {
      suiteDir,
      backend: backend ?? "auto",
      log: (l) => console.error(`  ${l}`),
      probe: async (spec) => {
        const base = `${suiteDir}/probes/${spec.id.replaceAll("/", "_")}`;
        await writeFileAtomic(`${base}.spec.json`, JSON.stringify(spec) + "\n");
        const code = await spawnLogged(
          childArgv(["--probe", `${base}.out.json`], suiteDir, `${base}.spec.json`),
          `${suiteDir}/probes/probe.log`,
          { signal: stop.signal, hardSignal: hard.signal },
        );
        if (code !== 0) {
          die(`timing probe of ${spec.id} failed (exit ${code}); see ${suiteDir}/probes/probe.log`);
        }
        return JSON.parse(await Deno.readTextFile(`${base}.out.json`));
      },
    });
    estimates = est.seconds;
    for (const { example, probe: p } of est.probes) {
      console.error(
        `   ${example.replace(/\/seed-\d+$/, "")}: ${p.stepSeconds.toFixed(3)} s/step, first step ${
          p.firstStepSeconds.toFixed(1)
        } s, ${p.evalBatchSeconds.toFixed(3)} s per validation batch, start-up ${
          p.startupSeconds.toFixed(1)
        } s (${p.backend})`,
      );
    }
    const total = [...est.seconds.values()].reduce((a, b) => a + b, 0);
    console.error(
      `   estimate: ${
        formatDuration(total)
      } for ${todo.length} runs (steps × measured step time + evaluations + start-up; load average now ${
        Deno.loadavg()[0].toFixed(2)
      })`,
    );
  }
  if (!estimates && todo.length && !values["report-only"]) {
    console.error(
      `   no timing probes (${
        quick ? "--quick: each run takes seconds" : "--no-estimate"
      }); the ETA follows from the first runs`,
    );
  }
  if (values.plan) {
    for (const s of todo) {
      const e = estimates?.get(s.id);
      console.log(
        `${s.id}  ${s.train.steps} steps${e !== undefined ? `  ~${formatDuration(e)}` : ""}`,
      );
    }
    continue;
  }
  let outcome: Pick<Awaited<ReturnType<typeof runSuite>>, "results" | "failed" | "interrupted"> = {
    results: [],
    failed: [],
    interrupted: false,
  };
  if (values["report-only"]) {
    for (const s of specs) {
      const r = await readResult(suiteDir, s.id);
      if (r) outcome.results.push(r);
    }
  } else {
    outcome = await runSuite({
      suiteDir,
      specs,
      executor: subprocessExecutor((spec, dir) => childArgv(["--run-one"], dir, spec.id)),
      estimate: estimates ? (s) => estimates!.get(s.id) : undefined,
      log: (l) => console.error(`   ${l}`),
      signal: stop.signal,
      hardSignal: hard.signal,
      keepCheckpoints: values["keep-checkpoints"] === true,
    });
  }
  const files = await writeReport(suiteDir, {
    suite,
    scale,
    seeds,
    quick,
    results: outcome.results,
    failed: outcome.failed,
    machine,
    command,
  });
  console.error(`   report: ${files.markdown} (+ ${files.svgs.length} SVG, ${files.json})`);
  if (outcome.failed.length) exitCode = Math.max(exitCode, 1);
  if (outcome.interrupted) exitCode = EXIT_INTERRUPTED;
}
for (const s of signals) Deno.removeSignalListener(s, onSignal);
Deno.exit(exitCode);
