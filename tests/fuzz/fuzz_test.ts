/**
 * The standing random-graph check: seeded random graphs over the public ops run on each compiled
 * backend, WebGPU and native (fused, unfused, through mj.jit, with and without gradients) and on
 * the interpreter, values and gradients compared within per-element error estimates. The fast tier
 * runs a few dozen graphs; the slow tier (MOEJIT_SLOW=1) a few hundred others. MOEJIT_FUZZ_SEED=s
 * and MOEJIT_FUZZ_COUNT=n run seeds s … s+n−1 instead (in the fast tier's test; the slow tier's is
 * then skipped). A mismatch is shrunk to a minimal graph and printed as a runnable snippet.
 */
import assert from "node:assert/strict";
import { gpuTest } from "../webgpu/harness.ts";
import { SLOW } from "../helpers.ts";
import { runSeed, type Seeds, seedsFrom } from "./runner.ts";

/**
 * Seeds whose graphs hit a known bug outside the fuzzer's reach, with the regression case in
 * regressions_test.ts that tracks it: skipped (with the reason) until the fix lands, then
 * removed from this list.
 */
const KNOWN_BUGS: Record<number, string> = {};

async function tier(t: Deno.TestContext, seeds: Seeds): Promise<void> {
  let ill = 0, passed = 0, worst = 0, worstAt = "";
  for (let seed = seeds.first; seed < seeds.first + seeds.count; seed++) {
    const known = KNOWN_BUGS[seed];
    await t.step({
      name: `seed ${seed}${known ? ` [skipped: known bug: ${known}]` : ""}`,
      ignore: !!known,
      fn: async () => {
        const r = await runSeed(seed);
        const v = r.verdict;
        if (v.status === "ill") ill++;
        if (v.status === "pass") {
          passed++;
          if (v.worst > worst) [worst, worstAt] = [v.worst, `seed ${seed}, ${v.worstAt}`];
        }
        if (v.status === "invalid") {
          assert.fail(`seed ${seed}: the generator built an invalid program: ${v.why}`);
        }
        if (v.status === "fail") {
          console.error(r.report);
          assert.fail(r.report);
        }
      },
    });
  }
  console.log(
    `fuzz: ${passed} graphs agree, ${ill} ill-conditioned (not compared); closest to its ` +
      `tolerance: ${(100 * worst).toFixed(1)}% (${worstAt})`,
  );
  // Ill-conditioned graphs are skipped; a generator that drifted into making mostly those would
  // leave nothing checked.
  if (!seeds.chosen) {
    assert.ok(ill <= seeds.count / 4, `${ill} of ${seeds.count} graphs were ill-conditioned`);
  }
}

const fast = seedsFrom({ first: 1, count: 40 });
gpuTest(`fuzz: ${fast.count} random graphs agree with the interpreter`, (t) => tier(t, fast));

const slow = seedsFrom({ first: 100_000, count: 300 }, () => undefined);
gpuTest(
  `fuzz (slow tier): ${slow.count} random graphs agree with the interpreter` +
    (!SLOW ? " [skipped: set MOEJIT_SLOW=1]" : ""),
  async (t) => {
    if (SLOW && !fast.chosen) await tier(t, slow);
  },
);
