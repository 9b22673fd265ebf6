/**
 * An independent float64 reference of an MoE layer with GELU experts, in plain loops: given a
 * routing (selected experts, gate weights, and how the gradient reaches the logits), it returns
 * the output and every gradient of L = Σ mix ⊙ y. Estimator tests build routings from the
 * formulas of algorithms.md and compare the library against this.
 */

export type Mat = number[][];

export const zerosM = (r: number, c: number): Mat =>
  Array.from({ length: r }, () => new Array(c).fill(0));
export const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);

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

export function softmax(z: number[]): number[] {
  const m = Math.max(...z.filter((v) => v !== -Infinity));
  const e = z.map((v) => (v === -Infinity ? 0 : Math.exp(v - m)));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
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
  /** Scale of the expert-path gradient per (t, j) (usually w). */
  expertScale: number[][];
  /** dL/dz [T][N] given g[t][j] = dL/dw_{t,j} (and the extra output term's gradient). */
  routerGrad: (g: number[][]) => Mat;
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
  const k = R.sel[0].length;
  const om = R.omega ?? new Array(d).fill(1);
  const y = zerosM(T, d), dx = zerosM(T, d), drouter = zerosM(N, d);
  const dup = Array.from({ length: N }, () => zerosM(f, d));
  const ddown = Array.from({ length: N }, () => zerosM(d, f));
  const domega = new Array(d).fill(0);
  const g = zerosM(T, k);
  const outs: number[][][] = [];
  for (let t = 0; t < T; t++) {
    outs.push([]);
    const gy = I.mix[t].map((m, c) => m * om[c]); // dL/d(pre-ω output)
    for (let j = 0; j < k; j++) {
      const e = R.sel[t][j];
      const { h, a, o } = expert(I, e, I.x[t]);
      outs[t].push(o);
      for (let c = 0; c < d; c++) {
        y[t][c] += R.w[t][j] * o[c] * om[c];
        domega[c] += I.mix[t][c] * R.w[t][j] * o[c];
      }
      g[t][j] = dot(gy, o);
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
    if (R.extra) { for (let c = 0; c < d; c++) y[t][c] += R.extra[t][c]; }
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

/** dL/dz through a softmax: π ⊙ (v − Σ π v). */
export function softmaxBack(pi: number[], v: number[]): number[] {
  const s = dot(pi, v);
  return pi.map((p, i) => p * (v[i] - s));
}

/** Conventional top-k routing (selection constant, weights = π of the selected). */
export function topkRouting(I: Inputs, k: number): RoutingRef & { pi: Mat } {
  const pi = logitsOf(I).map(softmax);
  const sel = pi.map((p) =>
    p.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map((
      [, i],
    ) => i)
  );
  const w = sel.map((s, t) => s.map((i) => pi[t][i]));
  return {
    pi,
    sel,
    w,
    expertScale: w,
    routerGrad: (g) =>
      pi.map((p, t) => {
        const v = new Array(p.length).fill(0);
        sel[t].forEach((i, j) => (v[i] += g[t][j]));
        return softmaxBack(p, v);
      }),
  };
}
