/**
 * The living definition of every primitive: one implementation per op on dense, row-major typed
 * arrays. In "wide" mode f32 values are held in Float64Array (the oracle for finite differences);
 * otherwise results round to f32 after every op, like the device does.
 */
import { allocHost, type DType, type TypedArray } from "../dtype.ts";
import type { Node } from "../ir/node.ts";
import type { OpName } from "../ir/ops.ts";
import { threefry2x32 } from "../rng.ts";
import { prod, type Shape, stridesOf } from "../shape.ts";
import { erf } from "./special.ts";
import { fail } from "../errors.ts";
import { indexCheckLabel, indexErrorText, reportedIndex } from "../ir/checks.ts";

export interface EvalContext {
  wide: boolean;
}

export type Kernel<K extends OpName> = (
  node: Node<K>,
  inputs: TypedArray[],
  ctx: EvalContext,
) => TypedArray;

function alloc(node: Node, ctx: EvalContext, dtype: DType = node.dtype): TypedArray {
  return allocHost(dtype, node.size, ctx.wide);
}

/** Copies a strided view of `src` (shape, strides, offset) into a dense `out`. */
export function stridedCopy(
  src: TypedArray,
  out: TypedArray,
  shape: Shape,
  strides: readonly number[],
  offset: number,
): void {
  const n = prod(shape);
  if (n === 0) return;
  const rank = shape.length;
  if (rank === 0) {
    out[0] = src[offset];
    return;
  }
  const idx = new Array<number>(rank).fill(0);
  const last = rank - 1, sl = strides[last], dl = shape[last];
  let off = offset, o = 0;
  for (;;) {
    let p = off;
    for (let j = 0; j < dl; j++, p += sl) out[o++] = src[p];
    let d = last - 1;
    for (; d >= 0; d--) {
      idx[d]++;
      off += strides[d];
      if (idx[d] < shape[d]) break;
      off -= strides[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

function mapUnary(
  node: Node,
  x: TypedArray,
  ctx: EvalContext,
  f: (v: number) => number,
): TypedArray {
  const out = alloc(node, ctx);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]);
  return out;
}

function mapBinary(
  node: Node,
  a: TypedArray,
  b: TypedArray,
  ctx: EvalContext,
  f: (x: number, y: number) => number,
): TypedArray {
  const out = alloc(node, ctx);
  for (let i = 0; i < a.length; i++) out[i] = f(a[i], b[i]);
  return out;
}

const isIntType = (d: DType) => d === "i32" || d === "u32";

/** Value conversion between dtypes (see `cast`). */
export function convert(v: number, from: DType, to: DType): number {
  if (to === "bool") return v !== 0 ? 1 : 0; // NaN !== 0 → true
  if (to === "f32") return v;
  if (from === "f32") {
    if (Number.isNaN(v)) return 0;
    const t = Math.trunc(v);
    if (to === "i32") return Math.min(Math.max(t, -2147483648), 2147483647);
    return Math.min(Math.max(t, 0), 4294967295);
  }
  // Between integer types and from bool: reinterpret the 32 bits.
  return to === "i32" ? v | 0 : v >>> 0;
}

function intDiv(a: number, b: number, dtype: DType): number {
  if (b === 0) return a;
  if (dtype === "i32" && a === -2147483648 && b === -1) return a;
  return Math.trunc(a / b);
}

function intMod(a: number, b: number): number {
  return b === 0 ? 0 : a % b;
}

/** Pow that keeps the sign for negative bases with integer exponents (IEEE pow semantics). */
function powf(a: number, b: number): number {
  return Math.pow(a, b);
}

function reduceKernel(node: Node<"reduce">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const src = node.src[0];
  const { op, axes } = node.arg;
  const kept = src.shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const perm = [...kept, ...axes];
  const st = stridesOf(src.shape);
  const pshape = perm.map((p) => src.shape[p]);
  const moved = allocHost(src.dtype, src.size, true);
  stridedCopy(x, moved, pshape, perm.map((p) => st[p]), 0);
  const r = axes.reduce((n, a) => n * src.shape[a], 1);
  const out = alloc(node, ctx);
  const dt = src.dtype;
  const init = op === "sum"
    ? 0
    : op === "max"
    ? (dt === "i32" ? -2147483648 : dt === "u32" ? 0 : -Infinity)
    : (dt === "i32" ? 2147483647 : dt === "u32" ? 4294967295 : Infinity);
  for (let o = 0; o < out.length; o++) {
    let acc = init;
    const base = o * r;
    if (op === "sum") { for (let j = 0; j < r; j++) acc += moved[base + j]; }
    else if (op === "max") {
      for (let j = 0; j < r; j++) {
        const v = moved[base + j];
        if (v > acc || Number.isNaN(v)) acc = v;
        if (Number.isNaN(acc)) break;
      }
    } else {
      for (let j = 0; j < r; j++) {
        const v = moved[base + j];
        if (v < acc || Number.isNaN(v)) acc = v;
        if (Number.isNaN(acc)) break;
      }
    }
    out[o] = acc;
  }
  return out;
}

function permuteKernel(node: Node<"permute">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const st = stridesOf(node.src[0].shape);
  const out = alloc(node, ctx);
  stridedCopy(x, out, node.shape, node.arg.perm.map((p) => st[p]), 0);
  return out;
}

function expandKernel(node: Node<"expand">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const srcShape = node.src[0].shape;
  const st = stridesOf(srcShape).map((s, i) => (srcShape[i] === 1 ? 0 : s));
  const out = alloc(node, ctx);
  stridedCopy(x, out, node.shape, st, 0);
  return out;
}

function sliceKernel(node: Node<"slice">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const st = stridesOf(node.src[0].shape);
  const offset = node.arg.starts.reduce((o, s, i) => o + s * st[i], 0);
  const out = alloc(node, ctx);
  stridedCopy(x, out, node.shape, st, offset);
  return out;
}

function padKernel(node: Node<"pad">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const out = alloc(node, ctx);
  out.fill(node.arg.value);
  const srcShape = node.src[0].shape;
  if (prod(srcShape) === 0) return out;
  // Write the source densely into the interior: iterate source elements with output offsets.
  const ost = stridesOf(node.shape);
  const offset = node.arg.pads.reduce((o, [lo], i) => o + lo * ost[i], 0);
  const rank = srcShape.length;
  if (rank === 0) {
    out[0] = x[0];
    return out;
  }
  const idx = new Array<number>(rank).fill(0);
  let off = offset, s = 0;
  const last = rank - 1;
  for (;;) {
    for (let j = 0; j < srcShape[last]; j++) out[off + j * ost[last]] = x[s++];
    let d = last - 1;
    for (; d >= 0; d--) {
      idx[d]++;
      off += ost[d];
      if (idx[d] < srcShape[d]) break;
      off -= ost[d] * srcShape[d];
      idx[d] = 0;
    }
    if (d < 0) return out;
  }
}

/** Splits a shape around `axis` into outer × axis × inner. */
function around(shape: Shape, axis: number): [number, number, number] {
  return [prod(shape.slice(0, axis)), shape[axis], prod(shape.slice(axis + 1))];
}

function gatherKernel(node: Node<"gather">, [x, idx]: TypedArray[], ctx: EvalContext): TypedArray {
  const axis = node.arg.axis;
  const [outer, n, inner] = around(node.src[0].shape, axis);
  const m = node.shape[axis];
  const out = alloc(node, ctx);
  for (let o = 0; o < outer; o++) {
    for (let a = 0; a < m; a++) {
      for (let i = 0; i < inner; i++) {
        const p = (o * m + a) * inner + i;
        const j = idx[p];
        if (j < 0 || j >= n) {
          throw new Error(`gather: index ${j} is out of range for axis ${axis} of size ${n}`);
        }
        out[p] = x[(o * n + j) * inner + i];
      }
    }
  }
  return out;
}

function scatterAddKernel(
  node: Node<"scatterAdd">,
  [upd, idx]: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const axis = node.arg.axis;
  const [outer, n, inner] = around(node.shape, axis);
  const m = node.src[0].shape[axis];
  const acc = new Float64Array(node.size);
  for (let o = 0; o < outer; o++) {
    for (let a = 0; a < m; a++) {
      for (let i = 0; i < inner; i++) {
        const p = (o * m + a) * inner + i;
        const j = idx[p];
        if (j < 0 || j >= n) {
          throw new Error(`scatterAdd: index ${j} is out of range for axis ${axis} of size ${n}`);
        }
        acc[(o * n + j) * inner + i] += upd[p];
      }
    }
  }
  const out = alloc(node, ctx);
  for (let i = 0; i < acc.length; i++) out[i] = acc[i];
  return out;
}

function matmulKernel(node: Node<"matmul">, [a, b]: TypedArray[], ctx: EvalContext): TypedArray {
  const as = node.src[0].shape, bs = node.src[1].shape;
  const r = as.length;
  const M = as[r - 2], K = as[r - 1], N = bs[r - 1];
  const batch = prod(as.slice(0, r - 2));
  const out = alloc(node, ctx);
  const row = new Float64Array(N);
  for (let bi = 0; bi < batch; bi++) {
    const ao = bi * M * K, bo = bi * K * N, oo = bi * M * N;
    for (let i = 0; i < M; i++) {
      row.fill(0);
      for (let k = 0; k < K; k++) {
        const av = a[ao + i * K + k];
        const bk = bo + k * N;
        for (let j = 0; j < N; j++) row[j] += av * b[bk + j];
      }
      for (let j = 0; j < N; j++) out[oo + i * N + j] = row[j];
    }
  }
  return out;
}

/** Rows, S, Sk, Dh of an attention node's operands q [..., S, Dh], k [..., Sk, Dh]. */
function attentionSizes(node: Node): { B: number; S: number; Sk: number; Dh: number } {
  const q = node.src[0].shape, k = node.src[1].shape;
  const r = q.length;
  return { B: prod(q.slice(0, r - 2)), S: q[r - 2], Sk: k[r - 2], Dh: q[r - 1] };
}

/** Scores of query row i against every key it sees, with their softmax (float64). */
function attentionRow(
  q: TypedArray,
  k: TypedArray,
  b: number,
  i: number,
  z: { S: number; Sk: number; Dh: number },
  arg: { causal: boolean; scale: number },
): { hi: number; p: Float64Array; lse: number } {
  const { S, Sk, Dh } = z;
  const hi = arg.causal ? Math.min(i + Sk - S + 1, Sk) : Sk;
  const s = new Float64Array(hi);
  const qo = (b * S + i) * Dh;
  let m = -Infinity;
  for (let j = 0; j < hi; j++) {
    const ko = (b * Sk + j) * Dh;
    let acc = 0;
    for (let d = 0; d < Dh; d++) acc += q[qo + d] * k[ko + d];
    s[j] = acc * arg.scale;
    m = Math.max(m, s[j]);
  }
  let sum = 0;
  for (let j = 0; j < hi; j++) sum += Math.exp(s[j] - m);
  const lse = m + Math.log(sum);
  for (let j = 0; j < hi; j++) s[j] = Math.exp(s[j] - lse);
  return { hi, p: s, lse };
}

function attentionKernel(
  node: Node<"attention">,
  [q, k, v]: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const z = attentionSizes(node);
  const out = alloc(node, ctx);
  const W = z.Dh + 1;
  for (let b = 0; b < z.B; b++) {
    for (let i = 0; i < z.S; i++) {
      const { hi, p, lse } = attentionRow(q, k, b, i, z, node.arg);
      const oo = (b * z.S + i) * W;
      for (let d = 0; d < z.Dh; d++) {
        let acc = 0;
        for (let j = 0; j < hi; j++) acc += p[j] * v[(b * z.Sk + j) * z.Dh + d];
        out[oo + d] = acc;
      }
      out[oo + z.Dh] = lse;
    }
  }
  return out;
}

/**
 * Both attention gradients from the forward's softmax (recomputed here from q and k, like the
 * device): ds_ij = p_ij (dO_i·v_j − delta_i); dq = scale Σ_j ds k_j, dk = scale Σ_i ds q_i,
 * dv = Σ_i p dO_i. The saved lse is not needed on the host.
 */
function attentionGrads(
  node: Node<"attentionBwdQ"> | Node<"attentionBwdKV">,
  [q, k, v, dO, , delta]: TypedArray[],
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const z = attentionSizes(node);
  const { B, S, Sk, Dh } = z;
  const dq = new Float64Array(B * S * Dh),
    dk = new Float64Array(B * Sk * Dh),
    dv = new Float64Array(B * Sk * Dh);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < S; i++) {
      const { hi, p } = attentionRow(q, k, b, i, z, node.arg);
      const qo = (b * S + i) * Dh;
      for (let j = 0; j < hi; j++) {
        const ko = (b * Sk + j) * Dh;
        let dp = 0;
        for (let d = 0; d < Dh; d++) dp += dO[qo + d] * v[ko + d];
        const ds = p[j] * (dp - delta[b * S + i]);
        for (let d = 0; d < Dh; d++) {
          dq[qo + d] += ds * k[ko + d] * node.arg.scale;
          dk[ko + d] += ds * q[qo + d] * node.arg.scale;
          dv[ko + d] += p[j] * dO[qo + d];
        }
      }
    }
  }
  return { dq, dk, dv };
}

