/**
 * Checkpoints survive kills: every state a kill can leave mid-save (`dir`, `dir.partial`,
 * `dir.old`, complete or not) loads the newest complete copy, and a writer process SIGKILLed at
 * chosen and at random points — during writes, between the renames of the swap, during the
 * recovery of an earlier kill — never loses a checkpoint it reported saved. The fast tier kills
 * a few times at the critical points; the slow tier (MOEJIT_SLOW=1) kills 60 times.
 */
import * as io from "../../src/io/index.ts";
import { setBackend } from "../../src/backend.ts";
import { modelConfig, parameterShapes } from "../../src/nn/config.ts";
import type { Tensor } from "../../src/tensor.ts";
import { assert, prng, SLOW } from "../helpers.ts";
import { CRASH_CONFIG, paramsAt } from "./crash_writer.ts";
import { randomParams, tempDir } from "./util.ts";

setBackend("cpu");

const small = modelConfig({
  nLayers: 1,
  dModel: 16,
  nHeads: 2,
  experts: 4,
  dFf: 8,
  vocabSize: 32,
  maxSeqLen: 16,
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyDir(`${from}/${e.name}`, `${to}/${e.name}`);
    else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function stepOf(dir: string): Promise<number> {
  const ck = await io.loadCheckpoint(dir);
  return (ck.trainingState!.json as { step: number }).step;
}

Deno.test("checkpoint crash states: every state a kill can leave loads the newest complete copy", async () => {
  const { dir: root, cleanup } = await tempDir();
  try {
    // Two complete checkpoints (steps 1 and 2) to assemble the states from.
    const save = (dir: string, step: number) =>
      io.saveCheckpoint(dir, {
        config: small,
        params: randomParams(small, step).params,
        trainingState: { json: { step } },
      });
    await save(`${root}/a`, 1);
    await save(`${root}/b`, 2);
    // An incomplete copy: files written, manifest not yet (a kill while writing .partial).
    await copyDir(`${root}/b`, `${root}/b-unfinished`);
    await Deno.remove(`${root}/b-unfinished/manifest.json`);
    // A copy half removed (a kill while `.old` was being deleted).
    await copyDir(`${root}/a`, `${root}/a-half-removed`);
    await Deno.remove(`${root}/a-half-removed/model.safetensors`);
    // A checkpoint written before manifests existed (no manifest, no training state).
    await io.saveCheckpoint(`${root}/legacy`, {
      config: small,
      params: randomParams(small).params,
    });
    await Deno.remove(`${root}/legacy/manifest.json`);

    type State = { D?: string; P?: string; O?: string };
    const states: [string, State, number | "legacy" | RegExp][] = [
      ["settled", { D: "a" }, 1],
      ["killed while writing .partial", { D: "a", P: "b-unfinished" }, 1],
      ["killed after .partial was written", { D: "a", P: "b" }, 1],
      ["killed between the two renames", { O: "a", P: "b" }, 2],
      ["killed between the two renames, .partial damaged", { O: "a", P: "b-unfinished" }, 1],
      ["killed while removing .old", { D: "b", O: "a-half-removed" }, 2],
      ["killed before removing .old", { D: "b", O: "a" }, 2],
      ["only .old (an older writer's interrupted swap)", { O: "a" }, 1],
      ["only a complete .partial", { P: "b" }, 2],
      ["an older writer's .old without a manifest", { O: "legacy" }, "legacy"],
      [
        "only an incomplete .partial",
        { P: "b-unfinished" },
        /checkpoint directory .*\/ck does not exist \(.*ck\.partial is incomplete \(a save was interrupted while writing it\)\)/,
      ],
    ];
    for (const [what, state, want] of states) {
      const ck = `${root}/${what.replace(/\W+/g, "-")}/ck`;
      if (state.D) await copyDir(`${root}/${state.D}`, ck);
      if (state.P) await copyDir(`${root}/${state.P}`, `${ck}.partial`);
      if (state.O) await copyDir(`${root}/${state.O}`, `${ck}.old`);
      if (want instanceof RegExp) {
        await assert.rejects(() => io.loadCheckpoint(ck), want, what);
        continue;
      }
      const loaded = await io.loadCheckpoint(ck);
      if (want === "legacy") assert.equal(loaded.trainingState, null, what);
      else assert.equal((loaded.trainingState!.json as { step: number }).step, want, what);
      assert.equal(state.D === undefined, loaded.recovered.length > 0, `${what}: notes`);
      // Settled: only `ck` is left, and the next save replaces it.
      assert.ok(!(await exists(`${ck}.partial`)) && !(await exists(`${ck}.old`)), what);
      await save(ck, 3);
      assert.equal(await stepOf(ck), 3, `${what}: saved after recovery`);
    }
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint crash states: a damaged checkpoint next to a complete older copy is named, and kept", async () => {
  const { dir: root, cleanup } = await tempDir();
  try {
    const ck = `${root}/ck`;
    const save = (step: number) =>
      io.saveCheckpoint(ck, {
        config: small,
        params: randomParams(small, step).params,
        trainingState: { json: { step } },
      });
    await save(1);
    await copyDir(ck, `${root}/step-1`);
    await save(2);
    await copyDir(`${root}/step-1`, `${ck}.old`);
    const model = await Deno.readFile(`${ck}/model.safetensors`);
    model[model.length - 1] ^= 1;
    await Deno.writeFile(`${ck}/model.safetensors`, model);
    await assert.rejects(
      () => io.loadCheckpoint(ck),
      /model\.safetensors is corrupt: .*ck\.old is a complete earlier copy \(left in place\)/,
    );
    // A save does not discard either copy; it says what to do.
    await assert.rejects(
      () => save(3),
      /saveCheckpoint: .*ck does not check out as complete and .*ck\.old is a complete earlier copy .*move one of them away/,
    );
    assert.ok(await exists(`${ck}.old/manifest.json`));
    // A directory of other files is not replaced by a save.
    await Deno.mkdir(`${root}/notes`);
    await Deno.writeTextFile(`${root}/notes/todo.txt`, "keep");
    await assert.rejects(
      () =>
        io.saveCheckpoint(`${root}/notes`, { config: small, params: randomParams(small).params }),
      /saveCheckpoint: .*notes holds files that are not a checkpoint \(todo\.txt\); a save replaces the directory whole/,
    );
    assert.equal(await Deno.readTextFile(`${root}/notes/todo.txt`), "keep");
  } finally {
    await cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// Real kills of a writer process.

const WRITER = new URL("./crash_writer.ts", import.meta.url).pathname;

interface Outcome {
  lines: string[];
  killed: boolean;
  /** The last file-system operation started before the kill, e.g. "rename …/ck.partial". */
  lastOp?: string;
}

/** Runs the writer for `saves` saves; `kill` as crash_writer.ts takes it, or a delay in ms. */
async function runWriter(dir: string, saves: number, kill?: string | number): Promise<Outcome> {
  const args = ["run", "-A", WRITER, dir, String(saves)];
  if (typeof kill === "string") args.push(kill);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    env: { MOEJIT_BACKEND: "cpu" },
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    let buf = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (line === "ready" && typeof kill === "number") {
          timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch { /* already exited */ }
          }, kill);
        }
      }
    }
    if (timer !== undefined) clearTimeout(timer);
  })();
  const [status, err] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
    reading,
  ]);
  const killed = status.signal === "SIGKILL";
  if (!killed && status.code !== 0) {
    throw new Error(`writer exited ${status.code}:\n${lines.join("\n")}\n${err}`);
  }
  const ops = lines.filter((l) => l.startsWith("op "));
  return { lines, killed, lastOp: ops.at(-1)?.replace(/^op \d+ /, "") };
}

