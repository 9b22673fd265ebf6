/**
 * A fuzz program as a runnable TypeScript file: the graph written out with the public API, its
 * inputs, and a driver that runs it on the interpreter and on a compiled backend (WebGPU or native)
 * in the failing mode and prints the largest difference per output. Run it from the repository
 * root.
 */
import * as mj from "../../mod.ts";
import type { Mode } from "./check.ts";
import { gradInputs } from "./check.ts";
import {
  build,
  callText,
  type Env,
  inputData,
  live,
  type Program,
  resolve,
  runtimeScalars,
} from "./program.ts";

export interface SnippetInfo {
  seed?: number;
  /** What disagreed (one or more comment lines). */
  note?: string;
  mode: Mode;
  /** Module specifier of the repository root (default "./": the snippet sits at the root). */
  root?: string;
  /** The compiled backend compared with the interpreter (default "webgpu"). */
  backend?: "webgpu" | "native";
}

/** The program as TypeScript source. */
export function snippet(p: Program, info: SnippetInfo): string {
  const root = info.root ?? "./";
  const dev = info.backend ?? "webgpu";
  const env: Env = {
    dims: p.dims,
    tensors: build(p, (_i, d) => mj.zeros(d.shape).cast(d.dtype)),
  };
  const nodes = live(p);
  const inputs = nodes.filter((i) => ["input", "index"].includes(p.nodes[i].k));
  const name = (i: number) => `t${i}`;
  const lines: string[] = [];
  const mode = info.mode;
  lines.push(`// moejit fuzz${info.seed !== undefined ? `: MOEJIT_FUZZ_SEED=${info.seed}` : ""}`);
  for (const l of (info.note ?? "").split("\n").filter((l) => l)) lines.push(`// ${l}`);
  lines.push(`// Run from the repository root: deno run -A <this file>`);
  lines.push(`import * as mj from "${root}mod.ts";`);
  lines.push(`import { indices, uniform, uniformInts } from "${root}tests/fuzz/data.ts";`);
  const wrt = mode.grads ? gradInputs(p).map((i) => inputs.indexOf(i)) : [];
  const hasLoss = mode.grads && p.outputs.some((o) => env.tensors[o].dtype === "f32") &&
    wrt.length > 0;
  if (hasLoss) lines.push(`import { lossOf } from "${root}tests/fuzz/program.ts";`);
  lines.push("");
  // Under mj.jit, runtime scalars are number arguments of the step: s[k] in the graph.
  const scalars = mode.jit ? runtimeScalars(p) : [];
  const scalarName = scalars.length ? (i: number) => `s[${scalars.indexOf(i)}]` : undefined;
  const sParam = scalars.length ? ", s: mj.TensorLike[]" : "";
  lines.push(
    `function graph([${inputs.map(name).join(", ")}]: mj.Tensor[]${sParam}): mj.Tensor[] {`,
  );
  for (const i of nodes) {
    const op = p.nodes[i];
    if (op.k === "input" || op.k === "index") continue;
    lines.push(`  const ${name(i)} = ${callText(resolve(op, env, i), name, scalarName)};`);
  }
  lines.push(`  return [${p.outputs.map(name).join(", ")}];`);
  lines.push(`}`);
  lines.push("");
  lines.push(`const inputs = (): mj.Tensor[] => [`);
  for (const i of inputs) {
    const op = p.nodes[i] as Extract<typeof p.nodes[number], { k: "input" | "index" }>;
    lines.push(`  ${inputData(op, env).text}, // ${name(i)}`);
  }
  lines.push(`];`);
  const names = [
    ...p.outputs.map(name),
    ...(hasLoss ? ["loss", ...wrt.map((k) => `grad of ${name(inputs[k])}`)] : []),
  ];
  lines.push("");
  if (hasLoss) {
    lines.push(`// The loss is Σ sum(output · w) over f32 outputs, with fixed random weights w.`);
    lines.push(`const wrt = ${JSON.stringify(wrt)}; // the inputs that get gradients`);
    lines.push(`function roots(xs: mj.Tensor[]${sParam}): mj.Tensor[] {`);
    lines.push(`  const f = (...g: mj.Tensor[]) => {`);
    lines.push(
      `    const outs = graph(xs.map((x, i) => (wrt.includes(i) ? g[wrt.indexOf(i)] : x))${
        scalars.length ? ", s" : ""
      });`,
    );
    lines.push(`    return [lossOf(outs)!, outs] as const;`);
    lines.push(`  };`);
    lines.push(
      `  const [loss, grads, outs] = mj.valueAndGrad(f, { hasAux: true })(...wrt.map((i) => xs[i]));`,
    );
    lines.push(`  return [...outs, loss, ...grads];`);
    lines.push(`}`);
  } else {
    lines.push(`const roots = graph;`);
  }
  lines.push(`const names = ${JSON.stringify(names)};`);
  lines.push("");
  lines.push(`async function run(backend: mj.BackendName): Promise<mj.TypedArray[]> {`);
  lines.push(`  mj.setBackend(backend);`);
  lines.push(`  mj.setFusion(${mode.fusion});`);
  if (scalars.length) {
    const values = scalars.map((i) => (p.nodes[i] as { c: number }).c);
    lines.push(`  // The numbers become runtime scalars of the compiled step.`);
    lines.push(`  const step = mj.jit((xs: mj.Tensor[], s: number[]) => roots(xs, s));`);
    lines.push(`  const outs = await step(inputs(), ${JSON.stringify(values)});`);
  } else if (mode.jit) {
    lines.push(`  const step = mj.jit((...xs: mj.Tensor[]) => roots(xs));`);
    lines.push(`  const outs = await step(...inputs());`);
  } else {
    // All roots in one step, as the check runs them (separate reads may compile differently).
    lines.push(`  const outs = await mj.realize(roots(inputs()));`);
  }
  lines.push(`  return Promise.all(outs.map((t) => t.data()));`);
  lines.push(`}`);
  lines.push("");
  lines.push(`const cpu = await run("cpu"), dev = await run("${dev}");`);
  lines.push(`names.forEach((n, i) => {`);
  lines.push(`  let worst = 0, at = 0;`);
  lines.push(`  cpu[i].forEach((v, j) => {`);
  lines.push(`    const d = Math.abs(Number(v) - Number(dev[i][j]));`);
  lines.push(
    `    if (d > worst || (Number.isNaN(d) && !Number.isNaN(worst))) [worst, at] = [d, j];`,
  );
  lines.push(`  });`);
  lines.push(
    `  console.log(\`\${n}: max |cpu − ${dev}| = \${worst} at flat index \${at} (cpu \${cpu[i][at]}, ${dev} \${dev[i][at]})\`);`,
  );
  lines.push(`});`);
  return lines.join("\n") + "\n";
}
