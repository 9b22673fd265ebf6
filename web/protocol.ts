/**
 * Messages between the playground page and its training worker. The worker owns the model and
 * the GPU; the page only draws. Every message is plain data (structured-clone safe).
 */

/** What the page lets a visitor choose. */
export interface PlaygroundOptions {
  estimator: "topk" | "default" | "sparsemixer";
  balancer: "none" | "aux" | "lossfree" | "bip";
  experts: number;
  topK: number;
  /** dModel; experts are 2× as wide. */
  width: number;
  steps: number;
  /** Sequences per batch and tokens per sequence. */
  batch: number;
  seq: number;
  lr: number;
  seed: number;
}

/** Defaults: a model that trains visibly in a minute or two on a software rasterizer. */
export const DEFAULT_OPTIONS: PlaygroundOptions = {
  estimator: "sparsemixer",
  balancer: "aux",
  experts: 8,
  topK: 2,
  width: 64,
  steps: 300,
  batch: 8,
  seq: 64,
  lr: 3e-3,
  seed: 0,
};

/** One logged step: the fields of moejit's metrics records that the plots read. */
export interface StepRecord {
  step: number;
  loss: number;
  ce: number;
  lr: number;
  tokens_per_s: number;
  layers: { max_vio: number; tokens_per_expert: number[] }[];
}

export type ToWorker =
  | { type: "start"; options: PlaygroundOptions }
  | { type: "stop" }
  | { type: "sample"; prompt: string }
  | { type: "checkpoint" };

export type FromWorker =
  | { type: "started"; config: Record<string, unknown>; parameters: number; adapter: string }
  | { type: "step"; record: StepRecord }
  | { type: "done"; steps: number; stopped: boolean; seconds: number }
  | { type: "sample"; prompt: string; text: string }
  | { type: "checkpoint"; model: Uint8Array; config: string }
  | { type: "error"; message: string };
