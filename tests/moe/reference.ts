/**
 * An independent float64 reference of an MoE layer with GELU experts, in plain loops: given a
 * routing (selected experts, gate weights, and how the gradient reaches the logits), it returns
 * the output and every gradient of L = Σ mix ⊙ y. The estimators' routings are built here from
 * the formulas of docs/methods.md alone (§1 top-k, §2 Default MoE, §5 SparseMixer-v2 and v1),
 * with the route options every estimator accepts:
 *  - `score`: softmax (default) or sigmoid scores, s = σ(z);
 *  - `bias`: added for selection only — to the scores for top-k, dense and Default MoE; for
 *    SparseMixer, the biased scores s + b mapped back to the logits its drop rule, sampling and
 *    argmax see (z + log((s + b)/s)); never to a weight;
 *  - `normalize`: the k gate weights are divided by their sum (Mixtral's norm_topk_prob, §1),
 *    after the estimator; the backward runs through that division. Default MoE's default term
 *    and EMA weights use the raw scores π.
 */

export type Mat = number[][];
export type Score = "softmax" | "sigmoid";

/** The route options the references follow. */
export interface RouteOpts {
  score?: Score;
  normalize?: boolean;
  /** [N] selection-only bias. */
  bias?: number[];
}

export const zerosM = (r: number, c: number): Mat =>
  Array.from({ length: r }, () => new Array(c).fill(0));
export const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);
/** Index of the largest value (ties to the lower index). */
export const argmax = (v: number[]) => v.reduce((b, x, i) => (x > v[b] ? i : b), 0);

export function erf(x: number): number {
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-18) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu = (h: number) => 0.5 * h * (1 + erf(h / Math.SQRT2));
const geluGrad = (h: number) =>
  0.5 * (1 + erf(h / Math.SQRT2)) + h * Math.exp(-h * h / 2) / Math.sqrt(2 * Math.PI);
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

