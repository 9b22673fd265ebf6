/**
 * Float64 finite-difference gradient checks for every differentiable op. Each op's output is
 * contracted with a fixed random weight tensor, so every output element carries a distinct
 * cotangent: a plain `.sum()` would make softmax (rows sum to 1) or a permutation look correct
 * whatever their backward did. Inputs stay away from kinks and ties (relu/abs at 0, max/min
 * ties, clip bounds), where the finite difference straddles two branches.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, evalWide, prng, wideTensor } from "../helpers.ts";

type Input = { data: ArrayLike<number>; shape: number[] };
type Fn = (...xs: mj.Tensor[]) => mj.Tensor;

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Uniform values in [lo, hi). */
function uniform(shape: number[], seed: number, lo = -1, hi = 1): Input {
  const r = prng(seed);
  return { data: Float64Array.from({ length: numel(shape) }, () => lo + (hi - lo) * r()), shape };
}

/** Values with |x| in [lo, hi) and a random sign: keeps relu/abs/sign kinks out of reach. */
function awayFromZero(shape: number[], seed: number, lo = 0.2, hi = 1.5): Input {
  const r = prng(seed);
  return {
    data: Float64Array.from(
      { length: numel(shape) },
      () => (r() < 0.5 ? -1 : 1) * (lo + (hi - lo) * r()),
    ),
    shape,
  };
}

/** Σ w ⊙ y for a weight tensor fixed by y's shape (the same in all three FD evaluations). */
function weighted(y: mj.Tensor): mj.Tensor {
  const seed = 9000 + y.shape.reduce((h, d) => h * 31 + d, y.ndim);
  return y.mul(wideTensor(uniform(y.shape, seed, -1.5, 1.5).data, y.shape)).sum();
}

/** FD check of `f`'s (weighted) output with respect to every input. */
function fd(f: Fn, inputs: Input[], opts: { rtol?: number; atol?: number } = {}): void {
  checkGradFD((...xs) => weighted(f(...xs)), inputs, opts);
}

const i32 = (data: number[] | number[][], shape?: number[]) =>
  mj.tensor(data, shape, { dtype: "i32" });

// ---- elementwise binary --------------------------------------------------------------------

Deno.test("fd: binary arithmetic, both operands", async (t) => {
  const a = uniform([3, 4], 1), b = awayFromZero([3, 4], 2, 0.5, 2);
  await t.step("add", () => fd((x, y) => x.add(y), [a, b]));
  await t.step("sub", () => fd((x, y) => x.sub(y), [a, b]));
  await t.step("mul", () => fd((x, y) => x.mul(y), [a, b]));
  await t.step("div", () => fd((x, y) => x.div(y), [a, b]));
  await t.step(
    "pow (positive base, both operands)",
    () => fd((x, y) => x.pow(y), [uniform([3, 4], 3, 0.5, 2), uniform([3, 4], 4, -1.5, 1.5)]),
  );
  await t.step("pow with a number exponent", () => {
    fd((x) => x.pow(3), [uniform([5], 5, -2, 2)]);
    fd((x) => x.pow(-0.5), [uniform([5], 6, 0.5, 2)]);
  });
  await t.step("scalar operands on either side", () => {
    fd((x) => mj.sub(2, x).mul(mj.div(1.5, x)), [awayFromZero([4], 7, 0.5, 2)]);
  });
});

Deno.test("fd: maximum and minimum away from ties", async (t) => {
  // b differs from a by at least 0.1 in a random direction, so no element is near a tie.
  const a = uniform([3, 4], 11);
  const off = awayFromZero([3, 4], 12, 0.1, 0.5);
  const b = { data: Float64Array.from(a.data, (v, i) => v + Number(off.data[i])), shape: [3, 4] };
  await t.step("maximum", () => fd((x, y) => mj.maximum(x, y), [a, b]));
  await t.step("minimum", () => fd((x, y) => mj.minimum(x, y), [a, b]));
  await t.step("with a broadcast scalar", () => {
    fd((x) => x.maximum(0.05).add(x.minimum(-0.05)), [awayFromZero([6], 13)]);
  });
});

