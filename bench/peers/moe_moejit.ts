/** The MoE layer in moejit, set up for timing: jitted forward and forward+backward steps. */
import * as mj from "../../mod.ts";
import type { MoeShape } from "./moe_tfjs.ts";

/** How the timed steps treat the layer's balancer outputs. */
export interface MoejitMoeRun {
  /**
   * Do what a training step does with the layer's state (loss-free bias, BIP prices, Default
   * MoE's EMA): feed it in and return the updated state, carried from call to call, so its update
   * is part of the timed work. Default false (the state is neither fed in nor returned).
   */
  carryState?: boolean;
  /** The backend the steps run on (default: the one in use when called). */
  backend?: mj.BackendName;
}

/**
 * Jitted steps of one MoE layer on random data. The scalar loss is y·probe plus the layer's
 * balancer losses (auxiliary, z), as in a training step, so a loss balancer's work is timed too.
 */
export async function moejitMoe(
  s: MoeShape,
  opts: Partial<mj.moe.LayerOptions> = {},
  run: MoejitMoeRun = {},
) {
  const backend = run.backend ?? await mj.backendName();
  mj.setBackend(backend);
  const x = await mj.realize(mj.randn([s.T, s.d], { seed: 1 }));
  const params = await mj.realize({
    router: mj.randn([s.E, s.d], { seed: 2 }).mul(0.1),
    up: mj.randn([s.E, s.f, s.d], { seed: 3 }).mul(0.05),
    down: mj.randn([s.E, s.d, s.f], { seed: 4 }).mul(0.05),
  });
  const probe = await mj.realize(mj.randn([s.T, s.d], { seed: 5 }));
  const carry = run.carryState ?? false;
  const loss = (x: mj.Tensor, p: mj.moe.MoeParams, state: mj.moe.LayerState) => {
    const r = mj.moe.layer(x, p, { topK: s.k, ...opts, ...(carry ? { state } : {}) });
    const l = Object.values(r.losses).reduce((a, b) => a.add(b), r.y.mul(probe).sum());
    return [l, r.state] as const;
  };
  const fwd = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams, state: mj.moe.LayerState) =>
    loss(x, p, state)[0]
  );
  const fwdBwd = mj.jit((x: mj.Tensor, p: mj.moe.MoeParams, state: mj.moe.LayerState) => {
    const [l, [gx, gp], next] = mj.valueAndGrad(
      (x: mj.Tensor, p: mj.moe.MoeParams) => loss(x, p, state),
      { hasAux: true },
    )(x, p);
    // Every gradient is computed (a training step needs them all); the loss is read back.
    const grads = [gx, gp.router, gp.up, gp.down];
    return { loss: l, grads, ...(carry ? { state: next } : {}) };
  });
  // With carried state, one step first gives the state its shapes, so every timed call replays
  // the same compiled step.
  let state: mj.moe.LayerState = {};
  if (carry) state = (await fwdBwd(x, params, state)).state ?? {};
  return {
    fwd: async () => {
      mj.setBackend(backend);
      return await (await fwd(x, params, state)).item();
    },
    fwdBwd: async () => {
      mj.setBackend(backend);
      const o = await fwdBwd(x, params, state);
      if (carry) state = o.state ?? {};
      return await o.loss.item();
    },
  };
}