export function softmax(z: number[]): number[] {
  const m = Math.max(...z.filter((v) => v !== -Infinity));
  const e = z.map((v) => (v === -Infinity ? 0 : Math.exp(v - m)));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Router scores of one token's logits. */
export function scoresOf(z: number[], score: Score = "softmax"): number[] {
  return score === "softmax" ? softmax(z) : z.map(sigmoid);
}

/** dL/dz through a softmax: π ⊙ (v − Σ π v). */
export function softmaxBack(pi: number[], v: number[]): number[] {
  const s = dot(pi, v);
  return pi.map((p, i) => p * (v[i] - s));
}

/** dL/dz from v = dL/ds, for scores s of either kind. */
export function scoreBack(s: number[], v: number[], score: Score = "softmax"): number[] {
  return score === "softmax" ? softmaxBack(s, v) : s.map((p, i) => v[i] * p * (1 - p));
}

export interface Inputs {
  T: number;
  d: number;
  N: number;
  f: number;
  x: Mat; // [T][d]
  router: Mat; // [N][d]
  up: number[][][]; // [N][f][d]
  down: number[][][]; // [N][d][f]
  mix: Mat; // [T][d]: dL/dy
}

/** Logits z = x · routerᵀ. */
export function logitsOf(I: Inputs): Mat {
  return I.x.map((xt) => I.router.map((r) => dot(r, xt)));
}

/** Expert e on token t: hidden h, activation a, output o. */
export function expert(I: Inputs, e: number, xt: number[]) {
  const h = I.up[e].map((row) => dot(row, xt));
  const a = h.map(gelu);
  const o = I.down[e].map((row) => dot(row, a));
  return { h, a, o };
}

export interface RoutingRef {
  sel: number[][]; // [T][k]
  w: number[][]; // [T][k] forward gate weights
  /** Scale of the expert-path gradient per (t, j) (usually w); indexed like `gradSel`. */
  expertScale: number[][];
  /** dL/dz [T][N] given g[t][j] = dL/dw_{t,j} over `gradSel` (and any extra term's gradient). */
  routerGrad: (g: number[][]) => Mat;
  /**
   * Experts that receive the gradient, when they differ from the forward's `sel` (the dense
   * estimator: every expert). The forward output always comes from `sel` and `w`.
   */
  gradSel?: number[][];
  /** An extra output term [T][d] (Default MoE), or null. */
  extra?: Mat | null;
  /** Per-channel gate scale ω [d] (SparseMixer-v1), or null. */
  omega?: number[] | null;
}

export interface Result {
  y: Mat;
  dx: Mat;
  drouter: Mat;
  dup: number[][][];
  ddown: number[][][];
  domega: number[] | null;
  /** [T][k] outputs of the selected experts (unweighted). */
  outs: number[][][];
}

export function run(I: Inputs, R: RoutingRef): Result {
  const { T, d, N, f } = I;
  const om = R.omega ?? new Array(d).fill(1);
  const gsel = R.gradSel ?? R.sel;
  const y = zerosM(T, d), dx = zerosM(T, d), drouter = zerosM(N, d);
  const dup = Array.from({ length: N }, () => zerosM(f, d));
  const ddown = Array.from({ length: N }, () => zerosM(d, f));
  const domega = new Array(d).fill(0);
  const g: number[][] = [];
  const outs: number[][][] = [];
  for (let t = 0; t < T; t++) {
    outs.push([]);
    for (let j = 0; j < R.sel[t].length; j++) {
      const { o } = expert(I, R.sel[t][j], I.x[t]);
      outs[t].push(o);
      for (let c = 0; c < d; c++) {
        y[t][c] += R.w[t][j] * o[c] * om[c];
        domega[c] += I.mix[t][c] * R.w[t][j] * o[c];
      }
    }
    if (R.extra) { for (let c = 0; c < d; c++) y[t][c] += R.extra[t][c]; }
    const gy = I.mix[t].map((m, c) => m * om[c]); // dL/d(pre-ω output)
    g.push([]);
    for (let j = 0; j < gsel[t].length; j++) {
      const e = gsel[t][j];
      const { h, a, o } = expert(I, e, I.x[t]);
      g[t].push(dot(gy, o));
      // Expert path, scaled as the estimator says.
      const go = gy.map((v) => v * R.expertScale[t][j]);
      for (let c = 0; c < d; c++) for (let q = 0; q < f; q++) ddown[e][c][q] += go[c] * a[q];
      const dh = a.map((_, q) =>
        I.down[e].reduce((s, row, c) => s + row[q] * go[c], 0) * geluGrad(h[q])
      );
      for (let q = 0; q < f; q++) {
        for (let c = 0; c < d; c++) {
          dup[e][q][c] += dh[q] * I.x[t][c];
          dx[t][c] += I.up[e][q][c] * dh[q];
        }
      }
    }
  }
  const dz = R.routerGrad(g);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < d; c++) {
        drouter[i][c] += dz[t][i] * I.x[t][c];
        dx[t][c] += I.router[i][c] * dz[t][i];
      }
    }
  }
  return { y, dx, drouter, dup, ddown, domega: R.omega ? domega : null, outs };
}

/**
 * The `normalize` option on top of an estimator's routing: w' = w / Σ_k w, the expert scale
 * divided by the same sum, and dL/dw = (g' − Σ_k g'·w') / Σ_k w before the estimator's backward.
 */
export function normalized<R extends RoutingRef>(R: R, normalize?: boolean): R {
  if (!normalize) return R;
  const sums = R.w.map((w) => w.reduce((a, b) => a + b, 0));
  const w = R.w.map((row, t) => row.map((v) => v / sums[t]));
  return {
    ...R,
    w,
    expertScale: R.expertScale.map((row, t) => row.map((v) => v / sums[t])),
    routerGrad: (g: number[][]) =>
      R.routerGrad(g.map((gt, t) => {
        const s = dot(gt, w[t]);
        return gt.map((v) => (v - s) / sums[t]);
      })),
  };
}

// ---- top-k (§1), dense, Default MoE (§2) --------------------------------------------------------

/** SparseMixer's selection logits under a score-space bias: z + log((s + b) / s). */
export function selectionLogits(z: number[], bias: number[] | undefined, score: Score): number[] {
  if (!bias) return z;
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return z.map((v, i) => {
    const s = score === "sigmoid" ? 1 / (1 + Math.exp(-v)) : e[i] / sum;
    return v + Math.log(Math.max(s + bias[i], 1e-20)) - Math.log(Math.max(s, 1e-20));
  });
}

