/**
 * Independent float64 references for the op tests: plain loops over row-major arrays, written
 * without any moejit op so that expected values never come from the code under test.
 */
import type * as mj from "../../mod.ts";

export function prodOf(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Multi-index of flat position `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: readonly number[]): number {
  let p = 0;
  for (let d = 0; d < shape.length; d++) p = p * shape[d] + idx[d];
  return p;
}

/** Builds a flat array of `shape` from a function of the multi-index. */
export function build(shape: readonly number[], f: (idx: number[]) => number): number[] {
  return Array.from({ length: prodOf(shape) }, (_, i) => f(unravel(i, shape)));
}

/** Element of a NumPy-broadcast operand of `shape` at output index `idx`. */
export function at(data: ArrayLike<number>, shape: readonly number[], idx: readonly number[]) {
  const off = idx.length - shape.length;
  let p = 0;
  for (let d = 0; d < shape.length; d++) p = p * shape[d] + (shape[d] === 1 ? 0 : idx[off + d]);
  return data[p];
}

/** A binary op with NumPy broadcasting; the caller gives the output shape. */
export function binaryRef(
  a: ArrayLike<number>,
  as: readonly number[],
  b: ArrayLike<number>,
  bs: readonly number[],
  out: readonly number[],
  f: (x: number, y: number) => number,
): number[] {
  return build(out, (idx) => f(at(a, as, idx), at(b, bs, idx)));
}

export function permuteRef(
  data: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
): number[] {
  const outShape = perm.map((p) => shape[p]);
  return build(outShape, (idx) => {
    const src = new Array<number>(shape.length);
    perm.forEach((p, i) => (src[p] = idx[i]));
    return data[ravel(src, shape)];
  });
}

/** Reduces `axes` (sorted, distinct) with `f` over the values of each output cell. */
export function reduceRef(
  data: ArrayLike<number>,
  shape: readonly number[],
  axes: readonly number[],
  f: (vals: number[]) => number,
): number[] {
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const outShape = kept.map((i) => shape[i]);
  const redShape = axes.map((i) => shape[i]);
  return build(outShape, (o) => {
    const vals: number[] = [];
    for (let r = 0; r < prodOf(redShape); r++) {
      const ri = unravel(r, redShape);
      const full = new Array<number>(shape.length);
      kept.forEach((k, j) => (full[k] = o[j]));
      axes.forEach((a, j) => (full[a] = ri[j]));
      vals.push(data[ravel(full, shape)]);
    }
    return f(vals);
  });
}

export const sumOf = (v: number[]) => v.reduce((s, x) => s + x, 0);
export const meanOf = (v: number[]) => sumOf(v) / v.length;
export const varOf = (v: number[]) => {
  const m = meanOf(v);
  return v.reduce((s, x) => s + (x - m) * (x - m), 0) / v.length;
};
export const maxOf = (v: number[]) => Math.max(...v);
export const minOf = (v: number[]) => Math.min(...v);
export const lseOf = (v: number[]) => {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
};

/** Float64 matmul of [..., M, K] @ [..., K, N] with equal batch dims. */
export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  batch: number,
  M: number,
  K: number,
  N: number,
): number[] {
  const out = new Array<number>(batch * M * N).fill(0);
  for (let t = 0; t < batch; t++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[t * M * K + i * K + k] * b[t * K * N + k * N + j];
        out[t * M * N + i * N + j] = s;
      }
    }
  }
  return out;
}

/** Rounds through f32, as the host storage of an f32 tensor does. */
export function f32(v: ArrayLike<number>): number[] {
  return Array.from(v, (x) => Math.fround(x));
}

/** Realized values as plain numbers. */
export async function vals(t: mj.Tensor): Promise<number[]> {
  return Array.from(await t.data(), Number);
}
