/**
 * The decoder-only MoE language model: embedding → L blocks (causal self-attention with RoPE and
 * an MoE or dense FFN, pre-norm or parallel) → final norm → tied or untied LM head.
 */
import { fail } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { constant } from "../ops/prim.ts";
import { randn } from "../ops/creation.ts";
import { layer as moeLayer, type LayerState } from "../moe/layer.ts";
import { initialState } from "../moe/state.ts";
import type { RouteResult } from "../moe/route.ts";
import type { Balancer } from "../moe/balancers/index.ts";
import { renamed } from "../deprecation.ts";
import { type AttentionOptions, embedding, linear, mlp, norm, selfAttention } from "./layers.ts";
import { mixtureOfAttention, type MoaParams } from "./moa.ts";
import {
  balancerOf,
  type BalanceSpec,
  estimatorOf,
  estimatorSettings,
  layerBalance,
  type ModelConfig,
  parameterShapes,
} from "./config.ts";

/** A parameter tree of the layout documented in config.ts. */
export type Params = {
  embed: Tensor;
  layers: {
    attnNorm: { weight: Tensor; bias?: Tensor };
    /** One attention, or a mixture of attention experts (then with a router, stacked [N, d, d]). */
    attn: { q: Tensor; k: Tensor; v: Tensor; o: Tensor; router?: Tensor };
    ffnNorm?: { weight: Tensor; bias?: Tensor };
    moe?: { router: Tensor; routerBias?: Tensor; gate?: Tensor; up: Tensor; down: Tensor };
    mlp?: { gate?: Tensor; up: Tensor; down: Tensor };
  }[];
  finalNorm: { weight: Tensor; bias?: Tensor };
  lmHead?: Tensor;
};

/** Sets `value` at a dotted path inside a tree of objects and arrays (creating containers). */
export function setPath(tree: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let node: Record<string, unknown> = tree;
  keys.forEach((k, i) => {
    if (i === keys.length - 1) {
      node[k] = value;
      return;
    }
    const nextIsIndex = /^\d+$/.test(keys[i + 1]);
    node[k] ??= nextIsIndex ? [] : {};
    node = node[k] as Record<string, unknown>;
  });
}

/**
 * Fresh parameters: weights ~ N(0, initStd²) (output projections scaled by 1/√(2L), the GPT-2
 * residual scaling), norm weights 1, biases (norms', routers') 0. Deterministic for a seed: every parameter has its
 * own counter-based stream, so the same seed gives the same model on every backend.
 *
 * @example
 * ```ts
 * const params = await mj.realize(mj.nn.initParams(mj.nn.modelConfig({ nLayers: 2 }), 0));
 * ```
 */
export function initParams(config: ModelConfig, seed = 0): Params {
  const tree: Record<string, unknown> = {};
  const outScale = 1 / Math.sqrt(2 * config.nLayers);
  parameterShapes(config).forEach(([path, shape], i) => {
    let t: Tensor;
    if (path.endsWith(".weight") && shape.length === 1) t = constant(1, shape, "f32");
    else if (path.endsWith(".bias") || path.endsWith(".routerBias")) t = constant(0, shape, "f32");
    else {
      const std = /\.(attn\.o|moe\.down|mlp\.down)$/.test(path)
        ? config.initStd * outScale
        : config.initStd;
      t = randn(shape, { seed: seed * 65536 + i }).mul(std);
    }
    setPath(tree, path, t);
  });
  return tree as unknown as Params;
}

/**
 * Balancers from their serializable specs (every option of a spec reaches its constructor), for a
 * model run on sequences of `seqLen` tokens.
 *
 * @example
 * ```ts
 * const balance = mj.nn.balancersOf([{ kind: "auxLoss", alpha: 0.01 }, { kind: "bip", cap: 3 }], 128);
 * ```
 */
export function balancersOf(specs: readonly BalanceSpec[], seqLen: number): Balancer[] {
  return specs.map((b) => balancerOf(b, seqLen));
}

/**
 * The MoE state of every layer before the first step: what each layer's balancers and estimator
 * declare, at their initial values, in the order a training step returns it (so the first step
 * and the next share one compiled program). Empty for a dense model.
 *
 * @example
 * ```ts
 * const layers = mj.nn.initialLayerState(config); // e.g. [{ lossFreeBias: zeros [E] }, …]
 * ```
 */
export function initialLayerState(config: ModelConfig): LayerState[] {
  if (config.ffn !== "moe") return [];
  const est = estimatorOf(config);
  const sizes = { N: config.experts, d: config.dModel, topK: config.topK };
  return Array.from({ length: config.nLayers }, (_, i) =>
    initialState([
      ...balancersOf(layerBalance(config, i), config.maxSeqLen).map((b) => ({
        who: `balancer ${b.kind}`,
        state: b.state,
      })),
      { who: `estimator ${est.name}`, state: est.state },
    ], sizes));
}

export interface ForwardOptions {
  /** Training behaviour of the MoE layers (sampling estimators, EMA updates); default true. */
  training?: boolean;
  /** Random key (u32 [2]) for sampling estimators: pass a per-step key into a jitted step. */
  key?: Tensor;
  /** Per-layer MoE state from the previous step (Default MoE's ehat, balancer state). */
  state?: LayerState[];
  /**
   * Use the fused attention kernel (default: whenever the head size allows; see nn.attention);
   * false builds the composite graph.
   */
  fusedAttention?: boolean;
  /** @deprecated `{ fused }` as `fusedAttention` (kept for one release, with a warning). */
  attentionKernel?: AttentionOptions;
}

