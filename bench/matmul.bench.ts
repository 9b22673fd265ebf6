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
