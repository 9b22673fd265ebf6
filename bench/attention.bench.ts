/**
 * Causal self-attention forward+backward, fused kernel against the composite graph (matmul,
 * mask, softmax, matmul), at the default LM's shape: 16 sequences × 4 heads × 128 tokens × 32.
 * Each call reads the loss back (one host round trip, ~11 ms on llvmpipe, is in both).
 */
import * as mj from "../mod.ts";

mj.setBackend("webgpu");
const B = 16, H = 4, S = 128, Dh = 32;
const q = await mj.realize(mj.randn([B, H, S, Dh], { seed: 1 }));
const k = await mj.realize(mj.randn([B, H, S, Dh], { seed: 2 }));
const v = await mj.realize(mj.randn([B, H, S, Dh], { seed: 3 }));

for (const fused of [true, false]) {
  const step = mj.jit((q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) => {
    const loss = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
      mj.nn.attention(q, k, v, { fused }).square().mean();
    const [l, g] = mj.valueAndGrad(loss)(q, k, v);
    return [l, ...g];
  });
  await (await step(q, k, v))[0].data();
  Deno.bench({
    name: fused ? "fused attention fwd+bwd" : "composite attention fwd+bwd",
    group: `attention ${B}×${H}×${S}×${Dh}`,
    baseline: !fused,
    n: 20,
    warmup: 2,
  }, async () => {
    await (await step(q, k, v))[0].data();
  });
}
