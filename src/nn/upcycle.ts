/**
 * Upcycling dense models into a mixture of experts (docs/methods.md §3): from a seed model and
 * N−1 copies of it specialised by continued pretraining (same architecture), build
 *
 *  - BTX (Branch-Train-MiX): FFN experts copied from the dense models; attention, norms and
 *    embeddings averaged; the FFN router random.
 *  - BAM (Branch-Attend-Mix): FFN experts and attention experts copied (soft-routed mixture of
 *    attention); norms and embeddings averaged; in the sharedKV variant the shared K/V
 *    projections averaged too [ASSUMED: the paper does not say]; both routers random.
 *
 * Expert 0 is the seed (BAM's "generalist"), experts 1… the specialised models in the order
 * given. Averages add the models in that order and divide by N, the same on every backend.
 */
import { fail, formatValue } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { randn } from "../ops/creation.ts";
import { stack } from "../ops/movement.ts";
import { type BalanceSpec, type ModelConfig, modelConfig } from "./config.ts";
import type { Params } from "./model.ts";

/** A dense model to upcycle (e.g. `await mj.io.loadCheckpoint(dir)`). */
export interface UpcycleSource {
  config: ModelConfig;
  params: Params;
}

export interface UpcycleOptions {
  /** "bam" (attention experts) or "btx" (attention averaged). */
  method: "bam" | "btx";
  /** BAM's attention experts: every projection per expert (default) or shared, averaged K/V. */
  attention?: "kvExperts" | "sharedKV";
  /** FFN experts per token (default 1, as in the paper's comparisons). */
  topK?: number;
  /** BAM attention routing: 0 = soft (default), k = top-k gates (the ablation). */
  attnTopK?: number;
  /** Seed of the random routers. */
  seed?: number;
  /** Router initialisation std (default: the seed model's initStd). */
  routerStd?: number;
  /**
   * Further settings of the MoE (estimator, balancers, …). Defaults: estimator "topk", gates not
   * renormalised, auxiliary loss α = 0.01 and z-loss β = 0.001 on the FFN router [ASSUMED].
   */
  model?: Partial<ModelConfig>;
}

const KEYS = ["method", "attention", "topK", "attnTopK", "seed", "routerStd", "model"];

/** Architecture fields every source must share. */
const SAME: (keyof ModelConfig)[] = [
  "vocabSize",
  "dModel",
  "nLayers",
  "nHeads",
  "dFf",
  "activation",
  "norm",
  "block",
  "tiedEmbeddings",
];

/** The upcycled model. */
export interface Upcycled {
  config: ModelConfig;
  params: Params;
}

function mean(xs: readonly Tensor[]): Tensor {
  return xs.reduce((a, b) => a.add(b)).div(xs.length);
}

/**
 * Builds a BTX or BAM mixture from a seed model and its specialised copies.
 *
 * @example
 * ```ts
 * const seed = await mj.io.loadCheckpoint<mj.nn.Params>("out/bam/seed/checkpoint");
 * const code = await mj.io.loadCheckpoint<mj.nn.Params>("out/bam/code/checkpoint");
 * const law = await mj.io.loadCheckpoint<mj.nn.Params>("out/bam/law/checkpoint");
 * const bam = mj.moe.upcycle(seed, [code, law], { method: "bam", attention: "kvExperts" });
 * // bam.config: 3 attention experts + 3 FFN experts (top-1); bam.params: a parameter tree
 * ```
 */
