/**
 * Independent float64 host references for the nn layers and the dense language model, written
 * from the textbook / Hugging Face formulas in plain loops over flat row-major arrays. Nothing
 * here calls moejit except the helpers that move parameter trees between host and tensors.
 */
import * as mj from "../../mod.ts";
import { evalWide, prng, wideTensor } from "../helpers.ts";

export type Arr = Float64Array;

/** The shrunk MoE model of the nn tests (every layer kind at a size the interpreter runs fast). */
export const TINY_MOE = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  dFf: 16,
  experts: 4,
  topK: 2,
  vocabSize: 32,
  maxSeqLen: 8,
};

/** The small dense model used for finite differences. */
export const TINY_DENSE = {
  ffn: "dense",
  nLayers: 1,
  dModel: 8,
  nHeads: 2,
  dFf: 8,
  vocabSize: 11,
  maxSeqLen: 6,
} as const;

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Uniform values in [lo, hi) with their shape (an FD input). */
export function uniform(shape: number[], seed: number, lo = -1, hi = 1) {
  const r = prng(seed);
  return { data: Float64Array.from({ length: numel(shape) }, () => lo + (hi - lo) * r()), shape };
}

/** Σ w ⊙ y with a fixed random weight tensor chosen by y's shape (distinct cotangents). */
export function weighted(y: mj.Tensor): mj.Tensor {
  const seed = 9000 + y.shape.reduce((h, d) => h * 31 + d, y.ndim);
  return y.mul(wideTensor(uniform(y.shape, seed, -1.5, 1.5).data, y.shape)).sum();
}

// ---- scalar functions ---------------------------------------------------------------------------

export function erf(x: number): number {
  if (Math.abs(x) > 6) return Math.sign(x);
  let term = x, sum = x;
  for (let n = 1; n < 400; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-18) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
export const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
export const silu = (v: number) => v * sigmoid(v);
export const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
export const relu = (v: number) => Math.max(0, v);

export function softmax(z: number[]): number[] {
  const m = Math.max(...z.filter((v) => v !== -Infinity));
  const e = z.map((v) => (v === -Infinity ? 0 : Math.exp(v - m)));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
export function logsumexp(z: number[]): number {
  const m = Math.max(...z);
  return m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
}
export function argmax(z: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < z.length; i++) if (z[i] > z[best]) best = i;
  return best;
}

// ---- layers over flat arrays --------------------------------------------------------------------

/** y[r, o] = Σ_i x[r, i] w[o, i] (+ b[o]) for x [rows, in], w [out, in]. */
export function linearRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  out: number,
  inp: number,
  b?: ArrayLike<number>,
): Arr {
  const rows = x.length / inp;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i] * w[o * inp + i];
      y[r * out + o] = s;
    }
  }
  return y;
}

/** RMSNorm over rows of length d: x / sqrt(mean(x²) + eps) * w. */
export function rmsNormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  d: number,
  eps: number,
): Arr {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[r * d + i] ** 2 / d;
    const inv = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * inv * w[i];
  }
  return y;
}

/** LayerNorm over rows of length d with the biased variance (PyTorch). */
export function layerNormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  d: number,
  eps: number,
  b?: ArrayLike<number>,
): Arr {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let mu = 0, v = 0;
    for (let i = 0; i < d; i++) mu += x[r * d + i] / d;
    for (let i = 0; i < d; i++) v += (x[r * d + i] - mu) ** 2 / d;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - mu) * inv * w[i] + (b ? b[i] : 0);
  }
  return y;
}

/**
 * Hugging Face Llama RoPE, literally: inv_freq = 1/theta^(arange(0, Dh, 2)/Dh), emb =
 * cat(freqs, freqs), out = x·cos(emb) + rotate_half(x)·sin(emb), rotate_half(x) = cat(−x2, x1).
 * One vector `u` of length Dh at position `pos`.
 */
export function ropeVec(u: ArrayLike<number>, pos: number, theta: number): number[] {
  const Dh = u.length, half = Dh / 2;
  const invFreq = Array.from({ length: half }, (_, i) => 1 / Math.pow(theta, (2 * i) / Dh));
  const emb = [...invFreq, ...invFreq].map((f) => pos * f);
  const rot = [
    ...Array.from({ length: half }, (_, i) => -u[half + i]),
    ...Array.from({ length: half }, (_, i) => u[i]),
  ];
  return emb.map((a, j) => u[j] * Math.cos(a) + rot[j] * Math.sin(a));
}

/** RoPE over x [B, H, S, Dh] (position = index along S). */
export function ropeRef(x: ArrayLike<number>, shape: number[], theta: number): Arr {
  const [B, H, S, Dh] = shape;
  const y = new Float64Array(x.length);
  for (let bh = 0; bh < B * H; bh++) {
    for (let s = 0; s < S; s++) {
      const off = (bh * S + s) * Dh;
      y.set(ropeVec(Array.from({ length: Dh }, (_, j) => x[off + j]), s, theta), off);
    }
  }
  return y;
}

