/**
 * The suite runner on fabricated runs (no training): finished runs are never run again, a
 * changed configuration is refused, an unfinished run with another configuration starts afresh,
 * failures are reported while the other runs go on (and the runs needing them are skipped), a
 * stop ends the suite and the next call resumes where it stopped, checkpoints go once nothing
 * needs them, and every run gets progress lines with an ETA.
 */
import { assert } from "../helpers.ts";
import { type Executor, runSuite } from "../../src/repro/runner.ts";
import { RunInterrupted } from "../../src/repro/interrupted.ts";
import {
  checkpointDir,
  readResult,
  runDir,
  writeResult,
  writeSpec,
} from "../../src/repro/layout.ts";
import type { RunSpec } from "../../src/repro/suite.ts";
import { fakeResult, fakeSpec } from "./fake.ts";

/** An executor that writes a fake result (and a fake checkpoint), recording what it ran. */
function fakeExecutor(o: { fail?: Set<string>; stopAt?: string } = {}) {
  const ran: string[] = [];
  const exec: Executor = {
    async run(spec, ctx) {
      ran.push(spec.id);
      await Deno.mkdir(checkpointDir(ctx.suiteDir, spec.id), { recursive: true });
      await Deno.writeTextFile(`${checkpointDir(ctx.suiteDir, spec.id)}/model.safetensors`, "x");
      if (o.stopAt === spec.id) throw new RunInterrupted(spec.id, 3);
      if (o.fail?.has(spec.id)) throw new Error(`exit code 1; ${spec.id} diverged`);
      await writeResult(ctx.suiteDir, fakeResult(spec, 5 + spec.seed));
    },
  };
  return { exec, ran };
}

const specs = (): RunSpec[] =>
  [0, 1].flatMap((seed) => [fakeSpec("g", "a", seed), fakeSpec("g", "b", seed)]);

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

Deno.test("runSuite: runs everything once; a second call reuses every result", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const lines: string[] = [];
  const first = fakeExecutor();
  const out = await runSuite({
    suiteDir: dir,
    specs: specs(),
    executor: first.exec,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(first.ran, ["g/a/seed-0", "g/b/seed-0", "g/a/seed-1", "g/b/seed-1"]);
  assert.deepEqual(out.ran, first.ran);
  assert.deepEqual([out.results.length, out.failed.length, out.interrupted], [4, 0, false]);
  assert.deepEqual(out.results.map((r) => r.ppl), [5, 5, 6, 6]);
  assert.equal(lines[0], "4 runs: 0 finished earlier, 4 to run");
  assert.ok(
    lines.some((l) => /^\[2\/4\] g\/b\/seed-0: done in .*val ppl 5\.000.*suite ETA/.test(l)),
    lines.join("\n"),
  );
  assert.match(lines.at(-1)!, /suite ETA done$/);
  // The spec is written next to the result, and checkpoints nobody needs are gone.
  assert.ok(await exists(`${runDir(dir, "g/a/seed-0")}/spec.json`));
  assert.ok(!(await exists(checkpointDir(dir, "g/a/seed-0"))));
  const second = fakeExecutor();
  const again = await runSuite({
    suiteDir: dir,
    specs: specs(),
    executor: second.exec,
    log: () => {},
  });
  assert.deepEqual(second.ran, []);
  assert.deepEqual(again.reused.length, 4);
  assert.deepEqual(again.results.map((r) => r.id), out.results.map((r) => r.id));
});

Deno.test("runSuite: a finished run with another configuration is refused, naming the difference", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  await runSuite({ suiteDir: dir, specs: specs(), executor: fakeExecutor().exec, log: () => {} });
  const changed = specs().map((s) => ({ ...s, train: { ...s.train, steps: 200 } }));
  await assert.rejects(
    () => runSuite({ suiteDir: dir, specs: changed, executor: fakeExecutor().exec, log: () => {} }),
    /reproduce: run g\/a\/seed-0 in .* finished with another configuration \(train\.steps: 100 then, 200 now\); delete that directory or choose another --out/,
  );
});

