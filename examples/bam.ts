/**
 * BAM (Branch-Attend-Mix) in miniature, on real text: pretrain a small dense parallel-attention
 * seed on a mixture of Moby Dick, State of the Union addresses and SpamAssassin e-mails; branch
 * it into one expert per domain by continued pretraining; upcycle seed + experts into BTX, BAM
 * with KV experts and BAM with shared K/V; train each mixture for the same tokens; print the
 * paper's Table 1 at toy scale (validation perplexity per domain and on average) and save it as
 * Markdown, SVG and JSON.
 *
 *   deno run -A examples/bam.ts            # about 25 minutes on a 2-core machine without a GPU
 *   deno run -A examples/bam.ts --quick    # a smoke run in a few minutes
 *   deno run -A examples/bam.ts --help
 */
import { parseArgs } from "node:util";
import * as mj from "../mod.ts";

const D = mj.train.BAM_DEFAULTS;
const QUICK = {
  dModel: 64,
  nLayers: 2,
  nHeads: 2,
  dFf: 128,
  batch: 8,
  seq: 64,
  seedSteps: 150,
  branchSteps: 50,
  mixSteps: 60,
  evalBatches: 8,
};
const FLAGS = {
  quick: { type: "boolean", help: "a small, fast run (a smoke check)" },
  "seed-steps": {
    type: "string",
    help: `steps of seed pretraining (default ${D.seedSteps}; quick ${QUICK.seedSteps})`,
  },
  "branch-steps": {
    type: "string",
    help:
      `steps of continued pretraining per domain (default ${D.branchSteps}; quick ${QUICK.branchSteps})`,
  },
  "mix-steps": {
    type: "string",
    help:
      `steps of each mixture, BTX and BAM alike (default ${D.mixSteps}; quick ${QUICK.mixSteps})`,
  },
  "d-model": {
    type: "string",
    help: `model width (default ${D.model.dModel}; quick ${QUICK.dModel})`,
  },
  layers: { type: "string", help: `layers (default ${D.model.nLayers})` },
  heads: {
    type: "string",
    help: `attention heads (default ${D.model.nHeads}; quick ${QUICK.nHeads})`,
  },
  "d-ff": { type: "string", help: `FFN hidden size (default ${D.model.dFf}; quick ${QUICK.dFf})` },
  batch: { type: "string", help: `sequences per batch (default ${D.batch}; quick ${QUICK.batch})` },
  seq: { type: "string", help: `tokens per sequence (default ${D.seq}; quick ${QUICK.seq})` },
  lr: {
    type: "string",
    help: `peak learning rate of pretraining and the mixtures; branches use half (default ${D.lr})`,
  },
  "eval-batches": {
    type: "string",
    help: `validation batches per domain (default ${D.evalBatches}; quick ${QUICK.evalBatches})`,
  },
  data: { type: "string", help: `domains joined by + (default ${D.corpora.join("+")})` },
  seed: { type: "string", help: `seed (default ${D.seed})` },
  out: { type: "string", help: `output directory (default ${D.out})` },
  backend: {
    type: "string",
    help: "native | webgpu | cpu (default: the fastest available; README, Backends)",
  },
  help: { type: "boolean", help: "print this help" },
} as const;

let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: Object.fromEntries(Object.entries(FLAGS).map(([k, f]) => [k, { type: f.type }])),
    strict: true,
  }));
} catch (e) {
  console.error(
    `error: ${
      (e as Error).message.replace(/\. To specify a positional argument.*$/, "")
    }; run with --help for the list`,
  );
  Deno.exit(2);
}
if (values.help) {
  console.log(
    "BAM in miniature: seed → domain experts → BTX / BAM (KV experts) / BAM (shared KV) → Table 1.\n",
  );
  console.log("usage: deno run -A examples/bam.ts [flags]\n");
  for (const [k, f] of Object.entries(FLAGS)) console.log(`  --${k.padEnd(14)}${f.help}`);
  Deno.exit(0);
}
const int = (k: string, fallback: number): number => {
  const v = values[k];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`error: --${k} expects a positive integer, got ${JSON.stringify(v)}`);
    Deno.exit(2);
  }
  return n;
};
const quick = values.quick === true;
const pick = (k: keyof typeof QUICK, full: number) => (quick ? QUICK[k] : full);
if (values.backend) {
  // setBackend names the backends this build has when the name is not one of them.
  try {
    mj.setBackend(values.backend as mj.BackendName);
  } catch (e) {
    console.error(`error: --backend: ${(e as Error).message.split("\n")[0]}`);
    Deno.exit(2);
  }
}
const lr = values.lr === undefined ? D.lr : Number(values.lr);
if (!(lr > 0)) {
  console.error(`error: --lr expects a positive number, got ${JSON.stringify(values.lr)}`);
  Deno.exit(2);
}

const started = performance.now();
try {
  const r = await mj.train.bamRecipe({
    corpora: values.data ? String(values.data).split("+") : D.corpora,
    model: {
      dModel: int("d-model", pick("dModel", D.model.dModel!)),
      nLayers: int("layers", D.model.nLayers!),
      nHeads: int("heads", pick("nHeads", D.model.nHeads!)),
      dFf: int("d-ff", pick("dFf", D.model.dFf!)),
    },
    batch: int("batch", pick("batch", D.batch)),
    seq: int("seq", pick("seq", D.seq)),
    seedSteps: int("seed-steps", pick("seedSteps", D.seedSteps)),
    branchSteps: int("branch-steps", pick("branchSteps", D.branchSteps)),
    mixSteps: int("mix-steps", pick("mixSteps", D.mixSteps)),
    evalBatches: int("eval-batches", pick("evalBatches", D.evalBatches)),
    lr,
    seed: values.seed === undefined ? D.seed : int("seed", D.seed),
    out: String(values.out ?? (quick ? "out/bam-quick" : D.out)),
  });
  console.log(`\n${mj.train.bamTable(r)}\n`);
  const btx = r.rows.find((x) => x.model === "BTX")!;
  for (const bam of r.rows.filter((x) => x.model.startsWith("BAM"))) {
    const wins = r.domains.filter((_, i) => bam.ppl[i] < btx.ppl[i]);
    console.log(
      `${bam.model} beats BTX on ${wins.length} of ${r.domains.length} domains${
        wins.length ? ` (${wins.join(", ")})` : ""
      }; average ${bam.avg.toFixed(3)} vs ${btx.avg.toFixed(3)}`,
    );
  }
  console.log(
    `\ntable: ${r.paths.markdown}, ${r.paths.svg}, ${r.paths.json}; ${
      ((performance.now() - started) / 60000).toFixed(1)
    } minutes in all`,
  );
} catch (e) {
  if (e instanceof mj.MoejitError) {
    console.error(`error: ${e.message.replace(/\n\s*at your call:.*$/, "")}`);
    Deno.exit(1);
  }
  throw e;
}
