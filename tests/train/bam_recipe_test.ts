/**
 * The BAM recipe end to end: a tiny run of every phase on small domain files (default tier, on
 * the interpreter), and `examples/bam.ts --quick` as a user runs it (slow tier: MOEJIT_SLOW=1).
 */
import * as mj from "../../mod.ts";
import { assert, SLOW } from "../helpers.ts";

const dir = await Deno.makeTempDir({ prefix: "moejit-bam-recipe-" });
const domains = {
  whales:
    "Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse. ",
  speeches:
    "Mr. Speaker, Mr. Vice President, members of Congress, my fellow Americans: the state of our union is strong. ",
  mail:
    "From: alice@example.com\nSubject: cheap offer\n\nClick here to claim your prize today!!! Unsubscribe below.\n",
};
for (const [name, text] of Object.entries(domains)) {
  await Deno.writeTextFile(`${dir}/${name}.txt`, text.repeat(40));
}

Deno.test("bam recipe: seed → experts → BTX / BAM kvExperts / BAM sharedKV, with the table written", async () => {
  mj.setBackend("cpu");
  const lines: string[] = [];
  const r = await mj.train.bamRecipe({
    corpora: Object.keys(domains).map((n) => `${dir}/${n}.txt`),
    model: { dModel: 16, nHeads: 2, dFf: 16, nLayers: 1 },
    batch: 3,
    seq: 16,
    seedSteps: 6,
    branchSteps: 3,
    mixSteps: 3,
    evalBatches: 1,
    out: `${dir}/out`,
    progress: false,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(r.rows.map((x) => x.model), [
    "Seed (dense)",
    `${dir}/whales.txt expert`,
    `${dir}/speeches.txt expert`,
    `${dir}/mail.txt expert`,
    "BTX",
    "BAM (KV experts)",
    "BAM (shared KV)",
  ]);
  for (const row of r.rows) {
    assert.equal(row.ppl.length, 3);
    assert.ok(row.ppl.every((p) => p > 1 && p < 256), `${row.model}: ${row.ppl}`);
  }
  // Parameter counts: BAM > BAM shared KV > BTX > seed, all four experts active only in BAM's attention.
  const [seed, , , , btx, bam, shared] = r.rows;
  assert.ok(
    bam.params.total > shared.params.total && shared.params.total > btx.params.total &&
      btx.params.total > seed.params.total,
  );
  assert.equal(btx.params.active, seed.params.active + 16 * 4); // + the FFN router
  const md = await Deno.readTextFile(r.paths.markdown);
  assert.equal(md.split("\n").filter((l) => l.startsWith("| ")).length, 8);
  assert.match(
    await Deno.readTextFile(r.paths.svg),
    /^<svg[\s\S]*BAM \(shared KV\)[\s\S]*<\/svg>\n$/,
  );
  assert.ok(lines.some((l) => l.startsWith("[3/3]")));
  // The upcycled models were built from the checkpoints the earlier phases wrote.
  const ck = await mj.io.loadCheckpoint(`${dir}/out/bam-kv/checkpoint`);
  assert.equal(ck.config.attnExperts, 4);
  assert.equal(ck.config.experts, 4);
});

Deno.test(
  { name: "examples/bam.ts --quick runs as a user runs it (slow tier)", ignore: !SLOW },
  async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../examples/bam.ts", import.meta.url).pathname,
        "--quick",
        "--out",
        `${dir}/quick`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr).slice(-2000));
    assert.match(text, /BAM \(KV experts\) beats BTX on \d of 3 domains/);
    assert.ok((await Deno.stat(`${dir}/quick/table.md`)).isFile);
  },
);
