/** The MoE layer in moejit, set up for timing: jitted forward and forward+backward steps. */
import * as mj from "../../mod.ts";
import type { MoeShape } from "./moe_tfjs.ts";

export async function moejitMoe(s: MoeShape, opts: Partial<mj.moe.LayerOptions> = {}) {
  const x = await mj.realize(mj.randn([s.T, s.d], { seed: 1 }));
  const params = await mj.realize({
    router: mj.randn([s.E, s.d], { seed: 2 }).mul(0.1),
    up: mj.randn([s.E, s.f, s.d], { seed: 3 }).mul(0.05),
    down: mj.randn([s.E, s.d, s.f], { seed: 4 }).mul(0.05),
  });
  const probe = await mj.realize(mj.randn([s.T, s.d], { seed: 5 }));
  const loss = (x: mj.Tensor, p: mj.moe.MoeParams) =>
    mj.moe.layer(x, p, { k: s.k, ...opts }).y.mul(probe).sum();
  const fwd = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams) => loss(x, p));
  const fwdBwd = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams) => {
    const [l, [gx, gp]] = mj.valueAndGrad(loss)(x, p);
    // Every gradient is computed (a training step needs them all); the loss is read back.
    const grads = [gx, gp.router, gp.up, gp.down];
    return { loss: l, grads };
  });
  return {
    fwd: async () => await (await fwd(x, params)).item(),
    fwdBwd: async () => await (await fwdBwd(x, params)).loss.item(),
  };
}