Deno.test("fd: broadcasting inside binary ops ([3,1] with [1,4])", async (t) => {
  const a = uniform([3, 1], 21), b = awayFromZero([1, 4], 22, 0.5, 2);
  for (
    const [name, f] of [
      ["add", (x, y) => x.add(y)],
      ["sub", (x, y) => x.sub(y)],
      ["mul", (x, y) => x.mul(y)],
      ["div", (x, y) => x.div(y)],
      ["rank-extending [4] with [2,3,4]", (x, y) => y.reshape([4]).mul(x.add(mj.ones([2, 3, 4])))],
    ] as [string, Fn][]
  ) await t.step(name, () => fd(f, [a, b]));
  await t.step("gradients come back in the operands' shapes", () => {
    const [ga, gb] = mj.grad((x: mj.Tensor, y: mj.Tensor) => x.mul(y).sum())(
      mj.tensor([[1], [2], [3]]),
      mj.tensor([[1, 2, 3, 4]]),
    );
    assert.deepEqual(ga.shape, [3, 1]);
    assert.deepEqual(gb.shape, [1, 4]);
    // d/da_i Σ_j a_i b_j = Σ_j b_j; d/db_j = Σ_i a_i.
    assertClose(evalWide(ga)[0], [10, 10, 10]);
    assertClose(evalWide(gb)[0], [6, 6, 6, 6]);
  });
});

// ---- elementwise unary -----------------------------------------------------------------------

Deno.test("fd: unary ops", async (t) => {
  const any = uniform([2, 5], 31, -2, 2);
  const pos = uniform([2, 5], 32, 0.3, 3);
  const nz = awayFromZero([2, 5], 33);
  const cases: [string, Fn, Input][] = [
    ["neg", (x) => x.neg(), any],
    ["abs (away from 0)", (x) => x.abs(), nz],
    ["exp", (x) => x.exp(), any],
    ["log", (x) => x.log(), pos],
    ["sqrt", (x) => x.sqrt(), pos],
    ["rsqrt", (x) => x.rsqrt(), pos],
    ["reciprocal", (x) => x.reciprocal(), nz],
    ["square", (x) => x.square(), any],
    ["sin", (x) => x.sin(), any],
    ["cos", (x) => x.cos(), any],
    ["tanh", (x) => x.tanh(), any],
    ["erf", (x) => x.erf(), any],
    ["erf in the tail (|x| > 2.5)", (x) => x.erf(), awayFromZero([2, 5], 34, 2.6, 4)],
    ["sigmoid", (x) => x.sigmoid(), uniform([2, 5], 35, -6, 6)],
    ["relu (away from 0)", (x) => x.relu(), nz],
    ["gelu (erf form)", (x) => x.gelu(), any],
    ["gelu (tanh form)", (x) => x.gelu("tanh"), any],
    ["silu", (x) => x.silu(), any],
    ["softplus", (x) => x.softplus(), awayFromZero([2, 5], 36, 0.1, 4)],
    ["clip (away from the bounds)", (x) => x.clip(-0.5, 0.7), uniform([4, 5], 37, -1.5, 1.5)],
    ["cast f32→f32", (x) => x.cast("f32").mul(x.cast("f32")), any],
  ];
  for (const [name, f, x] of cases) await t.step(name, () => fd(f, [x]));
  await t.step("clip inputs really straddle both bounds", () => {
    const d = Array.from(uniform([4, 5], 37, -1.5, 1.5).data);
    assert.ok(
      d.some((v) => v < -0.5) && d.some((v) => v > 0.7) && d.some((v) => Math.abs(v) < 0.5),
    );
    assert.ok(d.every((v) => Math.abs(v + 0.5) > 1e-3 && Math.abs(v - 0.7) > 1e-3));
  });
  await t.step("cast through i32 blocks the gradient", () => {
    const [g] = mj.grad((x: mj.Tensor) => x.cast("i32").cast("f32").mul(x).sum())(
      mj.tensor([1.5, -2.5]),
    );
    // Only the direct factor x contributes: d/dx (trunc(x)·x) = trunc(x) away from the steps.
    assertClose(evalWide(g)[0], [1, -2]);
  });
});

Deno.test("fd: where sends the gradient to both branches", async (t) => {
  const cond = () => mj.tensor([[true, false, true, false], [false, false, true, true]]);
  await t.step("fixed condition", () => {
    fd((a, b) => mj.where(cond(), a.exp(), b.square()), [
      uniform([2, 4], 41),
      uniform([2, 4], 42),
    ]);
  });
  await t.step("broadcast condition and operands", () => {
    fd((a, b) => mj.where(mj.tensor([[true], [false]]), a, b), [
      uniform([1, 4], 43),
      uniform([2, 1], 44),
    ]);
  });
  await t.step("condition computed from the input", () => {
    fd((x) => mj.where(x.gt(0.3), x.square(), x.exp()), [uniform([3, 4], 45, -1, 1)]);
  });
  await t.step("each branch gets exactly the selected cotangent", () => {
    const [ga, gb] = mj.grad((a: mj.Tensor, b: mj.Tensor) => mj.where(cond(), a, b).sum())(
      mj.zeros([2, 4]),
      mj.zeros([2, 4]),
    );
    assert.deepEqual(Array.from(evalWide(ga)[0]), [1, 0, 1, 0, 0, 0, 1, 1]);
    assert.deepEqual(Array.from(evalWide(gb)[0]), [0, 1, 0, 1, 1, 1, 0, 0]);
  });
});

