/**
 * Child processes of the suite runner: the log fills while the child runs, exit codes come back,
 * a stop request reaches the child as SIGINT, a hard stop kills it, and the executor turns exit
 * codes into success, RunInterrupted or an error quoting the log's end.
 */
import { assert } from "../helpers.ts";
import { EXIT_INTERRUPTED, spawnLogged, subprocessExecutor } from "../../src/repro/subprocess.ts";
import { RunInterrupted } from "../../src/repro/interrupted.ts";
import { fakeSpec } from "./fake.ts";

const deno = (code: string) => [Deno.execPath(), "eval", code];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("spawnLogged: the log fills while the child runs; the exit code comes back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-spawn-" });
  const log = `${dir}/sub/log.txt`;
  const running = spawnLogged(
    deno(
      "console.error('first'); console.log('out'); await new Promise((r) => setTimeout(r, 1500)); Deno.exit(3)",
    ),
    log,
  );
  let seen = "";
  for (let i = 0; i < 50 && !seen.includes("first"); i++) {
    await sleep(100);
    seen = await Deno.readTextFile(log).catch(() => "");
  }
  assert.match(seen, /first/, "the first line is in the log before the child ends");
  assert.equal(await running, 3);
  const text = await Deno.readTextFile(log);
  assert.match(text, /first/);
  assert.match(text, /out/);
});

Deno.test("spawnLogged: a stop sends SIGINT (the child exits 130 itself); a hard stop kills it", async () => {
  if (Deno.build.os === "windows") return;
  const dir = await Deno.makeTempDir({ prefix: "moejit-spawn-" });
  const stop = new AbortController();
  const graceful = spawnLogged(
    deno(
      "Deno.addSignalListener('SIGINT', () => { console.error('checkpointing'); Deno.exit(130); }); console.error('ready'); await new Promise((r) => setTimeout(r, 20000));",
    ),
    `${dir}/a.txt`,
    { signal: stop.signal },
  );
  for (
    let i = 0;
    i < 100 && !(await Deno.readTextFile(`${dir}/a.txt`).catch(() => "")).includes("ready");
    i++
  ) {
    await sleep(100);
  }
  stop.abort();
  assert.equal(await graceful, EXIT_INTERRUPTED);
  assert.match(await Deno.readTextFile(`${dir}/a.txt`), /checkpointing/);
  const hard = new AbortController();
  const stubborn = spawnLogged(
    deno(
      "Deno.addSignalListener('SIGINT', () => {}); await new Promise((r) => setTimeout(r, 20000));",
    ),
    `${dir}/b.txt`,
    { hardSignal: hard.signal },
  );
  await sleep(500);
  const t0 = performance.now();
  hard.abort();
  assert.notEqual(await stubborn, 0);
  assert.ok(performance.now() - t0 < 5000, "killed at once");
});

Deno.test("subprocessExecutor: exit 0 is success, 130 is RunInterrupted, others quote the log", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-spawn-" });
  const ctx = {
    suiteDir: dir,
    signal: new AbortController().signal,
    hardSignal: new AbortController().signal,
  };
  const spec = fakeSpec("g", "a", 0);
  await subprocessExecutor(() => deno("console.error('fine')")).run(spec, ctx);
  await assert.rejects(
    () => subprocessExecutor(() => deno("Deno.exit(130)")).run(spec, ctx),
    RunInterrupted,
  );
  await assert.rejects(
    () =>
      subprocessExecutor(() => deno("console.error('the loss is NaN at step 7'); Deno.exit(1)"))
        .run(spec, ctx),
    /exit code 1; the end of .*runs\/g\/a\/seed-0\/log\.txt:\n(.|\n)*the loss is NaN at step 7/,
  );
});
