/**
 * The VJP rule table: for each primitive, the gradients of its sources given the gradient of
 * its output. Rules build ordinary graph nodes, so backward graphs fuse like forward ones.
 * `null` means "no gradient" (non-differentiable, or zero).
 */
import type { Node } from "../ir/node.ts";
import type { OpName } from "../ir/ops.ts";
import type { Tensor } from "../tensor.ts";
import {
  cast,
  cos,
  div,
  eq,
  exp,
  gt,
  log,
  lt,
  mul,
  neg,
  sin,
  sub,
  where,
} from "../ops/elementwise.ts";
import { broadcastTo, constant, permuted, prim } from "../ops/prim.ts";
import { isFloat } from "../dtype.ts";
import { fail } from "../errors.ts";

export type VjpRule<K extends OpName> = (
  g: Tensor,
  node: Node<K>,
  src: Tensor[],
  out: Tensor,
) => (Tensor | null)[];

const none = <K extends OpName>(_g: Tensor, node: Node<K>) => node.src.map(() => null);
const pass = <K extends OpName>(g: Tensor) => [g];

/** Reduce-sum `g` back to `shape` along the axes that `expand` stretched. */
function unexpand(g: Tensor, shape: readonly number[]): Tensor {
  const axes = shape.flatMap((d, i) => (d === 1 && g.shape[i] !== 1 ? [i] : []));
  return axes.length ? prim("reduce", [g], { op: "sum", axes }) : g;
}

function swapLast(t: Tensor): Tensor {
  const r = t.ndim;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return permuted(t, perm);
}

/** Gradient mask for max/min: 1 where `x` wins, 1/2 on ties. */
function winMask(x: Tensor, y: Tensor, wins: (a: Tensor, b: Tensor) => Tensor): Tensor {
  const one = constant(1, x.shape, x.dtype), zero = constant(0, x.shape, x.dtype);
  return where(wins(x, y), one, where(eq(x, y), constant(0.5, x.shape, x.dtype), zero));
}

/** The last axis of `t` restricted to [from, to). */
function lastRange(t: Tensor, from: number, to: number): Tensor {
  const lead = t.shape.slice(0, -1);
  return prim("slice", [t], { starts: [...lead.map(() => 0), from], ends: [...lead, to] });
}

/**
 * Fused attention: the output packs o (Dh columns) and lse (one column). With dO and dlse from
 * the cotangent, ds_ij = p_ij (dO_i·v_j − delta_i) where delta = rowsum(dO ⊙ o) − dlse; the two
 * backward routines recompute p from q, k and lse instead of storing it.
 */
function attentionVjp(
  g: Tensor,
  node: Node<"attention">,
  [q, k, v]: Tensor[],
  out: Tensor,
): Tensor[] {
  const Dh = q.shape[q.ndim - 1];
  const lead = out.shape.slice(0, -1);
  const dO = lastRange(g, 0, Dh);
  const dLse = prim("reshape", [lastRange(g, Dh, Dh + 1)], { shape: lead });
  const o = lastRange(out, 0, Dh);
  const lse = prim("reshape", [lastRange(out, Dh, Dh + 1)], { shape: lead });
  const rowDot = prim(
    "reshape",
    [prim("reduce", [mul(dO, o)], { op: "sum", axes: [q.ndim - 1] })],
    { shape: lead },
  );
  const delta = sub(rowDot, dLse);
  const dq = prim("attentionBwdQ", [q, k, v, dO, lse, delta], node.arg);
  const dkv = prim("attentionBwdKV", [q, k, v, dO, lse, delta], node.arg);
  return [dq, lastRange(dkv, 0, Dh), lastRange(dkv, Dh, 2 * Dh)];
}

/** The fused attention backward is not itself differentiated (no second derivatives). */
function noSecondOrder(): never {
  fail(
    "grad",
    "second derivatives through fused attention are not supported; build the model with " +
      "mj.nn.attention(q, k, v, { fused: false }) to differentiate twice",
  );
}