/** Copies `ck` and its siblings aside and loads the copy (recovery there, not in `ck`). */
async function checkSnapshot(ck: string, scratch: string): Promise<number> {
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  for (const suffix of ["", ".partial", ".old"]) {
    if (await exists(ck + suffix)) await copyDir(ck + suffix, `${scratch}/ck${suffix}`);
  }
  const loaded = await io.loadCheckpoint(`${scratch}/ck`);
  const step = (loaded.trainingState!.json as { step: number }).step;
  const want = paramsAt(step);
  const got = loaded.params as Record<string, unknown>;
  for (const [path] of parameterShapes(CRASH_CONFIG)) {
    const t = path.split(".").reduce((x: unknown, k) => (x as Record<string, unknown>)[k], got);
    const v = await (t as Tensor).data();
    assert.ok(v.every((x, i) => x === want[path][i]), `${path} is the step-${step} value`);
  }
  return step;
}

/**
 * Runs the writer again and again, choosing each run's kill with `choose` (told whether the last
 * kill left `.partial`/`.old` behind), until `kills` runs have been SIGKILLed. After each run it
 * checks that the checkpoint on disk — and what the next run loads — is at least the last step
 * a run reported saved, with that step's exact parameters. Returns what the kills hit.
 */
async function killSweep(
  kills: number,
  choose: (run: number, siblings: boolean) => string | number,
) {
  const { dir: root, cleanup } = await tempDir();
  const hits = { inRecovery: 0, betweenRenames: 0, whileWriting: 0, notKilled: 0 };
  try {
    const ck = `${root}/ck`;
    await runWriter(ck, 1);
    let saved = 1, killed = 0;
    for (let i = 0; killed < kills; i++) {
      assert.ok(i < 3 * kills, `only ${killed} of ${i} runs were killed`);
      const siblings = (await exists(`${ck}.partial`)) || (await exists(`${ck}.old`));
      const kill = choose(i, siblings);
      const out = await runWriter(ck, 4, kill);
      const what = `run ${i} (kill ${kill}; last op ${out.lastOp ?? "none"})`;
      const loadedLine = out.lines.find((l) => l.startsWith("loaded "));
      if (loadedLine) {
        const loaded = Number(loadedLine.slice(7));
        assert.ok(
          loaded === saved || loaded === saved + 1,
          `${what}: loaded ${loaded}, saved ${saved}`,
        );
        // A save that finished writing but was killed before it said so is recovered: from
        // here on it is the checkpoint that must not be lost.
        saved = loaded;
      }
      const savedLines = out.lines.filter((l) => l.startsWith("saved ")).map((l) =>
        Number(l.slice(6))
      );
      if (savedLines.length) saved = savedLines.at(-1)!;
      if (!out.killed) hits.notKilled++;
      else {
        killed++;
        if (
          !loadedLine && siblings && out.lastOp && /^(rename|remove|open|mkdir)/.test(out.lastOp)
        ) {
          hits.inRecovery++;
        } else if (out.lastOp?.startsWith("rename") && out.lastOp.endsWith(".partial")) {
          hits.betweenRenames++;
        } else hits.whileWriting++;
      }
      const onDisk = await checkSnapshot(ck, `${root}/scratch`);
      assert.ok(
        onDisk === saved || onDisk === saved + 1,
        `${what}: on disk ${onDisk}, saved ${saved}`,
      );
    }
    // After all that, a run without a kill loads and saves normally.
    const last = await runWriter(ck, 1);
    assert.ok(last.lines.includes(`saved ${await stepOf(ck)}`));
    return hits;
  } finally {
    await cleanup();
  }
}