function attentionBwdQKernel(
  node: Node<"attentionBwdQ">,
  inputs: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const out = alloc(node, ctx);
  out.set(attentionGrads(node, inputs).dq);
  return out;
}

function attentionBwdKVKernel(
  node: Node<"attentionBwdKV">,
  inputs: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const out = alloc(node, ctx);
  const { dk, dv } = attentionGrads(node, inputs);
  const Dh = node.src[0].shape[node.src[0].shape.length - 1];
  const rows = dk.length / Dh;
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < Dh; d++) {
      out[r * 2 * Dh + d] = dk[r * Dh + d];
      out[r * 2 * Dh + Dh + d] = dv[r * Dh + d];
    }
  }
  return out;
}

/** The expert segment holding each row (-1 for rows outside every segment). */
function expertOfRows(off: TypedArray, rows: number): Int32Array {
  const E = off.length - 1;
  const out = new Int32Array(rows).fill(-1);
  for (let e = 0; e < E; e++) {
    for (let r = Math.max(0, off[e]); r < Math.min(rows, off[e + 1]); r++) out[r] = e;
  }
  return out;
}

function groupedMatmulKernel(
  node: Node<"groupedMatmul">,
  [a, b, off]: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const [R, K] = node.src[0].shape;
  const N = node.src[1].shape[2];
  const expert = expertOfRows(off, R);
  const out = alloc(node, ctx);
  const row = new Float64Array(N);
  for (let r = 0; r < R; r++) {
    const e = expert[r];
    if (e < 0) continue;
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const av = a[r * K + k];
      const bo = (e * K + k) * N;
      for (let n = 0; n < N; n++) row[n] += av * b[bo + n];
    }
    for (let n = 0; n < N; n++) out[r * N + n] = row[n];
  }
  return out;
}

