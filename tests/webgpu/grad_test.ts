/**
 * Gradients on WebGPU against the interpreter: `mj.valueAndGrad` of composite functions (the
 * backward graph is scheduled and fused like the forward one) must give the same loss and the
 * same gradients on both backends. Every loss contracts its output with a fixed random weight
 * so that each output element carries its own cotangent.
 */
import { check, f32, gpuTest, i32, type Input, mj, vals } from "./harness.ts";

type Fn = (...xs: mj.Tensor[]) => mj.Tensor;

/**
 * Gradients sum many f32 products on the GPU where the interpreter rounds each op's result from
 * float64: a few ulps per op over chains of ~10 ops and sums of ≤ 100 terms.
 */
const GRAD = { rtol: 1e-4, atol: 1e-5 };

/** Σ w ⊙ y with w fixed by y's shape (fresh tensor every call). */
function weighted(y: mj.Tensor): mj.Tensor {
  const seed = 9000 + y.shape.reduce((h, d) => h * 31 + d, y.ndim);
  return y.mul(f32(y.shape, seed, -1.5, 1.5)()).sum();
}

async function gradCheck(
  name: string,
  f: Fn,
  inputs: Input[],
  opts: { rtol?: number; atol?: number; fusion?: "both" | "fused" } = {},
): Promise<void> {
  await check(name, () => {
    const [value, grads] = mj.valueAndGrad((...xs: mj.Tensor[]) => weighted(f(...xs)))(
      ...inputs.map((x) => x()),
    );
    const out: Record<string, mj.Tensor> = { value };
    (grads as (mj.Tensor | null)[]).forEach((g, i) => {
      if (g) out[`d${i}`] = g;
    });
    return out;
  }, { ...GRAD, ...opts });
}

gpuTest("grad: softmax·matmul, gelu MLP, layer norm", async (t) => {
  await t.step(
    "softmax(x @ w)",
    () =>
      gradCheck("softmax·matmul", (x, w) => x.matmul(w).softmax(-1), [
        f32([7, 13], 1),
        f32([13, 5], 2),
      ]),
  );
  await t.step("gelu MLP with biases (both gelu forms)", () =>
    gradCheck(
      "mlp",
      (x, w1, b1, w2, b2) => {
        const h = x.matmul(w1).add(b1);
        return mj.concat([h.gelu(), h.gelu("tanh")], 1).matmul(w2).add(b2).square();
      },
      [f32([9, 12], 3), f32([12, 16], 4), f32([16], 5), f32([32, 5], 6), f32([1, 5], 7)],
    ));
  await t.step("layer norm (mean/var over the last axis, gain and bias)", () =>
    gradCheck(
      "layernorm",
      (x, g, b) => {
        const m = x.mean(-1, true), v = x.var(-1, true);
        return x.sub(m).mul(v.add(1e-5).rsqrt()).mul(g).add(b);
      },
      [f32([6, 7, 13], 8, -2, 2), f32([13], 9), f32([13], 10)],
    ));
  await t.step("cross-entropy over logSoftmax with gathered labels", () =>
    gradCheck(
      "cross-entropy",
      (x, w) => {
        const logits = x.matmul(w);
        const labels = i32([11, 1], 11, 0, 6)();
        return logits.logSoftmax(-1).gather(1, labels).neg().mean().add(
          logits.logsumexp(-1).square().mean().mul(1e-2),
        );
      },
      [f32([11, 9], 12), f32([9, 7], 13)],
    ));
});

gpuTest("grad: indexing ops (gather, takeRows, scatterAdd, cumsum, topk values)", async (t) => {
  await t.step(
    "gather and takeRows (repeated indices accumulate)",
    () =>
      gradCheck("gather/takeRows", (table, x) => {
        const ids = vals([2, 0, 2, 5, 1, 2, 0], "i32")();
        const emb = mj.takeRows(table, ids); // [7, 4]
        const idx = i32([7, 3], 14, 0, 3)();
        return emb.mul(x).gather(1, idx).exp();
      }, [f32([6, 4], 15), f32([7, 4], 16)]),
  );
  await t.step("scatterAdd and scatterAddRows", () =>
    gradCheck("scatter", (u, v) => {
      const idx = i32([5, 3], 17, 0, 3)();
      const rows = vals([1, 1, 0, 3, 1], "i32")();
      return mj.scatterAdd(u, 0, idx, [4, 3]).mul(mj.scatterAddRows(v, rows, 4)).tanh();
    }, [f32([5, 3], 18), f32([5, 3], 19)]));
  await t.step("cumsum, every direction", () =>
    gradCheck("cumsum", (x) =>
      mj.concat([
        x.cumsum(1),
        x.cumsum(1, { reverse: true }),
        x.cumsum(0, { exclusive: true }),
        x.cumsum(0, { reverse: true, exclusive: true }),
      ], 0).sin(), [f32([5, 7], 20)]));
  await t.step(
    "topk values (no ties)",
    () => gradCheck("topk", (x) => x.topk(3).values.mul(x.topk(1).values), [f32([6, 13], 21)]),
  );
});

