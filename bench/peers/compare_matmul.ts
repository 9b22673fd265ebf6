/**
 * Side-by-side matmul comparison, alternating systems round by round in one process (the
 * machine's speed drifts by tens of percent over minutes, so only interleaved ratios mean
 * something): moejit on WebGPU vs TensorFlow.js 4.22 (WebGPU) on the same adapter, moejit's native
 * backend with the system BLAS and with its own sgemm, and numpy / OpenBLAS on the CPU (Debian's
 * python3-numpy, as many threads as the machine has cores) in a python3 process that times one
 * product per round.
 *
 *   deno run -A bench/peers/compare_matmul.ts [--rounds 5]
 *
 * The grouped (MoE) shapes are timed in bench/matmul.bench.ts; TF.js has no grouped matmul, so
 * its MoE layer (gathers, matMul, unsortedSegmentSum) is compared in compare_moe.ts.
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { tfjs } from "./tfjs.ts";
import { median, numpyMatmulPeer, table } from "./util.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    "no-tfjs": { type: "boolean", default: false },
    "no-webgpu": { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds);
const info = await mj.backendInfo();
const native = await mj.nativeInfo();
console.log(
  `adapter: ${info?.adapter.description} (${info?.backendHint}); native: ${
    native ? `${native.compiler}, ${native.threads} threads, BLAS ${native.blas ?? "none"}` : "n/a"
  }; ${rounds} alternating rounds`,
);

/** A jitted a·b on one backend; native runs with the system BLAS or moejit's own sgemm. */
async function moejitMatmul(backend: mj.BackendName, M: number, K: number, N: number, blas = true) {
  const run = async <T>(f: () => Promise<T>): Promise<T> => {
    mj.setBackend(backend);
    const was = Deno.env.get("MOEJIT_NATIVE_BLAS");
    if (!blas) Deno.env.set("MOEJIT_NATIVE_BLAS", "0");
    try {
      return await f();
    } finally {
      if (!blas) {
        was === undefined
          ? Deno.env.delete("MOEJIT_NATIVE_BLAS")
          : Deno.env.set("MOEJIT_NATIVE_BLAS", was);
      }
    }
  };
  const [a, b] = await run(() =>
    mj.realize([mj.randn([M, K], { seed: 1 }), mj.randn([K, N], { seed: 2 })])
  );
  const mm = mj.jit((a: mj.Tensor, b: mj.Tensor) => a.matmul(b));
  // WebGPU needs a readback to wait for the work; native results are on the host when it returns.
  const once = () =>
    run(async () => {
      const c = await mm(a, b);
      if (backend === "webgpu") await c.data();
    });
  await once();
  return once;
}

const shapes: [number, number, number][] = [[1024, 1024, 1024], [4096, 512, 2048]];
const rows: string[][] = [];
for (const [M, K, N] of shapes) {
  const flop = 2 * M * K * N;
  const systems: Record<string, () => Promise<unknown>> = {};
  if (!values["no-webgpu"] && info) systems.webgpu = await moejitMatmul("webgpu", M, K, N);
  if (native) {
    if (native.blas) systems.native = await moejitMatmul("native", M, K, N);
    systems["native, own sgemm"] = await moejitMatmul("native", M, K, N, false);
  }
  if (!values["no-tfjs"] && info) {
    const tf = await tfjs();
    const ta = tf.randomNormal([M, K]), tb = tf.randomNormal([K, N]);
    systems.tfjs = async () => {
      const c = tf.matMul(ta, tb);
      await c.data();
      c.dispose();
    };
    await systems.tfjs();
  }
  const numpy = await numpyMatmulPeer(M, K, N);
  const times: Record<string, number[]> = {};
  for (let r = 0; r < rounds; r++) {
    for (const [name, f] of Object.entries(systems)) {
      const t0 = performance.now();
      await f();
      (times[name] ??= []).push(performance.now() - t0);
    }
    // numpy's own clock: the product alone, without the pipe's round trip.
    if (numpy) (times.numpy ??= []).push(await numpy.run("matmul"));
  }
  await numpy?.close();
  const np = times.numpy ? flop / median(times.numpy) / 1e6 : null;
  const g = (name: string) => (times[name] ? flop / median(times[name]) / 1e6 : NaN);
  const f1 = (v: number) => (Number.isNaN(v) ? "n/a" : v.toFixed(1));
  const rel = (v: number, to: number | null) =>
    Number.isNaN(v) || to === null ? "n/a" : (v / to).toFixed(2) + "x";
  rows.push([
    `${M}x${K}x${N}`,
    f1(g("webgpu")),
    f1(g("tfjs")),
    f1(g("native")),
    f1(g("native, own sgemm")),
    np === null ? "n/a" : np.toFixed(1),
    rel(g("native"), np),
    rel(g("native, own sgemm"), np),
  ]);
}
console.log(
  table(
    [
      "shape",
      "webgpu GFLOP/s",
      "tfjs",
      "native (BLAS)",
      "native (own)",
      "numpy",
      "native/numpy",
      "own/numpy",
    ],
    rows,
  ),
);