// ---- reductions ------------------------------------------------------------------------------

Deno.test("fd: reductions over various axes, with and without keepdims", async (t) => {
  const x = uniform([2, 3, 4], 51, -2, 2);
  const axes: (mj.Axis | undefined)[] = [undefined, 0, -1, [0, 2], [1], []];
  const ops: [string, (x: mj.Tensor, a: mj.Axis | undefined, k: boolean) => mj.Tensor][] = [
    ["sum", (x, a, k) => x.sum(a, k)],
    ["mean", (x, a, k) => x.mean(a, k)],
    ["max", (x, a, k) => x.max(a, k)],
    ["min", (x, a, k) => x.min(a, k)],
    ["var", (x, a, k) => x.var(a, k)],
    ["logsumexp", (x, a, k) => x.logsumexp(a, k)],
  ];
  for (const [name, op] of ops) {
    await t.step(name, () => {
      for (const a of axes) {
        for (const k of [false, true]) fd((x) => op(x, a, k), [x]);
      }
    });
  }
  await t.step("max/min pick the single winner (no ties in the input)", () => {
    const d = Array.from(x.data);
    assert.equal(new Set(d).size, d.length);
  });
  await t.step("max shares the gradient among tied winners", () => {
    const [g] = mj.grad((x: mj.Tensor) => x.max(-1).sum())(mj.tensor([[1, 3, 3], [2, 0, 1]]));
    assertClose(evalWide(g)[0], [0, 0.5, 0.5, 1, 0, 0]);
  });
  await t.step("softmax and logSoftmax along each axis", () => {
    for (const a of [0, 1, -1]) {
      fd((x) => x.softmax(a), [x]);
      fd((x) => x.logSoftmax(a), [x]);
    }
  });
  await t.step("softmax with large logits stays exact", () => {
    fd((x) => x.softmax(-1), [uniform([2, 5], 52, 40, 60)]);
  });
});

// ---- movement ----------------------------------------------------------------------------------

Deno.test("fd: movement ops", async (t) => {
  const x = uniform([2, 3, 4], 61);
  const cases: [string, Fn, Input[]][] = [
    ["reshape", (x) => x.reshape([4, -1]), [x]],
    ["reshape to 1-D and back", (x) => x.reshape([24]).reshape([3, 8]), [x]],
    ["permute", (x) => x.permute([2, 0, 1]), [x]],
    ["transpose (reverse)", (x) => x.transpose(), [x]],
    ["transpose (perm)", (x) => x.transpose([1, 0, 2]), [x]],
    ["swapAxes", (x) => x.swapAxes(0, 2), [x]],
    ["swapAxes (default: last two)", (x) => x.swapAxes(), [x]],
    ["broadcastTo (stretch and new axis)", (x) => x.broadcastTo([2, 3, 4]), [uniform([3, 1], 62)]],
    ["broadcastTo (new axes only)", (x) => mj.broadcastTo(x, [2, 3, 4]), [uniform([4], 63)]],
    ["squeeze (all)", (x) => x.squeeze(), [uniform([3, 1, 4, 1], 64)]],
    ["squeeze (one axis)", (x) => x.squeeze(1), [uniform([3, 1, 4, 1], 64)]],
    ["unsqueeze", (x) => x.unsqueeze(0).unsqueeze(-1), [x]],
    ["slice (ranges, index, negative)", (x) => x.slice([[0, 1], 2, [-3, -1]]), [x]],
    ["slice (whole axes)", (x) => x.slice([null, [1, 3]]), [x]],
    ["narrow", (x) => x.narrow(2, 1, 2), [x]],
    ["pad (constant value)", (x) => x.pad([[1, 0], [0, 2], [1, 1]], 0.5), [x]],
    [
      "concat",
      (a, b, c) => mj.concat([a, b, c], 1),
      [uniform([2, 3], 65), uniform([2, 1], 66), uniform([2, 2], 67)],
    ],
    ["concat (axis 0, same tensor twice)", (a) => mj.concat([a, a.exp()], 0), [
      uniform([2, 3], 68),
    ]],
    ["stack (axis 0)", (a, b) => mj.stack([a, b], 0), [uniform([2, 3], 69), uniform([2, 3], 70)]],
    ["stack (last axis)", (a, b) => mj.stack([a, b], -1), [
      uniform([2, 3], 71),
      uniform([2, 3], 72),
    ]],
  ];
  for (const [name, f, inputs] of cases) await t.step(name, () => fd(f, inputs));
});

// ---- indexing ----------------------------------------------------------------------------------