export const VJP_RULES: { [K in OpName]: VjpRule<K> } = {
  const: none,
  buffer: none,
  param: none,
  iota: none,
  randbits: none,
  randbitsKeyed: none,

  neg: (g) => [neg(g)],
  exp: (g, _n, _s, out) => [mul(g, out)],
  log: (g, _n, [x]) => [div(g, x)],
  sqrt: (g, _n, _s, out) => [div(mul(g, 0.5), out)],
  recip: (g, _n, _s, out) => [neg(mul(g, mul(out, out)))],
  sin: (g, _n, [x]) => [mul(g, cos(x))],
  cos: (g, _n, [x]) => [neg(mul(g, sin(x)))],
  tanh: (g, _n, _s, out) => [mul(g, sub(1, mul(out, out)))],
  erf: (g, _n, [x]) => [mul(g, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))],
  abs: (g, _n, [x]) => {
    const sign = where(gt(x, 0), 1, where(lt(x, 0), constant(-1, x.shape, x.dtype), 0));
    return [mul(g, sign)];
  },
  floor: none,
  not: none,
  bitcast: none,
  cast: (g, node) =>
    isFloat(node.src[0].dtype) && isFloat(node.dtype) ? [cast(g, node.src[0].dtype)] : [null],

  add: (g) => [g, g],
  sub: (g) => [g, neg(g)],
  mul: (g, _n, [a, b]) => [mul(g, b), mul(g, a)],
  div: (g, _n, [_a, b], out) => [div(g, b), neg(div(mul(g, out), b))],
  pow: (g, _n, [a, b], out) => [
    mul(g, mul(b, prim("pow", [a, sub(b, 1)], null))),
    mul(g, where(gt(a, 0), mul(out, log(where(gt(a, 0), a, 1))), 0)),
  ],
  max: (g, _n, [a, b]) => [mul(g, winMask(a, b, gt)), mul(g, winMask(b, a, gt))],
  min: (g, _n, [a, b]) => [mul(g, winMask(a, b, lt)), mul(g, winMask(b, a, lt))],
  mod: none,
  lt: none,
  le: none,
  eq: none,
  ne: none,
  and: none,
  or: none,
  xor: none,

  where: (g, _n, [c]) => [null, where(c, g, 0), where(c, 0, g)],

  reduce: (g, node, [x], out) => {
    const shape = node.src[0].shape;
    if (node.arg.op === "sum") return [broadcastTo(g, shape)];
    // max/min: the gradient is shared equally among the tied winners.
    const win = cast(eq(x, broadcastTo(out, shape)), x.dtype);
    const count = prim("reduce", [win], { op: "sum", axes: node.arg.axes });
    return [mul(broadcastTo(div(g, count), shape), win)];
  },
  reshape: (g, node) => [prim("reshape", [g], { shape: node.src[0].shape })],
  permute: (g, node) => {
    const inv = new Array<number>(node.arg.perm.length);
    node.arg.perm.forEach((p, i) => (inv[p] = i));
    return [permuted(g, inv)];
  },
  expand: (g, node) => [unexpand(g, node.src[0].shape)],
  pad: (g, node) => {
    const starts = node.arg.pads.map(([lo]) => lo);
    const ends = node.src[0].shape.map((d, i) => starts[i] + d);
    return [prim("slice", [g], { starts, ends })];
  },
  slice: (g, node) => {
    const pads = node.src[0].shape.map(
      (d, i) => [node.arg.starts[i], d - node.arg.ends[i]] as [number, number],
    );
    return [pads.every(([a, b]) => a === 0 && b === 0) ? g : prim("pad", [g], { pads, value: 0 })];
  },

  gather: (g, node, [_x, idx]) => [
    prim("scatterAdd", [g, idx], { axis: node.arg.axis, shape: node.src[0].shape }),
    null,
  ],
  scatterAdd: (g, node, [_u, idx]) => [prim("gather", [g, idx], { axis: node.arg.axis }), null],
  matmul: (g, _n, [a, b]) => [
    prim("matmul", [g, swapLast(b)], null),
    prim("matmul", [swapLast(a), g], null),
  ],
  topk: none,
  kthLargest: none,
  attention: attentionVjp,
  // Only the compiler builds it (from scatterAdd, after differentiation).
  segmentSum: none,
  attentionBwdQ: noSecondOrder,
  attentionBwdKV: noSecondOrder,
  // Per segment: da = g · b[e]ᵀ, db[e] = a_segᵀ · g_seg. Offsets are integer, no gradient.
  groupedMatmul: (g, _n, [a, b, off]) => [
    prim("groupedMatmul", [g, permuted(b, [0, 2, 1]), off], null),
    prim("groupedWgrad", [a, g, off], { rows: [0, a.shape[0]] }),
    null,
  ],
  // y[e] = Σ a[r]ᵀ ⊗ g[r]: da[r] = g[r] · y̅[e]ᵀ, dg[r] = a[r] · y̅[e] (rows outside the range: 0).
  groupedWgrad: (gy, node, [a, g, off]) => {
    const [r0, r1] = node.arg.rows;
    const R = a.shape[0];
    const inRange = (t: Tensor) => {
      if (r0 === 0 && r1 === R) return t;
      const rows = prim("iota", [], { axis: 0, shape: t.shape, dtype: "i32" });
      const keep = prim("and", [
        prim("le", [constant(r0, t.shape, "i32"), rows], null),
        prim("lt", [rows, constant(r1, t.shape, "i32")], null),
      ], null);
      return where(keep, t, 0);
    };
    return [
      inRange(prim("groupedMatmul", [g, permuted(gy, [0, 2, 1]), off], null)),
      inRange(prim("groupedMatmul", [a, gy, off], null)),
      null,
    ];
  },
  cumsum: (g, node) => [
    prim("cumsum", [g], {
      axis: node.arg.axis,
      reverse: !node.arg.reverse,
      exclusive: node.arg.exclusive,
    }),
  ],

  stopgrad: none,
  checkIndex: none,
  // Custom nodes are handled by the sweep itself (their backward needs all sibling outputs).
  custom: none,
  mark: pass,
  arg: pass,
};
