/**
 * `deno task reproduce --quick` as a user runs it (slow tier: MOEJIT_SLOW=1): every suite end to
 * end on the real corpora — the report's files, every planned run finished — then the same
 * command again, which reuses every run; and a suite stopped by SIGINT mid-run, which the same
 * command then completes. The science is not checked here (quick runs train for a few steps).
 */
import { assert, SLOW } from "../helpers.ts";
import { SUITES } from "../../src/repro/suites/index.ts";
import type { RunResult } from "../../src/repro/suite.ts";

const script = new URL("../../examples/reproduce.ts", import.meta.url).pathname;

async function reproduce(args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

for (const suite of SUITES) {
  Deno.test({
    name:
      `reproduce --quick --suite ${suite.name}: report written, every run finished; a rerun reuses them`,
    ignore: !SLOW,
    fn: async () => {
      const out = await Deno.makeTempDir({ prefix: `moejit-reproduce-${suite.name}-` });
      const first = await reproduce(["--suite", suite.name, "--quick", "--out", out]);
      assert.equal(first.code, 0, first.stderr);
      const dir = `${out}/${suite.name}`;
      const md = await Deno.readTextFile(`${dir}/README.md`);
      assert.match(md, /## Claims/);
      assert.match(md, /quick harness check/);
      const json = JSON.parse(await Deno.readTextFile(`${dir}/results.json`));
      const planned = suite.runs(suite.quick, [0, 1]);
      assert.deepEqual(json.runs.map((r: { id: string }) => r.id), planned.map((s) => s.id));
      assert.deepEqual(json.failed, []);
      for (const r of json.runs as RunResult[]) {
        // Each run says what it needs to repeat bit for bit: native threads and BLAS.
        assert.equal(r.native !== undefined, r.backend === "native", `${r.id}: ${r.backend}`);
        if (r.native) assert.ok(r.native.threads >= 1, `${r.id}: ${JSON.stringify(r.native)}`);
      }
      assert.equal(json.claims.length, suite.claims(suite.quick).length);
      for (const c of suite.charts(suite.quick)) await Deno.stat(`${dir}/${c.file}`);
      const again = await reproduce(["--suite", suite.name, "--quick", "--out", out]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(
        again.stderr,
        new RegExp(`${planned.length} runs: ${planned.length} finished earlier, 0 to run`),
      );
    },
  });
}

Deno.test({
  name: "reproduce: SIGINT stops a suite mid-run (exit 130); the same command completes it",
  ignore: !SLOW || Deno.build.os === "windows",
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "moejit-reproduce-stop-" });
    const args = [
      "run",
      "-A",
      script,
      "--suite",
      "grin",
      "--quick",
      "--out",
      out,
      "--set",
      "steps=200",
    ];
    const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" })
      .spawn();
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/\[2\/8\] [^\n]*: running/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    // Wait until the second run is training (its trainer has printed its header), then stop.
    const log = `${out}/grin/runs/top2/sparsemixer-v2/seed-0/log.txt`;
    for (let i = 0; i < 600; i++) {
      if ((await Deno.readTextFile(log).catch(() => "")).includes("moejit ")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGINT");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const status = await child.status;
    assert.equal(status.code, 130, text);
    assert.match(text, /stopped; run the same command again to resume/);
    const rest = await reproduce([
      "--suite",
      "grin",
      "--quick",
      "--out",
      out,
      "--set",
      "steps=200",
    ]);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stderr, /8 runs: 1 finished earlier, 7 to run/);
    // The stopped run resumed from its checkpoint: its result records two sessions.
    const r = JSON.parse(
      await Deno.readTextFile(`${out}/grin/runs/top2/sparsemixer-v2/seed-0/result.json`),
    );
    assert.equal(r.sessions, 2);
  },
});
