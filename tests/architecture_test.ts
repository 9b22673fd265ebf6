/**
 * The layering of src/ and codegen/, read from the import statements that exist at run time
 * (`import type` is erased): no import cycles, and no arrow from a lower layer to a higher one
 * (docs/architecture.md draws the same picture). A failure names the cycle or the offending
 * import.
 */
import { assert } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url);

/** Every .ts file under src/ and codegen/, as a path relative to the repository root. */
async function sources(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      const p = `${dir}${e.name}`;
      if (e.isDirectory) await walk(`${p}/`);
      else if (e.name.endsWith(".ts")) out.push(p);
    }
  };
  await walk("src/");
  await walk("codegen/");
  return out.sort();
}

/**
 * The relative imports of a file that exist at run time: static `import`/`export … from`, but
 * not `import type` (erased by the compiler, so it orders nothing and cycles through nothing).
 */
export function importsOf(path: string, text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(import|export)\s([^;]*?)from\s*"(\.{1,2}\/[^"]+)"/gms;
  for (const m of text.matchAll(re)) {
    const clause = m[2].trim();
    if (clause.startsWith("type ")) continue;
    const names = /^\{([^}]*)\}$/.exec(clause)?.[1].split(",").map((x) => x.trim()).filter(Boolean);
    if (names && names.length && names.every((x) => x.startsWith("type "))) continue;
    out.push(new URL(m[3], new URL(path, ROOT)).pathname.slice(ROOT.pathname.length));
  }
  return out;
}

/**
 * Layers, lowest first: a module may import its own layer and lower ones only. A folder (or
 * file) belongs to the first layer that lists a prefix of its path.
 */
const LAYERS: string[][] = [
  // Leaves every layer may use.
  [
    "src/env.ts",
    "src/errors.ts",
    "src/dtype.ts",
    "src/shape.ts",
    "src/memory.ts",
    "src/rng.ts",
    "src/event_loop.ts",
  ],
  ["src/ir/", "src/numerics.ts", "src/stats.ts", "src/deprecation.ts"],
  ["codegen/"],
  ["src/interp/"],
  // The backend registry and the interpreter backend: what a tensor is realized with.
  ["src/backend.ts"],
  ["src/tensor.ts", "src/ops/", "src/autodiff/"],
  ["src/passes/"],
  ["src/runtime/", "src/realize.ts", "src/jit.ts", "src/debug.ts"],
  ["src/moe/", "src/balance.ts"],
  ["src/nn/"],
  ["src/data/", "src/io/"],
  ["src/train/"],
  // The papers' comparisons: suites of training runs, their runner, statistics and reports.
  ["src/repro/"],
  // Public namespaces assembled from several layers (mj.moe).
  ["src/api/"],
];

function layerOf(path: string): number {
  let best = -1, bestLen = -1;
  LAYERS.forEach((prefixes, i) => {
    for (const p of prefixes) {
      if (path.startsWith(p) && p.length > bestLen) {
        best = i;
        bestLen = p.length;
      }
    }
  });
  return best;
}

const graph = new Map<string, string[]>();
for (const path of await sources()) {
  graph.set(path, importsOf(path, await Deno.readTextFile(new URL(path, ROOT))));
}

Deno.test("architecture: every module of src/ and codegen/ belongs to a layer", () => {
  const unplaced = [...graph.keys()].filter((p) => layerOf(p) < 0);
  assert.deepEqual(unplaced, [], "add these to LAYERS (and docs/architecture.md)");
});

Deno.test("architecture: no import goes up a layer", () => {
  const bad: string[] = [];
  for (const [from, tos] of graph) {
    for (const to of tos) {
      if (!graph.has(to)) continue;
      if (layerOf(to) > layerOf(from)) bad.push(`${from} → ${to}`);
    }
  }
  assert.deepEqual(bad, [], "imports that run the wrong way");
});

Deno.test("architecture: no import cycles", () => {
  // Tarjan's strongly connected components: any component of more than one module is a cycle.
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], on = new Set<string>(), cycles: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1) cycles.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  assert.deepEqual(cycles, [], "modules that import each other, directly or through others");
});