Deno.test("runSuite: an unfinished run with another configuration starts afresh", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const old = { ...fakeSpec("g", "a", 0), train: { ...fakeSpec("g", "a", 0).train, lr: 1 } };
  await writeSpec(dir, old);
  await Deno.mkdir(checkpointDir(dir, old.id), { recursive: true });
  await Deno.writeTextFile(`${runDir(dir, old.id)}/stale.txt`, "from the old configuration");
  const lines: string[] = [];
  const f = fakeExecutor();
  await runSuite({
    suiteDir: dir,
    specs: [fakeSpec("g", "a", 0)],
    executor: f.exec,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(f.ran, ["g/a/seed-0"]);
  assert.ok(!(await exists(`${runDir(dir, old.id)}/stale.txt`)));
  assert.ok(
    lines.some((l) =>
      /another configuration \(train\.lr: 1 then, 0\.003 now\); starting it afresh/.test(l)
    ),
    lines.join("\n"),
  );
});

Deno.test("runSuite: a failed run is reported, the others go on, and runs that need it are skipped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const base = fakeSpec("g", "seed", 0);
  const child = fakeSpec("g", "child", 0, { init: { kind: "continue", from: base.id, model: {} } });
  const other = fakeSpec("g", "other", 0);
  const f = fakeExecutor({ fail: new Set([base.id]) });
  const lines: string[] = [];
  const out = await runSuite({
    suiteDir: dir,
    specs: [base, child, other],
    executor: f.exec,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(f.ran, [base.id, other.id]);
  assert.deepEqual(out.failed.map((x) => x.id), [base.id, child.id]);
  assert.match(out.failed[0].error, /diverged/);
  assert.match(out.failed[1].error, /needs run g\/seed\/seed-0, which did not finish/);
  assert.deepEqual(out.results.map((r) => r.id), [other.id]);
  assert.ok(lines.some((l) => l.includes("g/seed/seed-0: FAILED")));
  // The next call retries the failed run, then its dependent.
  const g = fakeExecutor();
  const again = await runSuite({
    suiteDir: dir,
    specs: [base, child, other],
    executor: g.exec,
    log: () => {},
  });
  assert.deepEqual(g.ran, [base.id, child.id]);
  assert.equal(again.results.length, 3);
});

Deno.test("runSuite: a stopped run ends the suite; the next call resumes with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const f = fakeExecutor({ stopAt: "g/b/seed-0" });
  const out = await runSuite({ suiteDir: dir, specs: specs(), executor: f.exec, log: () => {} });
  assert.equal(out.interrupted, true);
  assert.deepEqual(f.ran, ["g/a/seed-0", "g/b/seed-0"]);
  assert.deepEqual(out.results.map((r) => r.id), ["g/a/seed-0"]);
  assert.equal(await readResult(dir, "g/b/seed-0"), null);
  // The stopped run's checkpoint is kept for its resumption.
  assert.ok(await exists(checkpointDir(dir, "g/b/seed-0")));
  const g = fakeExecutor();
  const rest = await runSuite({ suiteDir: dir, specs: specs(), executor: g.exec, log: () => {} });
  assert.deepEqual(g.ran, ["g/b/seed-0", "g/a/seed-1", "g/b/seed-1"]);
  assert.deepEqual([rest.reused, rest.interrupted], [["g/a/seed-0"], false]);
  // A stop requested before the first run: nothing runs.
  const ac = new AbortController();
  ac.abort();
  const none = fakeExecutor();
  const dir2 = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const stopped = await runSuite({
    suiteDir: dir2,
    specs: specs(),
    executor: none.exec,
    log: () => {},
    signal: ac.signal,
  });
  assert.deepEqual([none.ran, stopped.interrupted], [[], true]);
});

Deno.test("runSuite: a checkpoint stays while a run that starts from it has not finished", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const base = fakeSpec("g", "seed", 0);
  const child = fakeSpec("g", "child", 0, { init: { kind: "continue", from: base.id, model: {} } });
  const seen: boolean[] = [];
  const f = fakeExecutor();
  const exec: Executor = {
    async run(spec, ctx) {
      if (spec.id === child.id) seen.push(await exists(checkpointDir(ctx.suiteDir, base.id)));
      await f.exec.run(spec, ctx);
    },
  };
  await runSuite({ suiteDir: dir, specs: [base, child], executor: exec, log: () => {} });
  assert.deepEqual(seen, [true], "the seed's checkpoint existed when the child started");
  assert.ok(!(await exists(checkpointDir(dir, base.id))), "and went once the child had finished");
  const keep = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  await runSuite({
    suiteDir: keep,
    specs: [base],
    executor: fakeExecutor().exec,
    log: () => {},
    keepCheckpoints: true,
  });
  assert.ok(await exists(checkpointDir(keep, base.id)));
});

Deno.test("runSuite: the ETA follows the estimates, scaled by how long runs really took", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const lines: string[] = [];
  await runSuite({
    suiteDir: dir,
    specs: specs(),
    executor: fakeExecutor().exec,
    estimate: () => 3600,
    log: (l) => lines.push(l),
  });
  assert.ok(lines.some((l) => /g\/a\/seed-0: running \(about 1h00m\)/.test(l)), lines.join("\n"));
  // Fake runs take milliseconds: the calibrated ETA for 3 more "hour-long" runs is seconds.
  const eta = lines.find((l) => l.includes("[1/4] g/a/seed-0: done"))!;
  assert.match(eta, /suite ETA \d+s for 3 runs$/);
});

Deno.test("runSuite: duplicate ids and needs that come later are errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-runner-" });
  const a = fakeSpec("g", "a", 0);
  await assert.rejects(
    () => runSuite({ suiteDir: dir, specs: [a, a], executor: fakeExecutor().exec, log: () => {} }),
    /reproduce: two runs have the id "g\/a\/seed-0"/,
  );
  const child = fakeSpec("g", "child", 0, { init: { kind: "continue", from: a.id, model: {} } });
  await assert.rejects(
    () =>
      runSuite({ suiteDir: dir, specs: [child, a], executor: fakeExecutor().exec, log: () => {} }),
    /run g\/child\/seed-0 needs run g\/a\/seed-0, which does not come before it/,
  );
  await assert.rejects(
    () =>
      runSuite({
        suiteDir: dir,
        specs: [fakeSpec("G", "a", 0)],
        executor: fakeExecutor().exec,
        log: () => {},
      }),
    /run id "G\/a\/seed-0" is not a relative path/,
  );
});