Deno.test("checkpoint crash: a writer killed between the renames, during recovery and at random loses nothing", async () => {
  const r = prng(12);
  const plan = [
    "rename-partial", // `ck` renamed to `ck.old`, `ck.partial` not yet to `ck`
    "recovery:1", // the next run dies before its recovery renames `.partial` in
    "recovery:4", // … and after it, before `.old` is removed
    "op:30", // inside the second save's writes
  ];
  const hits = await killSweep(5, (i) => plan[i] ?? Math.floor(r() * 40));
  assert.ok(hits.betweenRenames >= 1 && hits.inRecovery >= 2, JSON.stringify(hits));
});

Deno.test({
  name: "checkpoint crash: 60 SIGKILLs at random points (writes, swap, recovery) lose nothing",
  ignore: !SLOW,
}, async () => {
  const r = prng(2024);
  const hits = await killSweep(60, (i, siblings) => {
    // After a kill that left siblings, half of the runs die inside their own recovery.
    if (siblings && r() < 0.5) return `recovery:${1 + Math.floor(r() * 4)}`;
    if (i % 3 === 0) return "rename-partial";
    if (i % 3 === 1) return `op:${1 + Math.floor(r() * 90)}`;
    return Math.floor(r() * 50); // ms after the writer is ready: a kill from outside
  });
  console.log(`kills: ${JSON.stringify(hits)}`);
  assert.ok(hits.inRecovery >= 5, JSON.stringify(hits));
  assert.ok(hits.betweenRenames >= 5, JSON.stringify(hits));
  assert.ok(hits.whileWriting >= 10, JSON.stringify(hits));
});
