/**
 * Ctrl-C is honoured in every phase of a command-line run: SIGINT is sent while the data loads,
 * while the first step compiles, while training, during an evaluation and while a checkpoint is
 * written; each time the run ends within seconds with status 130, says where it stopped, leaves
 * a checkpoint that loads at the step it names (or, before the first step, nothing), and prints
 * no stack trace. The fast tier sends it while training and while checkpointing on the
 * interpreter (where a loop that never yields to the event loop once ignored it) and on the native
 * backend (whose steps run on a native thread); the slow tier (MOEJIT_SLOW=1) covers every phase
 * on every backend.
 */
import * as mj from "../../mod.ts";
import { assert, SLOW } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import { cliDir, errorLines, GRIN, tinyFlags } from "./cli_util.ts";
const { dir, corpus } = await cliDir("moejit-sigint-");
// A corpus large enough that loading it takes a noticeable time (tens of MB).
const big = `${dir}/big.txt`;
await Deno.writeTextFile(big, (await Deno.readTextFile(corpus)).repeat(3000));

interface Phase {
  name: string;
  /** Flags beyond the tiny run's. */
  flags: (out: string) => string[];
  /** When to send SIGINT: a stderr line matching this, then `delayMs`, or a path appearing. */
  when: { line: RegExp; delayMs?: number } | { path: (out: string) => string; after: RegExp };
  /** What the run says, and the step its checkpoint holds (null: nothing written). */
  says: RegExp;
  checkpoint: "none" | "named";
}

const PHASES: Phase[] = [
  {
    name: "while the data loads",
    flags: () => ["--data", big, "--steps", "50"],
    when: { line: /^loading / },
    says: /^interrupted \(Ctrl-C\) while loading the data, before step 1: nothing was written$/m,
    checkpoint: "none",
  },
  {
    name: "while the first step compiles",
    flags: () => ["--steps", "50"],
    when: { line: /^compiling the training step/ },
    says: /^interrupted \(Ctrl-C\) while compiling after step (1): checkpoint written to /m,
    checkpoint: "named",
  },
  {
    name: "while training",
    flags: () => ["--steps", "100000", "--log-every", "1"],
    when: { line: /^step\s+3\/100000/ },
    says: /^interrupted \(Ctrl-C\) while training after step (\d+): checkpoint written to /m,
    checkpoint: "named",
  },
  {
    name: "during an evaluation",
    // The large corpus, whose validation split holds thousands of batches.
    flags: () => [
      "--data",
      big,
      "--steps",
      "50",
      "--log-every",
      "1",
      "--eval-every",
      "4",
      "--eval-batches",
      "3000",
    ],
    when: { line: /^step\s+3\/50/, delayMs: 400 },
    says: /^interrupted \(Ctrl-C\) during evaluation after step (4): checkpoint written to /m,
    checkpoint: "named",
  },
  {
    name: "while a checkpoint is written",
    // A wider model, so that writing its checkpoint takes a while.
    flags: () => ["--steps", "50", "--checkpoint-every", "2", "--d-model", "192", "--d-ff", "192"],
    when: { path: (out) => `${out}/checkpoint.partial`, after: /^compiling/ },
    says:
      /^interrupted \(Ctrl-C\) while writing a checkpoint after step (2): checkpoint written to /m,
    checkpoint: "named",
  },
];

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Runs the CLI, sends SIGINT when `phase.when` says, and returns what the run left. */
async function interrupt(phase: Phase, backend: mj.BackendName, out: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GRIN, ...tinyFlags(corpus, backend), ...phase.flags(out), "--out", out],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let sentAt = 0;
  const send = () => {
    if (sentAt) return;
    sentAt = performance.now();
    try {
      child.kill("SIGINT");
    } catch { /* exited already */ }
  };
  const when = phase.when;
  let stderr = "";
  let watching = false;
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        if ("line" in when && when.line.test(line)) {
          if (when.delayMs) setTimeout(send, when.delayMs);
          else send();
        }
        if ("path" in when && when.after.test(line)) watching = true;
      }
    }
  })();
  const polling = (async () => {
    if (!("path" in when)) return;
    const target = when.path(out);
    const deadline = performance.now() + 120_000;
    while (!sentAt && performance.now() < deadline) {
      if (watching && (await exists(target))) send();
      else await new Promise((r) => setTimeout(r, 1));
    }
  })();
  const stdout = new Response(child.stdout).text();
  const status = await child.status;
  await Promise.all([reading, polling]);
  return {
    status,
    stderr,
    stdout: await stdout,
    secondsAfterSignal: (performance.now() - sentAt) / 1000,
  };
}

async function checkPhase(phase: Phase, backend: mj.BackendName) {
  const out = `${dir}/${backend}-${phase.name.replace(/\W+/g, "-")}`;
  const r = await interrupt(phase, backend, out);
  const lines = errorLines(r.stderr).join("\n");
  assert.equal(r.status.code, 130, `exit status ${r.status.code}\n${lines}`);
  assert.ok(r.secondsAfterSignal < 60, `ended ${r.secondsAfterSignal.toFixed(1)} s after SIGINT`);
  assert.ok(!/^\s+at /m.test(r.stderr), `no stack trace:\n${lines}`);
  const m = lines.match(phase.says);
  assert.ok(m, `expected ${phase.says} in:\n${lines}`);
  if (phase.checkpoint === "none") {
    assert.equal(await exists(`${out}/checkpoint`), false);
    return;
  }
  const ck = await mj.io.loadCheckpoint(`${out}/checkpoint`);
  const step = (ck.trainingState!.json as { step: number }).step;
  assert.equal(step, Number(m[1]), "the checkpoint holds the step the run names");
  const rows = await mj.io.readMetrics(`${out}/metrics.jsonl`);
  assert.ok(
    rows.every((row) => (row.step as number) <= step),
    "nothing logged past the checkpoint",
  );
}

const FAST = ["while training", "while a checkpoint is written"];

for (const phase of PHASES) {
  const name = `SIGINT ${phase.name}: the run stops promptly, says where, status 130`;
  const fast = FAST.includes(phase.name);
  Deno.test({ name: `cpu: ${name}`, ignore: !(fast || SLOW) }, () => checkPhase(phase, "cpu"));
  // A WebGPU process compiles its pipelines for several seconds: slow tier.
  gpuTest(name, () => checkPhase(phase, backend()), { only: "webgpu", slow: true });
  gpuTest(name, () => checkPhase(phase, backend()), { only: "native", slow: !fast });
}