/** softmax(q kᵀ/√Dh + mask) v over [B, H, Sq, Dh] × [B, H, Sk, Dh]. */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  BH: number,
  Sq: number,
  Sk: number,
  Dh: number,
  causal: boolean,
): Arr {
  const y = new Float64Array(BH * Sq * Dh);
  for (let bh = 0; bh < BH; bh++) {
    for (let i = 0; i < Sq; i++) {
      const sc: number[] = [];
      for (let j = 0; j < Sk; j++) {
        if (causal && j > i) {
          sc.push(-Infinity);
          continue;
        }
        let s = 0;
        for (let c = 0; c < Dh; c++) s += q[(bh * Sq + i) * Dh + c] * k[(bh * Sk + j) * Dh + c];
        sc.push(s / Math.sqrt(Dh));
      }
      const p = softmax(sc);
      for (let c = 0; c < Dh; c++) {
        let s = 0;
        for (let j = 0; j < Sk; j++) s += p[j] * v[(bh * Sk + j) * Dh + c];
        y[(bh * Sq + i) * Dh + c] = s;
      }
    }
  }
  return y;
}

/** Causal multi-head self-attention with RoPE on x [B, S, d] (projections [d, d], [out, in]). */
export function selfAttentionRef(
  x: ArrayLike<number>,
  p: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>; o: ArrayLike<number> },
  B: number,
  S: number,
  d: number,
  nHeads: number,
  theta: number,
): Arr {
  const Dh = d / nHeads;
  const q = linearRef(x, p.q, d, d), k = linearRef(x, p.k, d, d), v = linearRef(x, p.v, d, d);
  const merged = new Float64Array(B * S * d);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHeads; h++) {
      const head = (t: Arr, s: number) =>
        Array.from({ length: Dh }, (_, c) => t[(b * S + s) * d + h * Dh + c]);
      const qs = Array.from({ length: S }, (_, s) => ropeVec(head(q, s), s, theta));
      const ks = Array.from({ length: S }, (_, s) => ropeVec(head(k, s), s, theta));
      const vs = Array.from({ length: S }, (_, s) => head(v, s));
      const o = attentionRef(qs.flat(), ks.flat(), vs.flat(), 1, S, S, Dh, true);
      for (let s = 0; s < S; s++) {
        for (let c = 0; c < Dh; c++) merged[(b * S + s) * d + h * Dh + c] = o[s * Dh + c];
      }
    }
  }
  return linearRef(merged, p.o, d, d);
}

/** Dense FFN: swiglu down(silu(gate x) ⊙ up x), or down(act(up x)); x [rows, d], hidden f. */
export function mlpRef(
  x: ArrayLike<number>,
  p: { gate?: ArrayLike<number>; up: ArrayLike<number>; down: ArrayLike<number> },
  d: number,
  f: number,
  activation: "swiglu" | "gelu" | "relu",
): Arr {
  const u = linearRef(x, p.up, f, d);
  let h: Arr;
  if (activation === "swiglu") {
    const g = linearRef(x, p.gate!, f, d);
    h = g.map((gv, i) => silu(gv) * u[i]);
  } else h = u.map(activation === "gelu" ? gelu : relu);
  return linearRef(h, p.down, d, f);
}

/** Mean over rows of logsumexp(row) − row[target]. */
export function crossEntropyRef(logits: ArrayLike<number>, targets: number[], V: number): number {
  let s = 0;
  targets.forEach((t, r) => {
    const row = Array.from({ length: V }, (_, j) => logits[r * V + j]);
    s += logsumexp(row) - row[t];
  });
  return s / targets.length;
}

// ---- the language model ------------------------------------------------------------------------

export type HostParams = Map<string, Arr>;

/**
 * An MoE FFN with top-k routing on softmax scores (ties to the lower index), gate weights the
 * selected scores (not renormalised), experts `[E, f, d]` / `[E, d, f]`. Also returns the
 * auxiliary loss α·N·Σ_j f_j P_j (f_j = share of the T·k slots, P_j = mean score) and the z-loss
 * mean_t logsumexp(z_t)² (without β).
 */
