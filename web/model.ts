/**
 * The playground's model: a two-layer byte-level MoE language model built from the page's
 * choices (the same choices always give the same model).
 */
import * as mj from "../browser.ts";
import type { PlaygroundOptions } from "./protocol.ts";

/** The balancer specs of a playground choice. */
export function balanceSpecs(b: PlaygroundOptions["balancer"]): mj.nn.BalanceSpec[] {
  switch (b) {
    case "none":
      return [];
    case "aux":
      return [{ kind: "auxLoss", alpha: 0.01 }];
    case "lossfree":
      return [{ kind: "lossFree", rate: 1e-3 }];
    case "bip":
      return [{ kind: "bip", iters: 4 }];
  }
}

/** The model of a set of options (the same choices always give the same model). */
export function playgroundConfig(o: PlaygroundOptions): mj.nn.ModelConfig {
  return mj.nn.modelConfig({
    vocabSize: 256,
    dModel: o.width,
    nLayers: 2,
    nHeads: Math.max(1, o.width / 16),
    maxSeqLen: o.seq,
    dFf: 2 * o.width,
    experts: o.experts,
    topK: o.topK,
    estimator: o.estimator,
    balance: balanceSpecs(o.balancer),
  });
}