gpuTest("grad: movement, where, max/min reductions (with ties), broadcasting", async (t) => {
  await t.step("concat/pad/slice/permute", () =>
    gradCheck("movement", (a, b) => {
      const c = mj.concat([a, b.exp()], 1); // [5, 7]
      const s = mj.stack([a.sum(1), b.max(1)], 1).sum(1); // [5]
      return c.pad([[1, 0], [0, 2]], 0.5).slice([[0, 4], [1, 8]]).permute([1, 0]).mul(
        s.slice([[1, 5]]).reshape([1, 4]).broadcastTo([7, 4]),
      );
    }, [f32([5, 4], 22), f32([5, 3], 23)]));
  await t.step("where with a computed condition", () =>
    gradCheck(
      "where",
      (x, y) => mj.where(x.gt(0.1), x.square(), y.exp()).add(mj.where(y.lt(0), 0, y)),
      [f32([7, 13], 24), f32([7, 13], 25)],
    ));
  await t.step(
    "max/min reductions and maximum/minimum, with ties",
    () =>
      gradCheck("max/min", (x, y) =>
        mj.concat([
          x.max(1, true),
          x.min(1, true),
          x.max(0, true).mul(x.min(0, true)).sum(1, true).broadcastTo([9, 1]),
        ], 1).add(mj.maximum(x, y).minimum(x.mul(0.5)).sum(1, true)), [
        // Small integers as floats: rows have tied maxima and minima, and x ties with y.
        i32ish([9, 6], 26),
        i32ish([9, 6], 27),
      ]),
  );
  await t.step(
    "broadcasting operands reduce their gradients",
    () =>
      gradCheck("broadcast", (a, b, c) => a.mul(b).div(c.abs().add(1)).sub(b.pow(2)), [
        f32([7, 1, 5], 28),
        f32([3, 1], 29),
        f32([], 30),
      ]),
  );
  await t.step("unary chain: sigmoid/silu/softplus/clip/relu/abs/erf/log/sqrt", () =>
    gradCheck(
      "unary",
      (x) =>
        mj.concat([
          x.sigmoid(),
          x.silu(),
          x.softplus(),
          x.clip(-0.5, 0.5),
          x.relu(),
          x.abs().add(0.5).log(),
          x.erf(),
          x.square().add(1).sqrt(),
          x.sin().mul(x.cos()).mul(x.tanh()),
        ], 0),
      [f32([3, 29], 31, -2, 2)],
    ));
});

gpuTest("grad: long rows (chunked reductions in forward and backward)", async () => {
  await gradCheck("softmax over 5,003", (x) => x.softmax(-1).mul(x.var(-1, true)), [
    f32([2, 5003], 32, -3, 3),
  ], { fusion: "fused" });
});

/** Integer-valued f32 input (ties on purpose). */
function i32ish(shape: number[], seed: number): Input {
  const src = i32(shape, seed, -2, 2);
  const f = (() => mj.tensor(Float32Array.from(src.data), shape)) as Input;
  f.data = Float32Array.from(src.data);
  f.shape = shape;
  f.dtype = "f32";
  return f;
}

gpuTest("grad: batched and batch-broadcast matmul, pow with a tensor exponent", async (t) => {
  await t.step(
    "batched matmul [2,3,5,6] @ [2,3,6,4]",
    () => gradCheck("bmm", (a, b) => a.matmul(b), [f32([2, 3, 5, 6], 21), f32([2, 3, 6, 4], 22)]),
  );
  await t.step(
    "batch-broadcast matmul [2,1,5,6] @ [1,3,6,4]",
    () =>
      gradCheck("bmm-broadcast", (a, b) => a.matmul(b), [
        f32([2, 1, 5, 6], 23),
        f32([1, 3, 6, 4], 24),
      ]),
  );
  await t.step(
    "a shared weight over a batch: [4,5,8] @ [8,3]",
    () =>
      gradCheck("bmm-shared", (a, b) => a.matmul(b).tanh(), [f32([4, 5, 8], 25), f32([8, 3], 26)]),
  );
  await t.step(
    "pow with both operands tensors (positive base)",
    () =>
      gradCheck("pow", (u, w) => u.pow(w), [f32([6, 7], 27, 0.5, 2), f32([6, 7], 28, -1.5, 1.5)]),
  );
});