export function moeRef(
  x: ArrayLike<number>,
  p: { router: Arr; gate?: Arr; up: Arr; down: Arr },
  d: number,
  f: number,
  E: number,
  k: number,
  activation: "swiglu" | "gelu" | "relu",
): { y: Arr; aux: number; z: number } {
  const T = x.length / d;
  const logits = linearRef(x, p.router, E, d);
  const y = new Float64Array(T * d);
  const counts = new Array(E).fill(0), P = new Array(E).fill(0);
  let z = 0;
  for (let t = 0; t < T; t++) {
    const zt = Array.from(logits.subarray(t * E, (t + 1) * E));
    const s = softmax(zt);
    z += logsumexp(zt) ** 2 / T;
    s.forEach((v, j) => (P[j] += v / T));
    const sel = s.map((v, j) => [v, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map((
      [, j],
    ) => j);
    const xt = Array.from({ length: d }, (_, c) => x[t * d + c]);
    for (const j of sel) {
      counts[j]++;
      const slice = (
        w: Arr | undefined,
        n: number,
      ) => (w ? w.subarray(j * n, (j + 1) * n) : undefined);
      const e = mlpRef(
        xt,
        { gate: slice(p.gate, f * d), up: slice(p.up, f * d)!, down: slice(p.down, d * f)! },
        d,
        f,
        activation,
      );
      for (let c = 0; c < d; c++) y[t * d + c] += s[j] * e[c];
    }
  }
  const aux = E * counts.reduce((a, cnt, j) => a + (cnt / (T * k)) * P[j], 0);
  return { y, aux, z };
}

/**
 * Logits [B, S, V] of the model in float64 (dense FFN, or MoE with the "topk"/"dense" estimators,
 * whose forward is plain top-k), with the auxiliary and z losses summed over layers (before α, β).
 */
export function modelRef(
  P: HostParams,
  tokens: number[][],
  c: mj.nn.ModelConfig,
): { logits: Arr; aux: number; z: number } {
  if (c.ffn === "moe" && c.estimator !== "topk" && c.estimator !== "dense") {
    throw new Error("modelRef: top-k routing only");
  }
  const B = tokens.length, S = tokens[0].length, d = c.dModel, V = c.vocabSize;
  const get = (k: string) => {
    const v = P.get(k);
    if (!v) throw new Error(`missing parameter ${k}`);
    return v;
  };
  const normP = (x: Arr, pre: string) =>
    c.norm === "layernorm"
      ? layerNormRef(x, get(`${pre}.weight`), d, c.normEps, get(`${pre}.bias`))
      : rmsNormRef(x, get(`${pre}.weight`), d, c.normEps);
  let x: Arr = new Float64Array(B * S * d);
  let aux = 0, z = 0;
  const embed = get("embed");
  tokens.flat().forEach((t, r) => x.set(embed.subarray(t * d, (t + 1) * d), r * d));
  for (let l = 0; l < c.nLayers; l++) {
    const L = `layers.${l}`;
    const swi = c.activation === "swiglu";
    const attn = (h: Arr) =>
      selfAttentionRef(
        h,
        {
          q: get(`${L}.attn.q`),
          k: get(`${L}.attn.k`),
          v: get(`${L}.attn.v`),
          o: get(`${L}.attn.o`),
        },
        B,
        S,
        d,
        c.nHeads,
        c.ropeTheta,
      );
    const ffn = (h: Arr) => {
      if (c.ffn === "dense") {
        return mlpRef(
          h,
          {
            gate: swi ? get(`${L}.mlp.gate`) : undefined,
            up: get(`${L}.mlp.up`),
            down: get(`${L}.mlp.down`),
          },
          d,
          c.dFf,
          c.activation,
        );
      }
      const r = moeRef(
        h,
        {
          router: get(`${L}.moe.router`),
          gate: swi ? get(`${L}.moe.gate`) : undefined,
          up: get(`${L}.moe.up`),
          down: get(`${L}.moe.down`),
        },
        d,
        c.dFf,
        c.experts,
        c.topK,
        c.activation,
      );
      aux += r.aux;
      z += r.z;
      return r.y;
    };
    const add = (a: Arr, ...bs: Arr[]) => a.map((v, i) => bs.reduce((s, b) => s + b[i], v));
    if (c.block === "parallel") {
      const h = normP(x, `${L}.attnNorm`);
      x = add(x, attn(h), ffn(h));
    } else {
      x = add(x, attn(normP(x, `${L}.attnNorm`)));
      x = add(x, ffn(normP(x, `${L}.ffnNorm`)));
    }
  }
  x = normP(x, "finalNorm");
  return { logits: linearRef(x, c.tiedEmbeddings ? embed : get("lmHead"), V, d), aux, z };
}

// ---- moving parameter trees between the host and tensors ---------------------------------------

/** Every tensor of a parameter tree as float64 host values, by dotted path. */
export function hostParams(tree: unknown): HostParams {
  const f = mj.treeFlatten(tree);
  const tensors = f.leaves as mj.Tensor[];
  const vals = evalWide(...tensors);
  return new Map(f.paths.map((p, i) => [p, vals[i]]));
}

/** A parameter tree of tensors from host values (float64-backed when `wide`, else f32). */
export function tensorParams(P: HostParams, c: mj.nn.ModelConfig, wide = true): mj.nn.Params {
  const tree: Record<string, unknown> = {};
  for (const [path, shape] of mj.nn.parameterShapes(c)) {
    const v = P.get(path)!;
    mj.nn.setPath(tree, path, wide ? wideTensor(v, shape) : mj.tensor(Float32Array.from(v), shape));
  }
  return tree as unknown as mj.nn.Params;
}

/** i32 token ids [B, S]. */
export const tokenTensor = (rows: number[][]) => mj.tensor(rows, undefined, { dtype: "i32" });
