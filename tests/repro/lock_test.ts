/**
 * Lock files: a directory held by a live process is refused (naming it), a lock whose process
 * has gone is taken over, and a process releases only its own lock — so two suite runners, or a
 * runner and a child left over from a killed one, never train the same run at once.
 */
import { assert } from "../helpers.ts";
import { acquireLock, releaseLock } from "../../src/repro/lock.ts";
import { runSuite } from "../../src/repro/runner.ts";

const linux = Deno.build.os === "linux";

function sleeper() {
  return new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
}

Deno.test("acquireLock: taken, re-entered by its holder, released", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-lock-" });
  const path = `${dir}/sub/.lock`;
  await acquireLock(path, "test");
  const info = JSON.parse(await Deno.readTextFile(path));
  assert.deepEqual([info.pid, info.what], [Deno.pid, "test"]);
  await acquireLock(path, "test again");
  await releaseLock(path);
  assert.ok(!(await Deno.stat(path).then(() => true, () => false)));
  await releaseLock(path); // releasing twice is harmless
});

Deno.test({
  name: "acquireLock: a live holder is named; a dead one's lock is taken over; others' locks stay",
  ignore: !linux,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "moejit-lock-" });
    const path = `${dir}/.lock`;
    const other = sleeper();
    const theirs = { pid: other.pid, started: "2025-01-01T00:00:00Z", what: "another runner" };
    await Deno.writeTextFile(path, JSON.stringify(theirs));
    await assert.rejects(
      () => acquireLock(path, "me"),
      new RegExp(
        `reproduce: .*\\.lock is held by process ${other.pid} \\(another runner, since 2025-01-01T00:00:00Z\\)`,
      ),
    );
    await releaseLock(path);
    assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, other.pid, "not ours to release");
    await assert.rejects(
      () =>
        runSuite({
          suiteDir: dir,
          specs: [],
          executor: { run: () => Promise.resolve() },
          log: () => {},
        }),
      /is held by process/,
    );
    other.kill("SIGKILL");
    await other.status;
    await acquireLock(path, "me");
    assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, Deno.pid);
    await releaseLock(path);
  },
});
