/**
 * Errors a user can act on: every flag reads `-1` after a space as it reads `--flag=-1` (and
 * rejects it with the same one-line message), NaN prints as NaN, and an unusable `--out`, a
 * binary `--data` file and `--min-lr` above `--lr` end the run with one line and a non-zero
 * status, never a stack trace — from the command line and from `mj.train.train`.
 */
import * as mj from "../../mod.ts";
import { CliError, parseCli, usage } from "../../src/train/cli.ts";
import { formatValue } from "../../src/errors.ts";
import { assert } from "../helpers.ts";
import { cli, cliDir, errorLines, tinyFlags } from "./cli_util.ts";

const { dir, corpus } = await cliDir("moejit-cli-errors-");
const PRESET = { script: "examples/grin.ts", description: "test", model: { topK: 2 } };

/** What parsing does with `args`: the options, or the error's message. */
function parsed(args: string[]): unknown {
  try {
    return parseCli(args, PRESET);
  } catch (e) {
    assert.ok(e instanceof CliError, `${args.join(" ")}: ${e}`);
    return `error: ${e.message}`;
  }
}

Deno.test("cli: every flag reads `--flag -1` as `--flag=-1`; numeric flags reject it in one line", () => {
  const flags = [...usage(PRESET).matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1]);
  assert.ok(flags.length > 25 && flags.includes("steps") && flags.includes("min-lr"));
  for (const flag of flags) {
    if (flag === "help") continue;
    const spaced = parsed([`--${flag}`, "-1"]);
    assert.deepEqual(spaced, parsed([`--${flag}=-1`]), `--${flag}`);
    assert.ok(
      typeof spaced !== "string" || !spaced.includes("ambiguous"),
      `--${flag}: ${spaced}`,
    );
    if (typeof spaced === "string" && /expects|must be/.test(spaced)) {
      assert.match(
        spaced,
        new RegExp(
          `^error: --${flag} must be ((an integer|a finite number) [≥>] \\d+.*, got -1|true or false, got "-1")$`,
        ),
      );
    }
  }
  assert.equal(parsed(["--steps", "-1"]), "error: --steps must be an integer ≥ 1, got -1");
  assert.equal(parsed(["--lr", "-1"]), "error: --lr must be a finite number > 0, got -1");
  assert.equal(parsed(["--layers", "-1"]), "error: --layers must be an integer ≥ 1, got -1");
  assert.equal(
    parsed(["--seed", "-1"]),
    "error: --seed must be an integer ≥ 0 and ≤ 4294967295, got -1",
  );
  // A string flag takes "-1" as its value either way (and the run names it later).
  assert.deepEqual(
    (parsed(["--data", "-1"]) as { options: mj.train.TrainOptions }).options.data,
    "-1",
  );
  // A value-taking flag followed by another flag is still a missing value, not a value.
  assert.match(String(parsed(["--out", "--steps", "3"])), /^error: /);
  assert.equal(
    parsed(["--min-lr", "10", "--lr", "0.003"]),
    "error: --min-lr 10 is above --lr 0.003: the learning rate decays from --lr to --min-lr",
  );
  assert.equal(
    parsed(["--min-lr", "0.01"]),
    "error: --min-lr 0.01 is above --lr 0.003 (the default): the learning rate decays from --lr to --min-lr",
  );
});

Deno.test("cli: NaN in a value prints as NaN, not null", async () => {
  assert.equal(
    formatValue({ lr: NaN, s: [1, -Infinity], u: undefined }),
    '{"lr":NaN,"s":[1,-Infinity],"u":undefined}',
  );
  assert.equal(formatValue('a"b'), '"a\\"b"');
  await assert.rejects(
    () => mj.train.train({ lr: NaN, progress: false }),
    /train: lr must be a finite number > 0, got NaN/,
  );
  assert.throws(
    () => mj.nn.modelConfig({ jitterEps: NaN }),
    /jitterEps must be a non-negative number, got NaN/,
  );
  assert.throws(
    () => mj.optim.cosineSchedule({ lr: NaN, warmup: 0, total: 10 }),
    /got \{"lr":NaN,"warmup":0,"total":10\}/,
  );
});

Deno.test("cli: mj.train.train names an unusable out, minLr above lr and a binary data file", async () => {
  const base = { data: corpus, steps: 1, progress: false, handleInterrupt: false };
  await Deno.writeTextFile(`${dir}/a-file`, "");
  await assert.rejects(
    () => mj.train.train({ ...base, out: `${dir}/a-file` }),
    /train: out .*a-file: it is a file, not a directory/,
  );
  await assert.rejects(
    () => mj.train.train({ ...base, out: "/proc/moejit-out" }),
    /train: out \/proc\/moejit-out: cannot create the directory \(/,
  );
  await assert.rejects(
    () => mj.train.train({ ...base, out: `${dir}/ok`, lr: 0.003, minLr: 10 }),
    /train: minLr 10 is above lr 0\.003: the schedule decays from lr to minLr, so minLr must be ≤ lr/,
  );
  await Deno.writeFile(`${dir}/zeros.bin`, new Uint8Array(5000));
  await assert.rejects(
    () => mj.train.train({ ...base, out: `${dir}/ok`, data: `${dir}/zeros.bin` }),
    /zeros\.bin does not look like text: 100\.0% of its 5,000 bytes are control bytes/,
  );
});

Deno.test("cli: bad flags and unusable paths end in one line and a non-zero status", async () => {
  await Deno.writeTextFile(`${dir}/existing-file`, "keep");
  const random = new Uint8Array(200_000);
  for (let i = 0; i < random.length; i += 65536) {
    crypto.getRandomValues(random.subarray(i, Math.min(i + 65536, random.length)));
  }
  await Deno.writeFile(`${dir}/random.bin`, random);
  const base = tinyFlags(corpus, "cpu");
  const cases: [string[], number, RegExp][] = [
    [["--steps", "-1"], 2, /^error: --steps must be an integer ≥ 1, got -1$/],
    [["--steps=-1"], 2, /^error: --steps must be an integer ≥ 1, got -1$/],
    [["--min-lr", "10", "--lr", "0.003"], 2, /^error: --min-lr 10 is above --lr 0\.003/],
    [["--out", `${dir}/existing-file`], 1, /^error: train: out .*existing-file: it is a file/],
    [["--out", "/proc/x"], 1, /^error: train: out \/proc\/x: cannot create the directory/],
    [
      ["--data", `${dir}/random.bin`, "--out", `${dir}/o`],
      1,
      /^error: data\.loadCorpus: .*random\.bin does not look like text: \d+\.\d% of its 200,000 bytes/,
    ],
  ];
  for (const [args, code, re] of cases) {
    const r = await cli([...base, "--steps", "1", ...args]);
    const lines = errorLines(r.stderr).filter((l) => !/^loading /.test(l));
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(lines.length, 1, `${args.join(" ")}: one line, got\n${lines.join("\n")}`);
    assert.match(lines[0], re, args.join(" "));
  }
  assert.equal(await Deno.readTextFile(`${dir}/existing-file`), "keep");
});