function groupedWgradKernel(
  node: Node<"groupedWgrad">,
  [a, g, off]: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const [R, K] = node.src[0].shape;
  const N = node.src[1].shape[1];
  const [r0, r1] = node.arg.rows;
  const expert = expertOfRows(off, R);
  const acc = new Float64Array(node.size);
  for (let r = r0; r < r1; r++) {
    const e = expert[r];
    if (e < 0) continue;
    for (let k = 0; k < K; k++) {
      const av = a[r * K + k];
      const o = (e * K + k) * N;
      for (let n = 0; n < N; n++) acc[o + n] += av * g[r * N + n];
    }
  }
  const out = alloc(node, ctx);
  for (let i = 0; i < acc.length; i++) out[i] = acc[i];
  return out;
}

function segmentSumKernel(
  node: Node<"segmentSum">,
  [x, order, off]: TypedArray[],
  ctx: EvalContext,
): TypedArray {
  const [S, L] = node.shape;
  const [r0, r1] = node.arg.rows;
  const out = alloc(node, ctx);
  const f32 = !ctx.wide;
  for (let s = 0; s < S; s++) {
    const from = Math.max(off[s], r0), to = Math.min(off[s + 1], r1);
    for (let l = 0; l < L; l++) {
      let acc = 0;
      // In position order, rounding like the device in f32 mode.
      for (let p = from; p < to; p++) {
        acc = f32 ? Math.fround(acc + x[order[p] * L + l]) : acc + x[order[p] * L + l];
      }
      out[s * L + l] = acc;
    }
  }
  return out;
}

