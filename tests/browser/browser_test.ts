/**
 * The browser tier: moejit bundled with esbuild and run in headless Chromium (WebGPU on
 * SwiftShader, WGSL compiled by Tint), driven over the DevTools protocol, against the same code
 * run in Deno in the same test (WebGPU on llvmpipe through naga, or the CPU interpreter when Deno
 * has no adapter):
 *  (a) op and kernel test vectors — reductions, softmax, cross-entropy, top-k, matmul,
 *      attention, the MoE layer's forward and gradients under every estimator and balancer;
 *  (b) a training step's loss and every gradient, and two compiled AdamW steps;
 *  (c) the playground: it trains, its loss falls, its plots and heatmap render (a screenshot
 *      goes to test-artifacts/playground.png), it samples text, its checkpoint loads in Deno;
 *      without WebGPU it says so and how to enable it.
 * Skipped, with the reason printed, where Chromium is not installed. Chromium is always closed.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { acquireGpu } from "../../src/runtime/device.ts";
import { Chromium, findChromium, type Page } from "../../tools/chromium.ts";
import { bundleEntry, stopEsbuild } from "../../tools/esbuild.ts";
import { buildPlayground } from "../../tools/bundle.ts";
import { serveStatic, type StaticServer } from "../../tools/static_server.ts";
import { type Outputs, runCases, trainingStep } from "./vectors.ts";
import { playgroundConfig } from "../../web/model.ts";
import { DEFAULT_OPTIONS } from "../../web/protocol.ts";

const chromium = findChromium();
if (!chromium) {
  console.log(
    "browser tier skipped: Chromium was not found (install Debian's chromium, or set " +
      "MOEJIT_CHROMIUM to a Chrome/Chromium binary)",
  );
}
const denoBackend: mj.BackendName = (await acquireGpu()) ? "webgpu" : "cpu";

/** Outputs whose values are indices or counts: compared exactly. */
const EXACT = /^(argmax|argmin|indices|wideIndices|counts|oneHot)$/;

/**
 * Compares Chromium's outputs with Deno's: integers exactly; floats elementwise within
 * atol + rtol·|deno|, atol scaled by the output's largest magnitude (gradients span decades).
 */
function compareOutputs(
  where: string,
  browser: Outputs,
  deno: Outputs,
  tol: { rtol: number; atol: number },
): void {
  assert.deepEqual(Object.keys(browser).sort(), Object.keys(deno).sort(), `${where}: outputs`);
  for (const [name, want] of Object.entries(deno)) {
    const got = browser[name];
    assert.equal(got.length, want.length, `${where}.${name}: length`);
    if (EXACT.test(name)) {
      assert.deepEqual(got, want, `${where}.${name}: indices differ`);
      continue;
    }
    const scale = Math.max(1e-30, ...want.map(Math.abs));
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(got[i] - want[i]);
      const bound = tol.atol * scale + tol.rtol * Math.abs(want[i]);
      if (!(err <= bound)) {
        assert.fail(
          `${where}.${name}[${i}]: Chromium ${got[i]} vs Deno ${want[i]} (|Δ| ${
            err.toExponential(2)
          } > ${bound.toExponential(2)}; largest |value| ${scale.toExponential(2)})`,
        );
      }
    }
  }
}

const sorted = (xs: string[]) => [...xs].sort();

async function pageOf(browser: Chromium, server: StaticServer, path: string): Promise<Page> {
  return await browser.open(new URL(path, server.url).href);
}

