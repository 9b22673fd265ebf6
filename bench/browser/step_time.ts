/**
 * The playground's training step, timed in headless Chromium (WebGPU on SwiftShader) and in Deno
 * (WebGPU on llvmpipe) on the same machine, alternating round by round (the machine's speed
 * drifts, so only interleaved figures compare).
 *
 *   deno run -A bench/browser/step_time.ts [--rounds 3] [--steps 20] [--width 64] [--experts 8]
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { Chromium } from "../../tools/chromium.ts";
import { bundleEntry, stopEsbuild } from "../../tools/esbuild.ts";
import { serveStatic } from "../../tools/static_server.ts";
import { DEFAULT_OPTIONS } from "../../web/protocol.ts";
import { timeSteps } from "./step_time_page.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "20" },
    width: { type: "string", default: String(DEFAULT_OPTIONS.width) },
    experts: { type: "string", default: String(DEFAULT_OPTIONS.experts) },
  },
});
const o = { ...DEFAULT_OPTIONS, width: Number(values.width), experts: Number(values.experts) };
const steps = Number(values.steps);
const { code } = await bundleEntry("bench/browser/step_time_page.ts", { minify: true });
await stopEsbuild();
const server = serveStatic(
  new Map([["/index.html", `<!doctype html><script type="module" src="/b.js"></script>`], [
    "/b.js",
    code,
  ]]),
);
const browser = await Chromium.launch();
try {
  const page = await browser.open(server.url);
  await page.waitFor("globalThis.moejitBench");
  mj.setBackend("webgpu");
  console.log(
    `playground step: width ${o.width}, ${o.experts} experts, top-${o.topK}, 2 layers, ` +
      `batch ${o.batch}×${o.seq}, ${o.estimator} + ${o.balancer}; ${steps} steps per round`,
  );
  for (let r = 0; r < Number(values.rounds); r++) {
    const c = await page.evaluate<Awaited<ReturnType<typeof timeSteps>>>(
      `moejitBench.timeSteps(${JSON.stringify(o)}, ${steps})`,
      300_000,
    );
    const d = await timeSteps(o, steps);
    console.log(
      `round ${r + 1}: Chromium (${c.adapter}) ${c.msPerStep.toFixed(1)} ms/step ` +
        `(first ${c.firstMs.toFixed(0)} ms) | Deno (${d.adapter}) ${d.msPerStep.toFixed(1)} ` +
        `ms/step (first ${d.firstMs.toFixed(0)} ms)`,
    );
  }
} finally {
  await browser.close();
  await server.close();
}