export function upcycle(
  seed: UpcycleSource,
  experts: readonly UpcycleSource[],
  opts: UpcycleOptions,
): Upcycled {
  const op = "moe.upcycle";
  if (!opts || typeof opts !== "object") fail(op, `expected options { method: "bam" | "btx", … }`);
  for (const k of Object.keys(opts)) {
    if (!KEYS.includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected ${KEYS.join(", ")}`);
    }
  }
  if (opts.method !== "bam" && opts.method !== "btx") {
    fail(op, `method must be "bam" or "btx", got ${formatValue(opts.method)}`);
  }
  if (opts.method === "btx" && (opts.attention !== undefined || opts.attnTopK !== undefined)) {
    fail(op, `attention and attnTopK configure BAM's attention experts; BTX averages attention`);
  }
  if (!Array.isArray(experts) || experts.length < 1) {
    fail(op, "expected at least one specialised model besides the seed");
  }
  const sources = [seed, ...experts];
  const name = (i: number) => (i === 0 ? "the seed model" : `specialised model ${i}`);
  sources.forEach((s, i) => {
    if (!s || typeof s !== "object" || !s.config || !s.params) {
      fail(op, `${name(i)} must be { config, params } (e.g. a loaded checkpoint)`);
    }
    if (s.config.ffn !== "dense") {
      fail(
        op,
        `${name(i)} has ffn ${formatValue(s.config.ffn)}; upcycling starts from dense models`,
      );
    }
    if (s.config.attnExperts !== 1) {
      fail(
        op,
        `${
          name(i)
        } already has ${s.config.attnExperts} attention experts; upcycling starts from dense models`,
      );
    }
    for (const k of SAME) {
      if (s.config[k] !== seed.config[k]) {
        fail(
          op,
          `${name(i)} has ${k} ${formatValue(s.config[k])} but the seed model has ${
            formatValue(seed.config[k])
          }: every model must share the architecture`,
        );
      }
    }
    if (!Array.isArray(s.params.layers) || s.params.layers.length !== seed.config.nLayers) {
      fail(
        op,
        `${
          name(i)
        }'s parameters have ${s.params.layers?.length} layers, its configuration ${seed.config.nLayers}`,
      );
    }
  });
  const N = sources.length;
  const c0 = seed.config, d = c0.dModel;
  const bam = opts.method === "bam";
  const attention = opts.attention ?? "kvExperts";
  const std = opts.routerStd ?? c0.initStd;
  const rseed = opts.seed ?? 0;
  const defaults: Partial<ModelConfig> = {
    estimator: "topk",
    normalizeTopK: false,
    balance: [{ kind: "auxLoss", alpha: 0.01 }, { kind: "zLoss", beta: 0.001 }] as BalanceSpec[],
  };
  const config = modelConfig({
    ...c0,
    ...defaults,
    ...(opts.model ?? {}),
    ffn: "moe",
    experts: N,
    topK: opts.topK ?? 1,
    attnExperts: bam ? N : 1,
    attention: bam ? attention : "kvExperts",
    attnTopK: bam ? opts.attnTopK ?? 0 : 0,
  });

  const all = <T>(pick: (p: Params) => T): T[] => sources.map((s) => pick(s.params));
  const avgNorm = (pick: (p: Params) => { weight: Tensor; bias?: Tensor } | undefined) => {
    const ns = all(pick);
    if (!ns[0]) return undefined;
    return {
      weight: mean(ns.map((n) => n!.weight)),
      ...(ns[0].bias ? { bias: mean(ns.map((n) => n!.bias!)) } : {}),
    };
  };
  const router = (layer: number, which: number) =>
    randn([N, d], { seed: rseed * 65536 + 4099 * layer + which }).mul(std);

  const layers = seed.params.layers.map((_, l) => {
    const L = (p: Params) => p.layers[l];
    const mlps = all((p) => L(p).mlp);
    if (mlps.some((m) => !m)) fail(op, `layer ${l} of some model has no dense MLP parameters`);
    const moe: NonNullable<Params["layers"][number]["moe"]> = {
      router: router(l, 0),
      up: stack(mlps.map((m) => m!.up)),
      down: stack(mlps.map((m) => m!.down)),
      ...(mlps[0]!.gate ? { gate: stack(mlps.map((m) => m!.gate!)) } : {}),
    };
    const attns = all((p) => L(p).attn);
    let attn: Params["layers"][number]["attn"];
    if (!bam) {
      attn = {
        q: mean(attns.map((a) => a.q)),
        k: mean(attns.map((a) => a.k)),
        v: mean(attns.map((a) => a.v)),
        o: mean(attns.map((a) => a.o)),
      };
    } else {
      const shared = attention === "sharedKV";
      attn = {
        router: router(l, 1),
        q: stack(attns.map((a) => a.q)),
        k: shared ? mean(attns.map((a) => a.k)) : stack(attns.map((a) => a.k)),
        v: shared ? mean(attns.map((a) => a.v)) : stack(attns.map((a) => a.v)),
        o: stack(attns.map((a) => a.o)),
      };
    }
    const ffnNorm = avgNorm((p) => L(p).ffnNorm);
    return { attnNorm: avgNorm((p) => L(p).attnNorm)!, attn, ...(ffnNorm ? { ffnNorm } : {}), moe };
  });
  const params: Params = {
    embed: mean(all((p) => p.embed)),
    layers,
    finalNorm: avgNorm((p) => p.finalNorm)!,
    ...(c0.tiedEmbeddings ? {} : { lmHead: mean(all((p) => p.lmHead!)) }),
  };
  return { config, params };
}