export interface ForwardResult {
  /** [B, S, V] next-token logits. */
  logits: Tensor;
  /** Balancer losses summed over layers (load_balancing_loss, z_loss). */
  losses: Record<string, Tensor>;
  /** Per-layer MoE state for the next step. */
  state: LayerState[];
  /** Per-layer routing (for metrics); empty for dense models. */
  routing: RouteResult[];
  /** Per-layer attention-router gates [B, S, N] of mixtures of attention; empty otherwise. */
  attnGates: Tensor[];
}

/**
 * The model's forward pass on token ids [B, S].
 *
 * @example
 * ```ts
 * const { logits, losses } = mj.nn.forward(params, tokens, config, { key });
 * ```
 */
export function forward(
  params: Params,
  tokens: Tensor,
  config: ModelConfig,
  options: ForwardOptions = {},
): ForwardResult {
  const opts = fusedAttentionOf("nn.forward", options);
  if (tokens.dtype !== "i32" || tokens.ndim !== 2) {
    fail("nn.forward", `expected i32 token ids [B, S], got ${tokens.dtype}[${tokens.shape}]`);
  }
  const [B, S] = tokens.shape;
  if (S > config.maxSeqLen) {
    fail("nn.forward", `sequence length ${S} exceeds the model's maxSeqLen ${config.maxSeqLen}`);
  }
  if (params.layers.length !== config.nLayers) {
    fail("nn.forward", `params have ${params.layers.length} layers, the config ${config.nLayers}`);
  }
  const training = opts.training ?? true;
  // One balancer list per distinct spec list (per layer when the config gives them per layer).
  const built = new Map<BalanceSpec[], Balancer[]>();
  const balanceOf = (i: number) => {
    const specs = layerBalance(config, i);
    if (!built.has(specs)) built.set(specs, balancersOf(specs, S));
    return built.get(specs)!;
  };
  const est = estimatorOf(config);
  const estimator = { kind: config.estimator, ...estimatorSettings(config) };
  let x = embedding(tokens, params.embed); // [B, S, d]
  const d = config.dModel;
  const losses: Record<string, Tensor> = {};
  const state: LayerState[] = [];
  const routing: RouteResult[] = [];
  const ffn = (h: Tensor, p: Params["layers"][number], i: number): Tensor => {
    if (config.ffn === "dense") return mlp(h, p.mlp!, config.activation);
    const flat = h.reshape([B * S, d]);
    const r = moeLayer(flat, p.moe!, {
      topK: config.topK,
      estimator,
      balance: balanceOf(i),
      ...(config.normalizeTopK ? { normalizeTopK: true } : {}),
      training,
      ...(config.activation !== "swiglu" ? { activation: config.activation } : {}),
      ...(opts.state?.[i] ? { state: opts.state[i] } : {}),
      // Each layer draws its own noise: the step's key, offset by the layer.
      ...(est.sampling && opts.key ? { key: opts.key.add(i * 7919).cast("u32") } : {}),
    });
    for (const [name, v] of Object.entries(r.losses)) {
      losses[name] = losses[name] ? losses[name].add(v) : v;
    }
    state.push(r.state);
    routing.push(r);
    return r.y.reshape([B, S, d]);
  };
  const attnGates: Tensor[] = [];
  const attend = (h: Tensor, p: Params["layers"][number]): Tensor => {
    const fused = opts.fusedAttention !== undefined ? { fused: opts.fusedAttention } : {};
    if (config.attnExperts === 1) {
      return selfAttention(h, p.attn, config.nHeads, config.ropeTheta, {
        ...fused,
        rope: config.rope,
      });
    }
    const r = mixtureOfAttention(h, p.attn as MoaParams, {
      nHeads: config.nHeads,
      rope: config.rope,
      ropeTheta: config.ropeTheta,
      topK: config.attnTopK,
      ...(opts.fusedAttention !== undefined ? { fusedAttention: opts.fusedAttention } : {}),
    });
    attnGates.push(r.gates);
    return r.y;
  };
  params.layers.forEach((p, i) => {
    if (config.block === "parallel") {
      const h = norm(x, p.attnNorm, config.norm, config.normEps);
      x = x.add(attend(h, p)).add(ffn(h, p, i));
    } else {
      x = x.add(attend(norm(x, p.attnNorm, config.norm, config.normEps), p));
      x = x.add(ffn(norm(x, p.ffnNorm!, config.norm, config.normEps), p, i));
    }
  });
  x = norm(x, params.finalNorm, config.norm, config.normEps);
  const logits = linear(x, config.tiedEmbeddings ? params.embed : params.lmHead!);
  return { logits, losses, state, routing, attnGates };
}

/**
 * `attentionKernel: { fused }` (deprecated) as `fusedAttention`, in a copy of the options.
 *
 * @example
 * ```ts
 * fusedAttentionOf("nn.forward", { attentionKernel: { fused: false } }); // { fusedAttention: false }
 * ```
 */
export function fusedAttentionOf<T extends { fusedAttention?: boolean }>(
  op: string,
  opts: T & { attentionKernel?: AttentionOptions },
): T {
  if (opts.attentionKernel === undefined) return opts;
  const o = renamed(op, opts, "attentionKernel", "fusedAttention") as T & {
    fusedAttention?: unknown;
  };
  const k = o.fusedAttention as AttentionOptions | boolean | undefined;
  return { ...o, fusedAttention: typeof k === "object" ? k?.fused : k } as T;
}
