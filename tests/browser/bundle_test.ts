/**
 * The npm bundle's entry point and its guard (no Chromium needed): browser.ts bundles, reaches
 * no Deno-only module, and exports mod.ts's API less exactly the file-system parts; a module
 * that uses Deno, or an npm: import, fails the bundle with the module and the import chain named.
 */
import { assert } from "../helpers.ts";
import { bundleEntry, stopEsbuild } from "../../tools/esbuild.ts";
import * as mod from "../../mod.ts";
import * as browser from "../../browser.ts";

/** What mod.ts has and browser.ts has not: files, npm corpora and tokenizers, the loop. */
const DENO_ONLY: Record<string, string[]> = {
  data: [
    "BPE_ENCODINGS",
    "BUILTIN_CORPORA",
    "MixtureDataset",
    "bpeTokenizer",
    "loadCorpus",
    "prepareData",
    "prepareMixture",
    "tokenizerByName",
    "tokenizerNames",
  ],
  io: [
    "appendLine",
    "checkpointExists",
    "configDifferences",
    "encodeMetrics",
    "loadCheckpoint",
    "MetricsLog",
    "NonFiniteCheckpoint",
    "readMetrics",
    "readSafetensors",
    "recoverDirectory",
    "replaceDirectory",
    "saveCheckpoint",
    "syncDirectory",
    "writeFileAtomic",
    "writeFileSynced",
    "writeSafetensors",
  ],
  train: [
    "BAM_DEFAULTS",
    "Progress",
    "TRAIN_DEFAULTS",
    "TrainInterrupted",
    "bamRecipe",
    "bamTable",
    "formatDuration",
    "train",
    "writeReportPlots",
  ],
};

/** Top-level exports that exist only in Deno: the native backend compiles C on the host. */
const DENO_ONLY_TOP = ["nativeInfo"];

const sorted = (xs: Iterable<string>) => [...xs].sort((a, b) => a.localeCompare(b));

Deno.test("bundle: browser.ts exports mod.ts's API less exactly the Deno-only parts", () => {
  assert.deepEqual(
    sorted(Object.keys(browser)),
    sorted(Object.keys(mod).filter((k) => !DENO_ONLY_TOP.includes(k))),
  );
  for (const name of Object.keys(browser) as (keyof typeof browser)[]) {
    const m = mod[name], b = browser[name];
    if (typeof m !== "object" || m === null || m instanceof Function) {
      assert.equal(b, m, `${name} is the same export`);
      continue;
    }
    const missing = Object.keys(m).filter((k) => !(k in (b as object)));
    assert.deepEqual(sorted(missing), sorted(DENO_ONLY[name] ?? []), `mj.${name}: missing`);
    for (const k of Object.keys(b as object)) {
      assert.equal((b as Record<string, unknown>)[k], (m as Record<string, unknown>)[k], k);
    }
  }
});

Deno.test({
  name: "bundle: browser.ts bundles; Deno-only modules and npm: imports fail the bundle",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  try {
    const b = await bundleEntry("browser.ts", { minify: true });
    assert.ok(b.code.length > 100_000, `${b.code.length} bytes`);
    for (const f of ["src/io/files.ts", "src/data/corpus.ts", "src/train/trainer.ts"]) {
      assert.ok(!b.inputs.includes(f), `${f} is not in the bundle`);
    }
    assert.ok(b.inputs.includes("src/runtime/webgpu.ts"));
    // Strings, comments, types and globalThis lookups are not uses.
    await bundleEntry("tests/browser/fixtures/mentions_deno.ts");
    await assert.rejects(
      () => bundleEntry("tests/browser/fixtures/uses_deno.ts"),
      /tests\/browser\/fixtures\/uses_deno\.ts uses the Deno global \(line 3\)/,
    );
    const err = await bundleEntry("mod.ts").then(() => null, (e: Error) => e.message);
    assert.ok(err, "mod.ts must not bundle for browsers");
    assert.match(err, /src\/io\/files\.ts uses the Deno global/);
    assert.match(err, /mod\.ts → src\/data\/index\.ts → src\/data\/corpus\.ts/);
    assert.match(err, /npm:gpt-tokenizer@3\.4\.0\/encoding\/cl100k_base is Deno-only/);
  } finally {
    await stopEsbuild();
  }
});