Deno.test("fd: indexing ops", async (t) => {
  await t.step("gather along each axis (repeated indices)", () => {
    fd((x) => x.gather(1, i32([[0, 2, 2], [1, 1, 0], [3, 0, 3]])), [uniform([3, 4], 81)]);
    fd((x) => x.gather(0, i32([[0, 2, 2, 1], [2, 2, 0, 0]])), [uniform([3, 4], 82)]);
  });
  await t.step("scatterAdd (repeated indices accumulate)", () => {
    fd((u) => mj.scatterAdd(u, 0, i32([[0, 1], [2, 1], [0, 0], [2, 2]]), [3, 2]), [
      uniform([4, 2], 83),
    ]);
    fd((u) => mj.scatterAdd(u, 1, i32([[0, 3], [3, 3], [2, 1]]), [3, 5]), [uniform([3, 2], 84)]);
  });
  await t.step("takeRows", () => {
    fd((x) => mj.takeRows(x, i32([2, 0, 2, 3])), [uniform([4, 3], 85)]);
    fd((x) => mj.takeRows(x, i32([1, 1])), [uniform([3, 2, 2], 86)]);
  });
  await t.step("scatterAddRows", () => {
    fd((u) => mj.scatterAddRows(u, i32([1, 1, 0]), 4), [uniform([3, 2], 87)]);
  });
  await t.step("topk values", () => {
    fd((x) => x.topk(2).values, [uniform([3, 5], 88)]);
    fd((x) => x.topk(1).values.mul(x.topk(3).values.sum(-1, true)), [uniform([2, 4], 89)]);
  });
  await t.step("topk values: the gradient reaches exactly the selected entries", () => {
    const x = mj.tensor([[0.1, 0.9, -0.3, 0.5], [2, -1, 3, 0]]);
    const [g] = mj.grad((x: mj.Tensor) => x.topk(2).values.mul(mj.tensor([10, 1])).sum())(x);
    // Row 0: 0.9 (first, weight 10) and 0.5 (second, weight 1); row 1: 3 then 2.
    assert.deepEqual(Array.from(evalWide(g)[0]), [0, 10, 0, 1, 1, 0, 10, 0]);
  });
  await t.step("cumsum (forward/reverse × inclusive/exclusive, both axes)", () => {
    const x = uniform([3, 4], 90);
    for (const reverse of [false, true]) {
      for (const exclusive of [false, true]) {
        for (const axis of [0, -1]) fd((x) => x.cumsum(axis, { reverse, exclusive }), [x]);
      }
    }
  });
});

// ---- linear algebra ------------------------------------------------------------------------------

Deno.test("fd: matmul", async (t) => {
  const cases: [string, number[], number[]][] = [
    ["2-D", [3, 4], [4, 5]],
    ["batched", [2, 3, 4], [2, 4, 5]],
    ["broadcast batch (rank differs)", [2, 3, 4], [4, 5]],
    ["broadcast batch (size-1 dims)", [2, 1, 3, 4], [1, 3, 4, 2]],
    ["1-D @ 2-D", [4], [4, 3]],
    ["2-D @ 1-D", [3, 4], [4]],
    ["1-D @ 1-D", [4], [4]],
    ["1-D @ batched", [4], [2, 4, 3]],
  ];
  for (const [name, sa, sb] of cases) {
    await t.step(name, () => fd((a, b) => a.matmul(b), [uniform(sa, 101), uniform(sb, 102)]));
  }
});

// ---- stopGradient ----------------------------------------------------------------------------------

Deno.test("stopGradient: the gradient through it is exactly zero", () => {
  const x = mj.tensor([1.5, -2, 3]);
  const [g0] = mj.grad((x: mj.Tensor) => x.stopGradient().square().sum())(x);
  assert.deepEqual(Array.from(evalWide(g0)[0]), [0, 0, 0]);
  // d/dx [x · sg(x)²] = sg(x)² only: the stopped factor contributes nothing.
  const [g1] = mj.grad((x: mj.Tensor) => x.mul(mj.stopGradient(x).square()).sum())(x);
  assert.deepEqual(Array.from(evalWide(g1)[0]), [2.25, 4, 9]);
  // The forward value is untouched.
  assert.deepEqual(Array.from(evalWide(mj.stopGradient(x))[0]), [1.5, -2, 3]);
});

Deno.test("fd: a composite that chains many ops", () => {
  // A small MoE-flavoured block: router softmax, top-2 gating, expert matmuls, layer-norm-ish.
  fd(
    (x, w, e) => {
      const probs = x.matmul(w).softmax(-1);
      const gate = probs.topk(2).values;
      const h = x.matmul(e).gelu();
      const norm = h.sub(h.mean(-1, true)).mul(h.var(-1, true).add(1e-3).rsqrt());
      return norm.mul(gate.sum(-1, true)).logsumexp(-1);
    },
    [uniform([3, 4], 111), uniform([4, 5], 112), uniform([4, 6], 113)],
  );
});