/** What SparseMixer's argmax ranks: the logits, or with a bias the biased scores s + b. */
export function selectionRank(z: number[], bias: number[] | undefined, score: Score): number[] {
  if (!bias) return z;
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return z.map((v, i) => (score === "sigmoid" ? 1 / (1 + Math.exp(-v)) : e[i] / sum) + bias[i]);
}

/** Top-k of the (biased) scores: descending, ties to the lower index. */
function topkSelect(s: number[], k: number, bias?: number[]): number[] {
  return s.map((v, i) => [v + (bias?.[i] ?? 0), i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map(([, i]) => i);
}

/** Conventional top-k routing (selection constant, weights = scores of the selected). */
export function topkRouting(I: Inputs, k: number, o: RouteOpts = {}): RoutingRef & { pi: Mat } {
  const pi = logitsOf(I).map((z) => scoresOf(z, o.score));
  const sel = pi.map((p) => topkSelect(p, k, o.bias));
  const w = sel.map((s, t) => s.map((i) => pi[t][i]));
  return normalized({
    pi,
    sel,
    w,
    expertScale: w,
    routerGrad: (g: number[][]) =>
      pi.map((p, t) => {
        const v = new Array(p.length).fill(0);
        sel[t].forEach((i, j) => (v[i] += g[t][j]));
        return scoreBack(p, v, o.score);
      }),
  }, o.normalize);
}

/**
 * The dense estimator: the forward is top-k; the gradient is that of Σ_i s_i E_i(x) over every
 * expert (§2.3's "dense" comparison target), so `bias` and `normalize` change only the forward.
 */
export function denseRouting(I: Inputs, k: number, o: RouteOpts = {}): RoutingRef {
  const top = topkRouting(I, k, o);
  const all = top.pi.map((p) => p.map((_, i) => i));
  return {
    sel: top.sel,
    w: top.w,
    gradSel: all,
    expertScale: top.pi,
    routerGrad: (g) => top.pi.map((p, t) => scoreBack(p, g[t], o.score)),
  };
}

export type Ema = "mean" | "scoredMean" | "scoredWeighted";

/**
 * Default MoE from §2.1–2.2: the EMA first (experts with no token keep their vector), then
 * y = Σ_{A} g E + Σ_{∉A} π ê with ê constant; the router gets ⟨∂L/∂y, ê_i⟩ for unselected i.
 */
export function defaultRef(
  I: Inputs,
  k: number,
  ema: Ema,
  mode: "forward" | "backwardOnly",
  beta: number,
  ehat: Mat,
  o: RouteOpts = {},
) {
  const base = topkRouting(I, k, o);
  const outs = run(I, base).outs;
  const newEhat = ehat.map((row, i) => {
    let cnt = 0, wsum = 0;
    const s = new Array(I.d).fill(0);
    base.sel.forEach((sel, t) =>
      sel.forEach((e, j) => {
        if (e !== i) return;
        cnt++;
        const pi = base.pi[t][i];
        wsum += pi;
        for (let c = 0; c < I.d; c++) s[c] += (ema === "mean" ? 1 : pi) * outs[t][j][c];
      })
    );
    if (cnt === 0) return [...row];
    const mean = s.map((v) => v / (ema === "scoredWeighted" ? wsum : cnt));
    return row.map((v, c) => beta * v + (1 - beta) * mean[c]);
  });
  const unsel = (t: number, i: number) => !base.sel[t].includes(i);
  const extra = mode === "forward"
    ? base.pi.map((p, t) =>
      Array.from(
        { length: I.d },
        (_, c) => p.reduce((s, pi, i) => s + (unsel(t, i) ? pi * newEhat[i][c] : 0), 0),
      )
    )
    : null;
  const R: RoutingRef = {
    ...base,
    extra,
    // Eq. 8: the router sees E_i(x_t) for selected experts and ê_i for the others.
    routerGrad: (g) => {
      const dzSel = base.routerGrad(g); // the selected weights' part, through `normalize`
      return base.pi.map((p, t) => {
        const v = p.map((_, i) => (unsel(t, i) ? dot(I.mix[t], newEhat[i]) : 0));
        const dzUnsel = scoreBack(p, v, o.score);
        return dzSel[t].map((a, i) => a + dzUnsel[i]);
      });
    },
  };
  return { ref: run(I, R), ehat: newEhat, counts: base.sel.flat(), sel: base.sel, pi: base.pi };
}

// ---- SparseMixer-v2 (§5.2–5.6) and v1 (§5.7) -------------------------------------------------------

/** Injected draws: exponential [k][T][N] for Gumbel-max, uniform [k][T] for the coin. */
export interface Noise {
  exponential: number[][][];
  uniform: number[][];
}

/** What happened in one (token, slot): for coverage and robustness checks in the tests. */
export interface SlotInfo {
  /** The sampled (or eval-selected) expert. */
  D: number;
  /** The argmax of the slot's masked softmax (δ = [D = argmax]). */
  top: number;
  /** The gate multiplier c. */
  c: number;
  /** The coin's draw (training). */
  u: number;
  /** Experts the drop rule keeps for this slot (slot 2: besides slot 1's expert). */
  kept: number;
  /** Experts the drop rule masks for this slot (slot 2: not counting slot 1's expert). */
  dropped: number;
}

/**
 * The drop rule of the code, for one slot: expert i is masked iff (thr − zs_i) /
 * max(|zs_i|, thr) > 2ε with thr the max of the slot's remaining logits (`removed` excluded)
 * and zs the selection logits. Also returns the smallest distance of a ratio from 2ε.
 */
export function dropRule(zs: number[], removed: number, eps: number) {
  const thr = Math.max(...zs.filter((_, i) => i !== removed));
  let margin = Infinity;
  const dropped = zs.map((v, i) => {
    if (i === removed) return true;
    const ratio = (thr - v) / Math.max(Math.abs(v), thr);
    margin = Math.min(margin, Math.abs(ratio - 2 * eps));
    return ratio > 2 * eps;
  });
  return { dropped, margin };
}

/** The gate's probabilities under a mask: masked softmax of z, or the sigmoid of kept experts. */
function gateProbs(z: number[], dropped: boolean[], score: Score): number[] {
  return score === "softmax"
    ? softmax(z.map((v, i) => (dropped[i] ? -Infinity : v)))
    : z.map((v, i) => (dropped[i] ? 0 : sigmoid(v)));
}

/** Gumbel-max over masked logits with −log of the exponential draws; and its winning margin. */
function gumbelMax(masked: number[], e: number[]) {
  const perturbed = masked.map((v, i) => v - Math.log(e[i]));
  const D = argmax(perturbed);
  const rest = perturbed.filter((_, i) => i !== D && masked[i] !== -Infinity);
  return { D, margin: rest.length ? perturbed[D] - Math.max(...rest) : Infinity };
}

/** Smallest gap between the largest and the second largest finite value. */
function gap(v: number[]): number {
  const fin = v.filter((x) => x !== -Infinity).sort((a, b) => b - a);
  return fin.length > 1 ? fin[0] - fin[1] : Infinity;
}

const F32 = Math.fround;

/**
 * SparseMixer-v2 from the code (§5.2–5.6): drop rule, Gumbel-max, Bernoulli(1/4) coin, the
 * constants 0.3333/0.6667, slot 2 masking slot 1's expert with its drop mask from the original
 * logits, no renormalisation; eval is argmax with c = 1. The backward is ∂L/∂z_j += g·p_D·
 * (1[j=D] − p_j) per slot (no c) — for sigmoid scores the gradient of σ(z_D), g·p_D(1 − p_D)
 * at D. The expert gradient carries c ("code") or not ("paper").
 */
export function sparseMixerV2Ref(
  I: Inputs,
  k: number,
  eps: number,
  training: boolean,
  noise: Noise | null,
  expertGrad: "code" | "paper" = "code",
  o: RouteOpts = {},
) {
  const score = o.score ?? "softmax";
  const z = logitsOf(I);
  const sel: number[][] = [], w: number[][] = [], ps: number[][][] = [], pD: number[][] = [];
  const info: SlotInfo[][] = [];
  let margin = Infinity;
  for (let t = 0; t < I.T; t++) {
    sel.push([]), w.push([]), ps.push([]), pD.push([]), info.push([]);
    const zs = selectionLogits(z[t], o.bias, score);
    const rank = selectionRank(z[t], o.bias, score);
    let removed = -1;
    for (let j = 0; j < k; j++) {
      const { dropped, margin: m } = dropRule(zs, removed, eps);
      const masked = zs.map((v, i) => (dropped[i] ? -Infinity : v));
      const top = argmax(rank.map((v, i) => (dropped[i] ? -Infinity : v))); // of the masked softmax
      let D = top, u = 1;
      if (training) {
        const s = gumbelMax(masked, noise!.exponential[j][t]);
        D = s.D, u = noise!.uniform[j][t];
        margin = Math.min(margin, s.margin, Math.abs(u - 0.75));
      }
      margin = Math.min(margin, m, gap(masked));
      const c = training ? (D === top || u > 0.75 ? F32(0.6667) + F32(0.3333) : F32(0.3333)) : 1;
      const p = gateProbs(z[t], dropped, score);
      sel[t].push(D), w[t].push(c * p[D]), ps[t].push(p), pD[t].push(p[D]);
      const kept = dropped.filter((x) => !x).length;
      info[t].push({ D, top, c, u, kept, dropped: I.N - kept - (removed >= 0 ? 1 : 0) });
      removed = D;
    }
  }
  const R = normalized<RoutingRef>({
    sel,
    w,
    expertScale: expertGrad === "code" ? w : pD,
    routerGrad: (g) =>
      z.map((_, t) => {
        const dz = new Array(I.N).fill(0);
        for (let j = 0; j < k; j++) {
          const p = ps[t][j], D = sel[t][j];
          if (score === "sigmoid") dz[D] += g[t][j] * p[D] * (1 - p[D]);
          else for (let i = 0; i < I.N; i++) dz[i] += g[t][j] * p[D] * ((i === D ? 1 : 0) - p[i]);
        }
        return dz;
      }),
  }, o.normalize);
  return { ref: run(I, R), info, margin };
}

/**
 * SparseMixer-v1 (§5.7): top-1, the same drop rule (on the selection logits) and sampling;
 * c = 1 if D = argmax or u > 0.5, else 0.5 (the mid-point rule); forward c·p_D·ω; the backward
 * of the c-multiplication is ×2 in training, then autodiff through the masked softmax (or the
 * sigmoid of z_D).
 */
export function sparseMixerV1Ref(
  I: Inputs,
  eps: number,
  training: boolean,
  noise: Noise | null,
  omega: number[] | null,
  o: RouteOpts = {},
) {
  const score = o.score ?? "softmax";
  const z = logitsOf(I);
  const sel: number[][] = [], w: number[][] = [], ps: number[][] = [];
  const info: SlotInfo[][] = [];
  let margin = Infinity;
  for (let t = 0; t < I.T; t++) {
    const zs = selectionLogits(z[t], o.bias, score);
    const { dropped, margin: m } = dropRule(zs, -1, eps);
    const masked = zs.map((v, i) => (dropped[i] ? -Infinity : v));
    const top = argmax(selectionRank(z[t], o.bias, score));
    let D = top, u = 1;
    if (training) {
      const s = gumbelMax(masked, noise!.exponential[0][t]);
      D = s.D, u = noise!.uniform[0][t];
      margin = Math.min(margin, s.margin, Math.abs(u - 0.5));
    }
    margin = Math.min(margin, m, gap(masked));
    const c = training ? (D === top || u > 0.5 ? 1 : 0.5) : 1;
    const p = gateProbs(z[t], dropped, score);
    sel.push([D]), w.push([c * p[D]]), ps.push(p);
    const kept = dropped.filter((x) => !x).length;
    info.push([{ D, top, c, u, kept, dropped: I.N - kept }]);
  }
  const R = normalized<RoutingRef>({
    sel,
    w,
    expertScale: w,
    omega,
    routerGrad: (g) =>
      z.map((_, t) => {
        const D = sel[t][0], p = ps[t];
        const gD = (training ? 2 : 1) * g[t][0]; // ×2: the mid-point rule's backward
        if (score === "sigmoid") return p.map((q, i) => (i === D ? gD * q * (1 - q) : 0));
        const v = new Array(I.N).fill(0);
        v[D] = gD;
        return softmaxBack(p, v);
      }),
  }, o.normalize);
  return { ref: run(I, R), info, margin };
}