function topkKernel(node: Node<"topk">, [x]: TypedArray[], _ctx: EvalContext): TypedArray {
  const n = node.src[0].shape[node.src[0].shape.length - 1];
  const k = node.arg.k;
  const rows = n === 0 ? 0 : node.src[0].size / n;
  const out = new Int32Array(node.size);
  const order = new Array<number>(n);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((p, q) => {
      const a = x[base + p], b = x[base + q];
      // NaN ranks above every number, +inf included (as max and argmax, which propagate it,
      // and as NumPy and PyTorch order it); equal values (NaNs among themselves) keep index
      // order.
      const an = Number.isNaN(a), bn = Number.isNaN(b);
      if (an || bn) return an && bn ? p - q : an ? -1 : 1;
      return a > b ? -1 : a < b ? 1 : p - q;
    });
    for (let j = 0; j < k; j++) out[r * k + j] = order[j];
  }
  return out;
}

function cumsumKernel(node: Node<"cumsum">, [x]: TypedArray[], ctx: EvalContext): TypedArray {
  const { axis, reverse, exclusive } = node.arg;
  const [outer, n, inner] = around(node.shape, axis);
  const out = alloc(node, ctx);
  const isInt = isIntType(node.dtype);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = 0;
      for (let s = 0; s < n; s++) {
        const j = reverse ? n - 1 - s : s;
        const p = (o * n + j) * inner + i;
        const v = x[p];
        if (exclusive) {
          out[p] = acc;
          acc += v;
        } else {
          acc += v;
          out[p] = acc;
        }
        if (isInt) acc = node.dtype === "i32" ? acc | 0 : acc >>> 0;
      }
    }
  }
  return out;
}

