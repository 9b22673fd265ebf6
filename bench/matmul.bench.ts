/**
 * f32 matmul throughput (includes reading C back, like the peer figures). Run with
 * `deno bench -A bench/matmul.bench.ts`; for an alternating side-by-side comparison with
 * TensorFlow.js and numpy/OpenBLAS, run `deno run -A bench/peers/compare_matmul.ts`.
 */
import * as mj from "../mod.ts";
import { tfjs } from "./peers/tfjs.ts";

mj.setBackend("webgpu");

export const MATMUL_SHAPES: [number, number, number][] = [[1024, 1024, 1024], [4096, 512, 2048]];

for (const [M, K, N] of MATMUL_SHAPES) {
  const group = `matmul ${M}x${K}x${N}`;
  const a = await mj.realize(mj.randn([M, K], { seed: 1 }));
  const b = await mj.realize(mj.randn([K, N], { seed: 2 }));
  const mm = mj.jit((a: mj.Tensor, b: mj.Tensor) => a.matmul(b));
  await (await mm(a, b)).data();
  Deno.bench({ name: `moejit ${group}`, group, baseline: true, n: 5, warmup: 1 }, async () => {
    await (await mm(a, b)).data();
  });
  const tf = await tfjs();
  const ta = tf.randomNormal([M, K]), tb = tf.randomNormal([K, N]);
  Deno.bench({ name: `tfjs-webgpu ${group}`, group, n: 5, warmup: 1 }, async () => {
    const c = tf.matMul(ta, tb);
    await c.data();
    c.dispose();
  });
}

// The grouped (per-expert) matmuls of the MoE issue's layer shapes: rows T·k in expert order,
// weights [E, out, in], uniform random routing.
for (const [T, k, E, d, f] of [[4096, 2, 8, 256, 512], [4096, 8, 64, 256, 64]]) {
  const group = `grouped matmul T=${T} k=${k} E=${E} ${d}→${f}`;
  const P = T * k;
  const indices = await mj.realize(mj.rand([T, k], { seed: 3 }).mul(E).floor().cast("i32"));
  const table = mj.moe.routingTable(indices, E);
  const offsets = await mj.realize(table.offsets);
  const xs = await mj.realize(mj.randn([P, d], { seed: 4 }));
  const w = await mj.realize(mj.randn([E, f, d], { seed: 5 }));
  const gm = mj.jit((xs: mj.Tensor, w: mj.Tensor, offsets: mj.Tensor) =>
    mj.moe.groupedMatmul(xs, w, { ...table, offsets })
  );
  await (await gm(xs, w, offsets)).data();
  Deno.bench({
    name: `moejit ${group} (${(2 * P * d * f / 1e9).toFixed(2)} GFLOP)`,
    group,
    n: 5,
    warmup: 1,
  }, async () => {
    await (await gm(xs, w, offsets)).data();
  });
}
