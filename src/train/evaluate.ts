/**
 * Evaluation of a language model on a validation split: mean next-token loss, perplexity and
 * the expert loads, over every window of the split or a fixed number of batches spread evenly
 * over it. All batches go through one compiled program (a short last batch is padded) and their
 * results come back in one readback.
 */
import { getBackend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import type { ModelConfig } from "../nn/config.ts";
import type { Params } from "../nn/model.ts";
import type { LayerState } from "../moe/layer.ts";
import { batchTensors, type TokenDataset } from "../data/token_dataset.ts";
import { type EvalStep, evalStep } from "./step.ts";
import { yieldToEventLoop } from "../event_loop.ts";

export interface EvaluateOptions {
  /** Sequences per batch (default 16). */
  batch?: number;
  /** Tokens per sequence (default: the model's maxSeqLen). */
  seq?: number;
  /** At most this many batches, spread evenly over the split (default: every window). */
  maxBatches?: number;
  /** MoE layer state from training (Default MoE's defaults, balancer state). */
  layers?: LayerState[];
  /**
   * Asked between batches (the event loop gets a turn first, so a Ctrl-C handler can run): true
   * ends the evaluation early, over the batches done so far (at least one).
   */
  shouldStop?: () => boolean;
}

export interface Evaluation {
  /** Mean next-token loss (nats per token). */
  loss: number;
  ppl: number;
  /** Tokens scored. */
  tokens: number;
  /** Per MoE layer: (token, slot) pairs per expert, over the full batches. */
  counts: number[][];
  /** Batches evaluated; fewer than planned when `shouldStop` ended the evaluation early. */
  batches: number;
  /** True when `shouldStop` ended the evaluation before every planned batch was done. */
  stopped: boolean;
}

const steps = new WeakMap<ModelConfig, EvalStep>();

/**
 * Validation loss and perplexity of a model on a token stream.
 *
 * @example
 * ```ts
 * const data = await mj.data.prepareData({ corpus: "sotu" });
 * const { ppl } = await mj.train.evaluate(params, config, data.val, { maxBatches: 32 });
 * ```
 */
export async function evaluate(
  params: Params,
  config: ModelConfig,
  val: TokenDataset,
  opts: EvaluateOptions = {},
): Promise<Evaluation> {
  const B = opts.batch ?? 16, S = opts.seq ?? config.maxSeqLen;
  let run = steps.get(config);
  if (!run) steps.set(config, run = evalStep(config));
  const layers = opts.layers ?? [];
  const batches = val.evalBatches(B, S, opts.maxBatches);
  const pending: { rows: number; out: { nll: Tensor; counts: Tensor[] } }[] = [];
  let stopped = false;
  for (const b of batches) {
    if (pending.length > 0 && opts.shouldStop) {
      await yieldToEventLoop();
      if (opts.shouldStop()) {
        stopped = true;
        break;
      }
    }
    // A short last batch is padded with its first window (those rows are not counted), so
    // every batch runs through the one compiled program.
    const x = new Int32Array(B * S), y = new Int32Array(B * S);
    for (let r = 0; r < B; r++) {
      const src = r < b.rows ? r : 0;
      x.set(b.x.subarray(src * S, src * S + S), r * S);
      y.set(b.y.subarray(src * S, src * S + S), r * S);
    }
    const t = batchTensors({ x, y }, B, S);
    pending.push({ rows: b.rows, out: await run(params, layers, t.x, t.y) });
  }
  const nodes = pending.flatMap((p) => [p.out.nll, ...p.out.counts].map((t) => t.node));
  const values = await (await getBackend()).realize(nodes);
  let nll = 0, tokens = 0, i = 0;
  const counts: number[][] = [];
  for (const p of pending) {
    const rowNll = values[i++];
    for (let r = 0; r < p.rows; r++) nll += rowNll[r];
    tokens += p.rows * S;
    p.out.counts.forEach((_, l) => {
      const c = values[i++];
      counts[l] ??= new Array(c.length).fill(0);
      // Loads count full batches only: a padded batch routed its padding rows too.
      if (p.rows === B) c.forEach((v, e) => (counts[l][e] += Number(v)));
    });
  }
  const loss = nll / tokens;
  return { loss, ppl: Math.exp(loss), tokens, counts, batches: pending.length, stopped };
}