Deno.test({
  name: "browser: Chromium gives Deno's results and trains the playground",
  ignore: !chromium,
  // esbuild's service and the static server outlive single steps by design; all are closed.
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  // Everything the pages need, built in memory and in a temp folder: no dist/ required.
  const files = new Map<string, string | Uint8Array>();
  const pg = await Deno.makeTempDir({ prefix: "moejit-playground-" });
  try {
    const page = await bundleEntry("tests/browser/vectors_page.ts");
    files.set("/vectors.js", page.code);
    files.set(
      "/vectors.html",
      `<!doctype html><meta charset="utf-8"><script type="module" src="/vectors.js"></script>`,
    );
    await buildPlayground(pg);
    for await (const e of Deno.readDir(pg)) {
      files.set(`/playground/${e.name}`, await Deno.readFile(`${pg}/${e.name}`));
    }
  } finally {
    await stopEsbuild();
    await Deno.remove(pg, { recursive: true });
  }
  const server = serveStatic(files);
  const browser = await Chromium.launch();
  try {
    const vectors = await pageOf(browser, server, "/vectors.html");
    await vectors.waitFor("globalThis.moejitTest", 20_000);
    const info = await vectors.evaluate<mj.DeviceInfo | null>("moejitTest.info()");
    assert.ok(info, "Chromium gave the page a WebGPU adapter");
    console.log(
      `Chromium's adapter: ${info.adapter.vendor} ${info.adapter.architecture}; ` +
        `${info.limits.maxStorageBuffersPerShaderStage} storage buffers per stage; ` +
        `Deno runs on ${denoBackend}`,
    );

    await t.step("(a) op, kernel and MoE layer test vectors match Deno's", async () => {
      // Both sides at once: Chromium works in its own process while Deno computes.
      const inBrowser = vectors.evaluate<Record<string, Outputs>>("moejitTest.runCases()", 240_000);
      mj.setBackend(denoBackend);
      const inDeno = await runCases();
      const got = await inBrowser;
      for (const [name, outputs] of Object.entries(inDeno)) {
        compareOutputs(name, got[name], outputs, { rtol: 2e-4, atol: 2e-5 });
      }
    });

    await t.step("(b) a training step's loss and gradients match Deno's", async () => {
      for (const estimator of ["sparsemixer", "default"] as const) {
        const inBrowser = vectors.evaluate<Outputs>(
          `moejitTest.trainingStep(${JSON.stringify(estimator)})`,
          240_000,
        );
        mj.setBackend(denoBackend);
        const inDeno = await trainingStep(estimator);
        const got = await inBrowser;
        assert.ok(Object.keys(inDeno).filter((k) => k.startsWith("grad.")).length >= 10);
        compareOutputs(`train step (${estimator})`, got, inDeno, { rtol: 2e-3, atol: 1e-3 });
      }
    });

    await t.step("(c) the playground trains, its loss falls and its plots render", async () => {
      const page = await pageOf(browser, server, "/playground/");
      await page.waitFor(`globalThis.playground?.state === "idle"`, 20_000);
      const options = { ...DEFAULT_OPTIONS, experts: 4, width: 32, steps: 40 };
      await page.evaluate(`(() => {
        const f = document.querySelector("#controls");
        f.experts.value = "${options.experts}";
        f.width.value = "${options.width}";
        f.steps.value = "${options.steps}";
        document.querySelector("#train").click();
      })()`);
      // The page answers while the worker trains (the page never waits on the GPU).
      await page.waitFor(`playground.records.length >= 2`, 120_000);
      const t0 = performance.now();
      assert.equal(await page.evaluate("1 + 1"), 2);
      assert.ok(performance.now() - t0 < 5_000, "the page stays responsive while training");
      await page.waitFor(`["done", "error"].includes(playground.state)`, 240_000, 500);
      assert.equal(await page.evaluate("playground.error"), "");
      const ce = await page.evaluate<number[]>("playground.records.map((r) => r.ce)");
      assert.ok(ce.length >= 20, `logged ${ce.length} steps`);
      const head = ce.slice(0, 3).reduce((a, b) => a + b) / 3;
      const tail = ce.slice(-3).reduce((a, b) => a + b) / 3;
      assert.ok(head > 5 && tail < head - 1, `loss falls: first ${head.toFixed(3)}, last ${tail}`);
      // Every plot is an SVG; the heatmap has a cell per (layer, expert) and logged step.
      const cells = await page.evaluate<number>(
        `document.querySelectorAll("#load-plot svg rect").length`,
      );
      assert.ok(cells >= 2 * options.experts * ce.length, `${cells} heatmap cells`);
      for (const id of ["loss-plot", "maxvio-plot"]) {
        assert.ok(
          await page.evaluate(`!!document.querySelector("#${id} svg path, #${id} svg polyline")`),
        );
      }
      await page.waitFor("playground.sample", 30_000);
      await Deno.mkdir("test-artifacts", { recursive: true });
      await Deno.writeFile(
        "test-artifacts/playground.png",
        await page.screenshot({ fullPage: true }),
      );

      // The checkpoint: safetensors in the Hugging Face layout that Deno reads back.
      await page.evaluate(`document.querySelector("#download").click()`);
      const b64 = await page.waitFor<string>(
        `playground.checkpoint && btoa(Array.from(playground.checkpoint, (c) => String.fromCharCode(c)).join(""))`,
        30_000,
      );
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dir = await Deno.makeTempDir({ prefix: "moejit-playground-checkpoint-" });
      try {
        await Deno.writeFile(`${dir}/model.safetensors`, bytes);
        await Deno.writeTextFile(
          `${dir}/config.json`,
          await page.evaluate<string>("playground.checkpointConfig"),
        );
        const ck = await mj.io.loadCheckpoint<mj.nn.Params>(dir, {
          expect: playgroundConfig(options),
        });
        const { paths, leaves } = mj.treeFlatten(ck.params);
        const shapes = mj.nn.parameterShapes(ck.config);
        assert.deepEqual(sorted(paths.filter((_, i) => leaves[i])), sorted(shapes.map(([p]) => p)));
        const loss = mj.nn.crossEntropy(
          mj.nn.forward(
            ck.params,
            mj.tensor([[67, 97, 108, 108]], [1, 4], { dtype: "i32" }),
            ck.config,
          )
            .logits.reshape([-1, 256]),
          mj.tensor([97, 108, 108, 32], [4], { dtype: "i32" }),
        );
        assert.ok(Number.isFinite(await loss.item()));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });

    await t.step("(c) without WebGPU the playground says so and how to enable it", async () => {
      const page = await browser.open(new URL("/playground/", server.url).href, {
        beforeLoad: "delete Navigator.prototype.gpu;",
      });
      await page.waitFor(`globalThis.playground?.state === "unsupported"`, 10_000);
      const text = await page.evaluate<string>(`document.querySelector("#no-webgpu").innerText`);
      assert.match(text, /no WebGPU/);
      assert.match(text, /enable-unsafe-webgpu/);
      assert.equal(await page.evaluate(`document.querySelector("#train").disabled`), true);
    });
  } finally {
    await browser.close();
    await server.close();
  }
});
