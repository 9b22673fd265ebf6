/**
 * Autoregressive sampling from the language model. The model runs on a fixed window of
 * `maxSeqLen` tokens (left-aligned, padded on the right: causal attention never looks right, so
 * padding changes nothing) and the position to read is a runtime input, so the whole generation
 * uses one compiled program however long the text grows.
 */
import { yieldToEventLoop } from "../event_loop.ts";
import { fail } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { jit } from "../jit.ts";
import { fromHost, rand } from "../ops/creation.ts";
import { takeRowsTrusted } from "../ops/indexing.ts";
import type { LayerState } from "../moe/layer.ts";
import type { ModelConfig } from "./config.ts";
import { forward, type Params } from "./model.ts";

export interface GenerateOptions {
  /** Tokens to generate (default 64). */
  maxNewTokens?: number;
  /** Softmax temperature; 0 picks the most likely token (default 0.8). */
  temperature?: number;
  /** Seed of the sampling noise (default 0): the same seed gives the same text on every backend. */
  seed?: number;
  /** Per-layer MoE state from training (Default MoE's defaults); optional. */
  state?: LayerState[];
  /** Called with each new token id as it is sampled (e.g. to stream text). */
  onToken?: (id: number) => void;
  /** Stops the generation early (the tokens sampled so far are returned), e.g. on Ctrl-C. */
  signal?: AbortSignal;
}

const KEYS = ["maxNewTokens", "temperature", "seed", "state", "onToken", "signal"];

/** The compiled sampler's arguments: the window's logits at `pos`, temperature, noise key. */
type SamplerArgs = [
  params: Params,
  state: LayerState[],
  window: Tensor,
  pos: Tensor,
  invTemp: number,
  key: Tensor,
];
type Sampler = (...args: SamplerArgs) => Promise<Tensor>;

const samplers = new WeakMap<ModelConfig, { greedy: Sampler; sampled: Sampler }>();

function samplersFor(config: ModelConfig) {
  let s = samplers.get(config);
  if (!s) {
    const make = (greedy: boolean): Sampler =>
      jit(
        (...[params, state, window, pos, invTemp, key]: SamplerArgs) => {
          const { logits } = forward(params, window, config, { training: false, state });
          const row = takeRowsTrusted(logits.reshape([-1, config.vocabSize]), pos); // [1, V]
          if (greedy) return row.argmax(-1);
          // Gumbel-max: argmax(logits/T + G) samples softmax(logits/T) exactly.
          const u = rand(row.shape, { key }).maximum(1e-20);
          return row.mul(invTemp).sub(u.log().neg().log()).argmax(-1);
        },
        { name: greedy ? "generate (greedy)" : "generate" },
      );
    s = { greedy: make(true), sampled: make(false) };
    samplers.set(config, s);
  }
  return s;
}

/**
 * Continues `prompt` (token ids) by sampling `maxNewTokens` tokens (fewer when `signal` aborts);
 * returns the new ids.
 *
 * @example
 * ```ts
 * const ids = await mj.nn.generate(params, config, tokenizer.encode("Call me"), { maxNewTokens: 80 });
 * console.log(tokenizer.decode(ids));
 * ```
 */
export async function generate(
  params: Params,
  config: ModelConfig,
  prompt: readonly number[],
  opts: GenerateOptions = {},
): Promise<number[]> {
  for (const k of Object.keys(opts)) {
    if (!KEYS.includes(k)) {
      fail("nn.generate", `unknown option ${JSON.stringify(k)}; expected ${KEYS.join(", ")}`);
    }
  }
  const n = opts.maxNewTokens ?? 64;
  const temperature = opts.temperature ?? 0.8;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(n) || n < 0) {
    fail("nn.generate", `maxNewTokens must be a non-negative integer, got ${n}`);
  }
  if (!(temperature >= 0)) fail("nn.generate", `temperature must be ≥ 0, got ${temperature}`);
  if (!prompt.length) fail("nn.generate", "the prompt must hold at least one token");
  for (const t of prompt) {
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
      fail("nn.generate", `prompt token ${t} is outside the vocabulary [0, ${config.vocabSize})`);
    }
  }
  const W = config.maxSeqLen;
  const { greedy, sampled } = samplersFor(config);
  const state = opts.state ?? [];
  const text = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (opts.signal) {
      await yieldToEventLoop(); // lets an abort (a Ctrl-C handler) run
      if (opts.signal.aborted) break;
    }
    const ctx = text.slice(-W);
    const window = new Int32Array(W);
    window.set(ctx);
    const pos = fromHost(Int32Array.of(ctx.length - 1), [1], "i32");
    const key = fromHost(Uint32Array.of(seed >>> 0, i), [2], "u32");
    const run = temperature === 0 ? greedy : sampled;
    const id = (await (await run(
      params,
      state,
      fromHost(window, [1, W], "i32"),
      pos,
      temperature ? 1 / temperature : 1,
      key,
    )).data())[0];
    text.push(id);
    out.push(id);
    opts.onToken?.(id);
  }
  return out;
}
