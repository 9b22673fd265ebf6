/**
 * A balancer with state, registered from outside the library: loss-free balancing driven by an
 * exponential moving average of the load violation.
 *
 * Loss-free balancing (Wang et al., "Auxiliary-Loss-Free Load Balancing Strategy for
 * Mixture-of-Experts", 2024; DeepSeek-V3) adds a per-expert bias b to the scores for the
 * selection only and, after each step, moves it by b_i ← b_i + u·sign(c̄ − c_i): toward experts
 * that received fewer than the mean load c̄ = T·k/N. This variant moves it by the sign of a
 * moving average of the relative violation instead,
 *
 *   e_i ← β·e_i + (1 − β)·(c̄ − c_i)/c̄,    b_i ← b_i + u·sign(e_i),
 *
 * so one noisy batch moves the bias less (β = 0 is the original rule). Its state is both vectors
 * (`emaBias`, `emaViolation`), declared below, carried between steps and saved in checkpoints;
 * it reports `bias_range` (max b − min b) as a metric.
 *
 * The file registers the kind when imported, so any moejit command line can name it:
 *
 *   deno run -A examples/grin.ts --import examples/ema_loss_free_balancer.ts \
 *     --balance aux:0.01,lossfree-ema:0.001:beta=0.9
 *
 * and run directly it trains with it (the flags of grin.ts apply):
 *
 *   deno run -A examples/ema_loss_free_balancer.ts --steps 300
 */
import * as mj from "../mod.ts";

export interface EmaLossFreeOptions {
  /** Update rate u of the bias (default 1e-3). */
  rate?: number;
  /** EMA decay β of the violation (default 0.9; 0 is plain loss-free balancing). */
  beta?: number;
}

const OPTIONS = ["rate", "beta"];

/**
 * The balancer: a selection bias moved by the sign of the EMA of the relative load violation.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { topK: 2, balance: [emaLossFree({ rate: 1e-3 })], state });
 * state = r.state; // { emaBias, emaViolation }
 * ```
 */
export function emaLossFree(opts: EmaLossFreeOptions = {}): mj.balance.Balancer {
  for (const k of Object.keys(opts)) {
    if (!OPTIONS.includes(k)) {
      throw new mj.MoejitError(
        "emaLossFree",
        `unknown option ${JSON.stringify(k)}; expected one of ${OPTIONS.join(", ")}`,
      );
    }
  }
  const rate = opts.rate ?? 1e-3, beta = opts.beta ?? 0.9;
  if (typeof rate !== "number" || !(rate >= 0) || !Number.isFinite(rate)) {
    throw new mj.MoejitError("emaLossFree", `rate must be a number ≥ 0, got ${rate}`);
  }
  if (typeof beta !== "number" || !(beta >= 0 && beta < 1)) {
    throw new mj.MoejitError("emaLossFree", `beta must be a number in [0, 1), got ${beta}`);
  }
  return {
    kind: "emaLossFree",
    config: { rate, beta },
    // Both start at zero; the layer fills them in when the state passed in lacks them.
    state: {
      emaBias: ({ N }) => mj.zeros([N]),
      emaViolation: ({ N }) => mj.zeros([N]),
    },
    metrics: ["bias_range"],
    selectionShift: (_scores, { state }) => ({ shift: mj.stopGradient(state.emaBias) }),
    finish({ routing, state, T, N, topK }) {
      const mean = (T * topK) / N;
      const violation = mj.full([N], mean).sub(routing.counts.cast("f32")).div(mean);
      const e = mj.stopGradient(state.emaViolation.mul(beta).add(violation.mul(1 - beta)));
      const b = mj.stopGradient(state.emaBias.add(e.sign().mul(rate)));
      return {
        state: { emaBias: b, emaViolation: e },
        metrics: { bias_range: b.max().sub(b.min()) },
      };
    },
  };
}

/** `{ kind: "emaLossFree", rate, beta }`; `lossfree-ema[:rate][:beta=β]` on the command line. */
export const emaLossFreeKind: mj.balance.BalancerKind<EmaLossFreeOptions> = {
  kind: "emaLossFree",
  description: "loss-free balancing whose bias follows the sign of an EMA of the load violation",
  create: emaLossFree,
  cli: { name: "lossfree-ema", main: "rate" },
  megatron: () => ({
    missing: [[
      "loss-free balancing with an EMA of the violation",
      "Megatron-Core's expert bias follows the sign of each batch's violation, on sigmoid routers only",
    ]],
  }),
};

mj.balance.registerBalancer(emaLossFreeKind);

if (import.meta.main) {
  const { runCli } = await import("../src/train/cli.ts");
  await runCli(Deno.args, {
    script: "examples/ema_loss_free_balancer.ts",
    description:
      "Train a GRIN MoE language model balanced by loss-free balancing with an EMA of the load violation.",
    model: {
      estimator: "sparsemixer",
      topK: 2,
      balance: [{ kind: "emaLossFree", rate: 1e-3, beta: 0.9 }],
    },
    run: { out: "out/ema_loss_free" },
  });
}
