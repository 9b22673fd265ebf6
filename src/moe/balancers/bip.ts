/**
 * BIP-based balancing (docs/methods.md §4.4): per-expert prices from a few alternating dual updates of the linear
 * program that assigns each token k experts under a capacity, shifting the selection only.
 */
import { fail } from "../../errors.ts";
import { Tensor } from "../../tensor.ts";
import { stopGradient } from "../../ops/meta.ts";
import { constant } from "../../ops/prim.ts";
import { kthLargest } from "../../ops/select.ts";
import { checkOptions } from "../options.ts";
import type { Balancer, BalancerKind } from "../balancer.ts";

export interface BipOptions {
  /** Alternating dual updates per step (T in the paper; default 4). */
  iters?: number;
  /** Expert capacity (kn/m); default ceil(T·k/N) — the rounding is [ASSUMED]. */
  cap?: number | "ceil" | "floor";
  /**
   * Where each training step's dual iterations start: `"previous"` (default), the prices the
   * last step left (algorithms.md §4.3's reconstruction: q persists across steps, so the
   * iterations accumulate over training), or `"zero"`, which solves every batch's problem
   * afresh from q = 0. Whether the paper warm-starts is not known. When most tokens prefer the
   * same experts (early training), the prices move load from one expert to the next a few
   * experts per iteration, so `"zero"` needs far more iterations: in the balance suite's model
   * with 64 experts (seed 0, 100 steps), T = 4 from zero averaged MaxVio 19–23 per 25 steps
   * (no balancing: 24–31), carried prices 2.4–9.1.
   * Either way the last prices are kept in `state.bipQ` for inference.
   */
  start?: "previous" | "zero";
}

/**
 * BIP-based balancing (reconstructed from the LP dual): per-expert prices q ≥ 0 carried across
 * steps in `state.bipQ`; each step runs `iters` alternating updates
 *   p_i = max(0, (k+1)-th largest of {s_ij − q_j}_j),  q_j = max(0, (cap+1)-th largest of {s_ij − p_i}_i),
 * then routes by top-k of s − q (the gates stay s); `start: "zero"` begins every step's iterations
 * from q = 0 instead of the last step's prices. The column selection over all tokens is a
 * radix select (mj.kthLargest), so it scales to 65,536 tokens.
 *
 * @example
 * ```ts
 * const r = mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.bip({ iters: 4, cap: "floor" })], state });
 * state = r.state; // { bipQ }: pass it to the next step
 * mj.balance.bip({ iters: 8, start: "zero" }); // every batch's prices solved afresh
 * ```
 * On the command line: `--balance bip:8:start=zero`.
 */
export function bip(opts: BipOptions = {}): Balancer {
  const o = checkOptions("balance.bip", opts, ["iters", "cap", "start"]);
  const iters = o.iters ?? 4;
  if (!Number.isInteger(iters) || (iters as number) < 1) {
    fail("balance.bip", `iters must be a positive integer, got ${JSON.stringify(iters)}`);
  }
  const capOpt = o.cap ?? "ceil";
  if (
    !(capOpt === "ceil" || capOpt === "floor" ||
      (Number.isInteger(capOpt) && (capOpt as number) >= 0))
  ) {
    fail(
      "balance.bip",
      `cap must be a non-negative integer, "ceil" or "floor", got ${JSON.stringify(capOpt)}`,
    );
  }
  const start = o.start ?? "previous";
  if (start !== "previous" && start !== "zero") {
    fail("balance.bip", `start must be "previous" or "zero", got ${JSON.stringify(start)}`);
  }
  return {
    kind: "bip",
    // The default stays out of the config, so that specs and checkpoints written before the
    // option existed still name the same balancer.
    config: { iters, cap: capOpt, ...(start === "zero" ? { start } : {}) },
    state: { bipQ: ({ N }) => constant(0, [N], "f32") },
    selectionShift(scores, ctx) {
      const { T, N, topK: k } = ctx;
      const cap = typeof capOpt === "number"
        ? capOpt
        : (capOpt === "ceil" ? Math.ceil : Math.floor)((T * k) / N);
      let q = ctx.state.bipQ;
      if (!(q instanceof Tensor) || q.shape.join() !== String(N)) {
        fail("balance.bip", `state.bipQ must be f32[${N}]`);
      }
      // Inference routes with the prices training left: solving them on the batch would make a
      // token's expert depend on the tokens after it.
      if (ctx.training === false) return { shift: stopGradient(q).neg() };
      const s = stopGradient(scores);
      if (start === "zero") q = constant(0, [N], "f32");
      for (let it = 0; it < (iters as number); it++) {
        const sq = s.sub(q);
        const p = k + 1 <= N
          ? sq.topk(k + 1).values.slice([null, k]).maximum(0)
          : constant(0, [T], "f32");
        q = kthLargest(s.sub(p.reshape([T, 1])), cap + 1, 0).maximum(0);
      }
      q = stopGradient(q);
      return { shift: q.neg(), state: { bipQ: q } };
    },
  };
}

/** `{ kind: "bip" }`; `bip` on the command line. */
export const bipKind: BalancerKind<BipOptions> = {
  kind: "bip",
  description: "BIP balancing: per-batch dual prices of a capacity-constrained assignment",
  create: bip,
  cli: { name: "bip", main: "iters", integer: "an integer iteration count" },
  megatron: () => ({
    missing: [[
      "BIP balancing",
      "per-batch dual prices (a bipartite-matching relaxation) shift the selection; Megatron-Core has aux/seq/global aux loss, sinkhorn and the expert bias",
    ]],
  }),
};
