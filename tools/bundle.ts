/**
 * `deno task bundle`: the npm package and the playground, in dist/.
 *
 *   dist/moejit.js, moejit.min.js (+ .map)   browser.ts bundled (ESM, ES2022)
 *   dist/package.json, README.md, LICENSE     so that `npm pack dist/` gives an installable package
 *   dist/playground/                          web/ bundled, with a slice of Moby Dick to train on
 *
 * Fails when a module the browser entry reaches needs Deno (see tools/esbuild.ts).
 */
import { bundleEntry, stopEsbuild } from "./esbuild.ts";
import { loadCorpus } from "../src/data/corpus.ts";

/** Characters of Moby Dick the playground ships (whole chapters from the start, at least this). */
const PLAYGROUND_TEXT_CHARS = 200_000;

async function gzipSize(bytes: Uint8Array): Promise<number> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

async function writeText(path: string, text: string): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, text);
}

/** The library's size, raw and gzipped, per output file. */
export interface BundleReport {
  files: { file: string; bytes: number; gzipBytes: number }[];
  /** Source modules in the bundle. */
  modules: number;
}

/**
 * Bundles browser.ts into `out` (unminified and minified, each with a source map) and writes the
 * npm package files next to them.
 *
 * @example
 * ```ts
 * const report = await buildLibrary("dist");
 * console.log(report.files.map((f) => `${f.file}: ${f.bytes} B, ${f.gzipBytes} B gzipped`));
 * ```
 */
export async function buildLibrary(out: string): Promise<BundleReport> {
  await Deno.mkdir(out, { recursive: true });
  const report: BundleReport = { files: [], modules: 0 };
  for (const minify of [false, true]) {
    const file = minify ? "moejit.min.js" : "moejit.js";
    const b = await bundleEntry("browser.ts", {
      minify,
      sourcemap: true,
      outfile: `${out}/${file}`,
    });
    await writeText(`${out}/${file}`, b.code);
    await writeText(`${out}/${file}.map`, b.map!);
    const bytes = new TextEncoder().encode(b.code);
    report.files.push({ file, bytes: bytes.length, gzipBytes: await gzipSize(bytes) });
    report.modules = b.inputs.length;
  }
  const deno = JSON.parse(await Deno.readTextFile("deno.json"));
  const pkg = {
    name: "moejit",
    version: deno.version,
    description: "Mixture-of-Experts research and training in the browser: a lazy tensor DSL " +
      "with autodiff, MoE gradient estimators and balancers, compiled to WebGPU kernels",
    type: "module",
    main: "./moejit.min.js",
    module: "./moejit.min.js",
    exports: { ".": "./moejit.min.js", "./unminified": "./moejit.js" },
    files: ["moejit.js", "moejit.js.map", "moejit.min.js", "moejit.min.js.map", "README.md"],
    // Importing registers the WebGPU and CPU backends.
    sideEffects: true,
    license: "MIT",
    keywords: ["mixture-of-experts", "moe", "webgpu", "wgsl", "autodiff", "deep-learning"],
  };
  await writeText(`${out}/package.json`, JSON.stringify(pkg, null, 2) + "\n");
  await Deno.copyFile("LICENSE", `${out}/LICENSE`);
  await writeText(
    `${out}/README.md`,
    `# moejit (browser bundle)

Mixture-of-Experts research and training in a web page or a Web Worker, on WebGPU: moejit's
tensors, autodiff, \`jit\`, \`mj.moe\`, \`mj.balance\`, \`mj.nn\`, \`mj.optim\`, \`mj.data\` (text in
memory), \`mj.io\` (safetensors as bytes, the Hugging Face layout, SVG plots) and \`mj.train\`
(the compiled training step). Built from the Deno library's \`browser.ts\` with esbuild.

\`\`\`js
import * as mj from "moejit";
const x = mj.tensor([[1, 2], [3, 4]]);
const [dx] = mj.grad((x) => x.square().sum())(x);
console.log(await dx.data()); // Float32Array [2, 4, 6, 8]
\`\`\`

Without WebGPU (\`navigator.gpu\`), moejit runs on its CPU interpreter (slow) and says so once.
`,
  );
  return report;
}

/**
 * Bundles the playground (web/) into `out`, with the text it trains on: the first chapters of
 * Moby Dick (public domain) from the npm corpus moejit's examples use.
 *
 * @example
 * ```ts
 * await buildPlayground("dist/playground");
 * ```
 */
export async function buildPlayground(out: string): Promise<{ textChars: number }> {
  await Deno.mkdir(out, { recursive: true });
  for (const name of ["app", "worker"]) {
    const b = await bundleEntry(`web/${name}.ts`, {
      minify: true,
      sourcemap: true,
      outfile: `${out}/${name}.js`,
    });
    await writeText(`${out}/${name}.js`, b.code);
    await writeText(`${out}/${name}.js.map`, b.map!);
  }
  for (const f of ["index.html", "style.css"]) await Deno.copyFile(`web/${f}`, `${out}/${f}`);
  const { documents } = await loadCorpus("moby-dick");
  let text = "";
  for (const d of documents) {
    text += d;
    if (text.length >= PLAYGROUND_TEXT_CHARS) break;
  }
  await writeText(`${out}/moby_dick.txt`, text);
  return { textChars: text.length };
}

function kib(n: number): string {
  return `${(n / 1024).toFixed(1)} KiB`;
}

if (import.meta.main) {
  try {
    const lib = await buildLibrary("dist");
    for (const f of lib.files) {
      console.log(`dist/${f.file}: ${kib(f.bytes)} (${kib(f.gzipBytes)} gzipped)`);
    }
    console.log(`${lib.modules} modules; dist/package.json: npm pack dist/ makes the package`);
    const pg = await buildPlayground("dist/playground");
    console.log(`dist/playground/: the playground, with ${pg.textChars} characters of Moby Dick`);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exitCode = 1;
  } finally {
    await stopEsbuild();
  }
}
