/**
 * Side-by-side matmul comparison, alternating systems round by round in one process (the
 * machine's speed drifts by tens of percent over minutes, so only interleaved ratios mean
 * something): moejit (WebGPU) vs TensorFlow.js 4.22 (WebGPU) on the same adapter, plus numpy /
 * OpenBLAS on the CPU for scale (Debian's python3-numpy, when present).
 *
 *   deno run -A bench/peers/compare_matmul.ts [--rounds 5]
 *
 * The grouped (MoE) shapes are timed in bench/matmul.bench.ts; TF.js has no grouped matmul, so
 * its MoE layer (gathers, matMul, unsortedSegmentSum) is compared in compare_moe.ts.
 */
import { parseArgs } from "node:util";
import * as mj from "../../mod.ts";
import { tfjs } from "./tfjs.ts";
import { median, numpyMatmulGflops, table } from "./util.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const rounds = Number(values.rounds);
mj.setBackend("webgpu");
const info = await mj.backendInfo();
console.log(
  `adapter: ${info?.adapter.description} (${info?.backendHint}); ${rounds} alternating rounds`,
);

const shapes: [number, number, number][] = [[1024, 1024, 1024], [4096, 512, 2048]];
const rows: string[][] = [];
for (const [M, K, N] of shapes) {
  const flop = 2 * M * K * N;
  const a = await mj.realize(mj.randn([M, K], { seed: 1 }));
  const b = await mj.realize(mj.randn([K, N], { seed: 2 }));
  const mm = mj.jit((a: mj.Tensor, b: mj.Tensor) => a.matmul(b));
  await (await mm(a, b)).data();
  const tf = await tfjs();
  const ta = tf.randomNormal([M, K]), tb = tf.randomNormal([K, N]);
  {
    const c = tf.matMul(ta, tb);
    await c.data();
    c.dispose();
  }
  const ours: number[] = [], theirs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    await (await mm(a, b)).data();
    ours.push(performance.now() - t0);
    t0 = performance.now();
    const c = tf.matMul(ta, tb);
    await c.data();
    c.dispose();
    theirs.push(performance.now() - t0);
  }
  const g = (ms: number) => flop / ms / 1e6;
  const np = numpyMatmulGflops(M, K, N);
  const mo = g(median(ours)), tj = g(median(theirs));
  rows.push([
    `${M}x${K}x${N}`,
    mo.toFixed(2),
    tj.toFixed(2),
    (mo / tj).toFixed(2) + "x",
    np === null ? "n/a" : np.toFixed(1),
    np === null ? "n/a" : (100 * mo / np).toFixed(1) + "%",
  ]);
}
console.log(
  table(
    ["shape", "moejit GFLOP/s", "tfjs GFLOP/s", "ratio", "numpy GFLOP/s", "moejit/numpy"],
    rows,
  ),
);