const identity = <K extends OpName>(_n: Node<K>, [x]: TypedArray[]) => x;

/** The index check: the identity, or the named error for the first out-of-range index. */
function checkIndexKernel(node: Node<"checkIndex">, [x]: TypedArray[]): TypedArray {
  const n = node.arg.size;
  const bad: number[] = [];
  for (let i = 0; i < x.length; i++) if (!(x[i] >= 0 && x[i] < n)) bad.push(x[i]);
  const index = reportedIndex(bad);
  if (index !== undefined) {
    const label = indexCheckLabel(node);
    fail(label.op, indexErrorText(label, index, n), label.site);
  }
  return x;
}

/** One implementation per primitive. */
export const KERNELS: { [K in OpName]: Kernel<K> } = {
  const: (node, _i, ctx) => alloc(node, ctx).fill(node.arg.value),
  buffer: (node) => {
    throw new Error(`internal: buffer ${node.arg.id} was not bound before evaluation`);
  },
  param: (node) => {
    throw new Error(`internal: param slot ${node.arg.slot} was not bound before evaluation`);
  },
  iota: (node, _i, ctx) => {
    const out = alloc(node, ctx);
    const [, n, inner] = around(node.shape, node.arg.axis);
    for (let p = 0; p < out.length; p++) out[p] = Math.floor(p / inner) % n;
    return out;
  },
  randbitsKeyed: (node, [key]) => {
    const out = new Uint32Array(node.size);
    const k0 = key[0] >>> 0, k1 = key[1] >>> 0;
    for (let i = 0; i < out.length; i++) out[i] = threefry2x32(k0, k1, i, node.arg.stream);
    return out;
  },
  randbits: (node) => {
    const { key0, key1, stream } = node.arg;
    const out = new Uint32Array(node.size);
    for (let i = 0; i < out.length; i++) out[i] = threefry2x32(key0, key1, i, stream);
    return out;
  },

  neg: (node, [x], ctx) => mapUnary(node, x, ctx, (v) => -v),
  exp: (node, [x], ctx) => mapUnary(node, x, ctx, Math.exp),
  log: (node, [x], ctx) => mapUnary(node, x, ctx, Math.log),
  sqrt: (node, [x], ctx) => mapUnary(node, x, ctx, Math.sqrt),
  recip: (node, [x], ctx) => mapUnary(node, x, ctx, (v) => 1 / v),
  sin: (node, [x], ctx) => mapUnary(node, x, ctx, Math.sin),
  cos: (node, [x], ctx) => mapUnary(node, x, ctx, Math.cos),
  tanh: (node, [x], ctx) => mapUnary(node, x, ctx, Math.tanh),
  erf: (node, [x], ctx) => mapUnary(node, x, ctx, erf),
  abs: (node, [x], ctx) => mapUnary(node, x, ctx, Math.abs),
  floor: (node, [x], ctx) => mapUnary(node, x, ctx, Math.floor),
  not: (node, [x], ctx) =>
    mapUnary(node, x, ctx, node.dtype === "bool" ? (v) => (v ? 0 : 1) : (v) => ~v),
  cast: (node, [x], ctx) => {
    const from = node.src[0].dtype, to = node.arg.dtype;
    const out = alloc(node, ctx);
    for (let i = 0; i < x.length; i++) out[i] = convert(x[i], from, to);
    return out;
  },

  bitcast: (node, [x], ctx) => {
    // Through f32 bits even in wide mode: reinterpretation is of the 32-bit value.
    const from = node.src[0].dtype, to = node.arg.dtype;
    const bits = from === "f32"
      ? new Uint32Array(Float32Array.from(x).buffer)
      : from === "i32"
      ? new Uint32Array(Int32Array.from(x).buffer)
      : Uint32Array.from(x);
    const out = alloc(node, ctx);
    const view = to === "f32"
      ? new Float32Array(bits.buffer)
      : to === "i32"
      ? new Int32Array(bits.buffer)
      : bits;
    for (let i = 0; i < out.length; i++) out[i] = view[i];
    return out;
  },
  add: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => x + y),
  sub: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => x - y),
  mul: (node, [a, b], ctx) =>
    mapBinary(node, a, b, ctx, isIntType(node.dtype) ? Math.imul : (x, y) => x * y),
  div: (node, [a, b], ctx) =>
    mapBinary(
      node,
      a,
      b,
      ctx,
      isIntType(node.dtype) ? (x, y) => intDiv(x, y, node.dtype) : (x, y) => x / y,
    ),
  pow: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, powf),
  max: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, Math.max),
  min: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, Math.min),
  mod: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, intMod),
  lt: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => (x < y ? 1 : 0)),
  le: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => (x <= y ? 1 : 0)),
  eq: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => (x === y ? 1 : 0)),
  ne: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => (x !== y ? 1 : 0)),
  and: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => x & y),
  or: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => x | y),
  xor: (node, [a, b], ctx) => mapBinary(node, a, b, ctx, (x, y) => x ^ y),

  where: (node, [c, a, b], ctx) => {
    const out = alloc(node, ctx);
    for (let i = 0; i < out.length; i++) out[i] = c[i] ? a[i] : b[i];
    return out;
  },

  reduce: reduceKernel,
  reshape: identity,
  permute: permuteKernel,
  expand: expandKernel,
  pad: padKernel,
  slice: sliceKernel,

  gather: gatherKernel,
  scatterAdd: scatterAddKernel,
  matmul: matmulKernel,
  topk: topkKernel,
  kthLargest: (node, [x], ctx) => {
    const [n, cols] = node.src[0].shape;
    const out = alloc(node, ctx);
    const col = new Float64Array(n);
    for (let j = 0; j < cols; j++) {
      for (let i = 0; i < n; i++) col[i] = x[i * cols + j];
      col.sort();
      out[j] = col[n - node.arg.rank];
    }
    return out;
  },
  groupedMatmul: groupedMatmulKernel,
  groupedWgrad: groupedWgradKernel,
  segmentSum: segmentSumKernel,
  attention: attentionKernel,
  attentionBwdQ: attentionBwdQKernel,
  attentionBwdKV: attentionBwdKVKernel,
  cumsum: cumsumKernel,

  checkIndex: checkIndexKernel,
  stopgrad: identity,
  custom: identity,
  mark: identity,
  arg: identity,
};
