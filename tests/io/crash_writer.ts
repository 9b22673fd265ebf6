/**
 * The process the checkpoint crash tests kill (tests/io/checkpoint_crash_test.ts): it loads the
 * checkpoint in a directory (settling whatever a kill left there), checks that its parameters are
 * exactly the ones saved at its step, then saves steps step+1, step+2, … with parameters that are
 * a function of the step, printing a line after each load and save.
 *
 *   deno run -A tests/io/crash_writer.ts <dir> <saves> [kill]
 *
 * `kill` makes the process SIGKILL itself just before a file-system operation: `op:N` before the
 * N-th one (1-based), `rename-partial` before renaming `<dir>.partial` to `<dir>`,
 * `recovery:N` before the N-th operation of the first load (0: count only). Every operation is
 * printed as `op <n> <name> <path>` first, so the parent knows where it died.
 */
import { loadCheckpoint, saveCheckpoint } from "../../src/io/checkpoint.ts";
import { modelConfig } from "../../src/nn/config.ts";
import { parameterShapes } from "../../src/nn/config.ts";
import { fromHost } from "../../src/ops/creation.ts";
import { setBackend } from "../../src/backend.ts";
import type { Tensor } from "../../src/tensor.ts";

setBackend("cpu");

/** The model every save writes: big enough that writing and hashing take a few milliseconds. */
export const CRASH_CONFIG = modelConfig({
  nLayers: 2,
  dModel: 64,
  nHeads: 2,
  experts: 4,
  dFf: 64,
  vocabSize: 256,
  maxSeqLen: 16,
  estimator: "topk",
});

/** The parameters saved at `step`: pseudo-random values from a generator seeded by the step. */
export function paramsAt(step: number): Record<string, Float32Array> {
  let a = (step * 2654435761) >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  const out: Record<string, Float32Array> = {};
  for (const [path, shape] of parameterShapes(CRASH_CONFIG)) {
    out[path] = Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, next);
  }
  return out;
}

function tree(host: Record<string, Float32Array>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, shape] of parameterShapes(CRASH_CONFIG)) {
    const keys = path.split(".");
    let node = root;
    keys.forEach((k, i) => {
      if (i === keys.length - 1) node[k] = fromHost(host[path], shape, "f32");
      else {
        node[k] ??= /^\d+$/.test(keys[i + 1]) ? [] : {};
        node = node[k] as Record<string, unknown>;
      }
    });
  }
  return root;
}

const enc = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(enc.encode(line + "\n"));

if (import.meta.main) {
  const [dir, savesArg, kill = ""] = Deno.args;
  let ops = 0;
  let loading = true;
  const [kind, nArg] = kill.split(":");
  const n = Number(nArg);
  const before = (name: string, path: string | URL) => {
    ops++;
    say(`op ${ops} ${name} ${path}${loading ? " (recovery)" : ""}`);
    const hit = (kind === "op" && ops === n) ||
      (kind === "recovery" && loading && ops === n) ||
      (kind === "rename-partial" && name === "rename" && String(path).endsWith(".partial"));
    if (hit) Deno.kill(Deno.pid, "SIGKILL");
  };
  if (kill) {
    // Wrap every file-system call the checkpoint code makes; they are looked up at call time.
    const d = Deno as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of ["open", "mkdir", "rename", "remove"]) {
      const orig = d[name];
      d[name] = (...a: unknown[]) => {
        before(name, a[0] as string);
        return orig(...a);
      };
    }
    const proto = Deno.FsFile.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of ["write", "sync"]) {
      const orig = proto[name];
      proto[name] = function (this: unknown, ...a: unknown[]) {
        before(name, "(open file)");
        return orig.apply(this, a);
      };
    }
  }
  say("ready");
  let step = 0;
  try {
    const ck = await loadCheckpoint(dir);
    step = (ck.trainingState!.json as { step: number }).step;
    const want = paramsAt(step);
    const got = ck.params as Record<string, unknown>;
    for (const [path] of parameterShapes(CRASH_CONFIG)) {
      const t = path.split(".").reduce((x: unknown, k) => (x as Record<string, unknown>)[k], got);
      const v = await (t as Tensor).data();
      if (v.some((x, i) => x !== want[path][i])) {
        say(`error: ${path} differs from the parameters of step ${step}`);
        Deno.exit(3);
      }
    }
    for (const note of ck.recovered) say(`recovered: ${note}`);
  } catch (e) {
    if (!/does not exist/.test((e as Error).message)) {
      say(`error: ${(e as Error).message.split("\n")[0]}`);
      Deno.exit(2);
    }
  }
  loading = false;
  say(`loaded ${step}`);
  if (kind === "recovery" && n === 0) say(`recovery ops ${ops}`);
  for (let i = 0; i < Number(savesArg); i++) {
    step++;
    await saveCheckpoint(dir, {
      config: CRASH_CONFIG,
      params: tree(paramsAt(step)),
      trainingState: {
        tensors: { m: fromHost(paramsAt(step)["embed"], [256, 64], "f32") },
        json: { step },
      },
    });
    say(`saved ${step}`);
  }
}
