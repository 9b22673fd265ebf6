/**
 * Movement ops on WebGPU against the interpreter, in every dtype: they only move values, so
 * every output must be bit-identical (signed zeros and NaN included).
 */
import { anyOf, check, f32, gpuTest, mj, vals } from "./harness.ts";
import type { DType } from "../../src/dtype.ts";

const ALL: DType[] = ["f32", "i32", "u32", "bool"];

gpuTest("reshape/permute/transpose/swapAxes/squeeze/unsqueeze/flatten in every dtype", async () => {
  for (const dt of ALL) {
    const x = anyOf(dt, [3, 1, 7, 5], 1);
    await check(`${dt} views`, () => {
      const v = x();
      return {
        reshape: v.reshape([7, -1]),
        reshape2: v.reshape([105]).reshape([5, 3, 7]),
        permute: v.permute([2, 0, 3, 1]),
        transpose: v.transpose(),
        swap: v.swapAxes(0, 2),
        swapDefault: mj.swapAxes(v, -2, -1),
        squeeze: v.squeeze(),
        squeeze1: v.squeeze(1),
        unsq: v.unsqueeze(0).unsqueeze(-1),
        flat: v.permute([3, 2, 1, 0]).flatten(),
        // A reshape of a permuted view reads in logical (row-major) order.
        reshapePerm: v.permute([0, 2, 3, 1]).reshape([21, 5]),
        double: v.permute([1, 3, 0, 2]).permute([2, 0, 3, 1]),
      };
    }, { exact: true, fusion: dt === "f32" ? "both" : "fused" });
  }
});

gpuTest("broadcastTo/expand: stretch size-1 dims, add leading dims", async () => {
  for (const dt of ALL) {
    const x = anyOf(dt, [7, 1, 5], 2), s = anyOf(dt, [], 3), r = anyOf(dt, [13], 4);
    await check(`${dt} broadcast`, () => ({
      a: x().broadcastTo([2, 7, 3, 5]),
      b: x().expand([7, 4, 5]),
      scalar: s().broadcastTo([3, 1, 2]),
      row: mj.broadcastTo(r(), [7, 13]),
      // Broadcast then permute then reshape (strides of 0 inside a non-contiguous view).
      mixed: x().expand([7, 3, 5]).permute([2, 1, 0]).reshape([15, 7]),
    }), { exact: true, fusion: dt === "f32" ? "both" : "fused" });
  }
});

gpuTest("slice/narrow/pad in every dtype, incl. negative bounds and size-1 results", async () => {
  for (const dt of ALL) {
    const x = anyOf(dt, [7, 13, 3], 5);
    await check(`${dt} slice/pad`, () => {
      const v = x();
      return {
        s1: v.slice([[1, 6], [-5, -1]]),
        s2: v.slice([null, 4, [1, 2]]),
        s3: v.slice([6, null, 2]),
        narrow: v.narrow(1, 3, 7),
        narrow0: mj.narrow(v, 2, 2, 1),
        pad: v.pad([[1, 2], [0, 3], [2, 0]]),
        padValue: v.pad([[0, 1], [1, 1], [0, 0]], dt === "f32" ? -2.5 : dt === "bool" ? 1 : 7),
        // Slice of a permuted view, padded again: two index remaps in one kernel.
        chain: v.permute([2, 0, 1]).slice([[1, 3], [2, 7]]).pad([[1, 0], [0, 2], [3, 3]]),
      };
    }, { exact: true, fusion: dt === "f32" ? "both" : "fused" });
  }
  const special = vals([NaN, -0, Infinity, -Infinity, 0, 1], "f32", [2, 3]);
  await check("pad/slice keep NaN, -0, ±inf", () => ({
    p: special().pad([[1, 1], [1, 0]], NaN),
    n: special().pad([[0, 0], [2, 2]], -0),
    s: special().slice([null, [1, 3]]),
  }), { exact: true });
});

gpuTest("concat/stack along each axis, in every dtype, with size-1 pieces", async () => {
  for (const dt of ALL) {
    const a = anyOf(dt, [7, 5], 6), b = anyOf(dt, [7, 1], 7), c = anyOf(dt, [7, 8], 8);
    const d = anyOf(dt, [1, 5], 9);
    await check(`${dt} concat/stack`, () => ({
      c1: mj.concat([a(), b(), c()], 1),
      c0: mj.concat([a(), d(), a()], 0),
      cneg: mj.concat([c(), b()], -1),
      s0: mj.stack([a(), a(), a()], 0),
      s2: mj.stack([a(), a()], 2),
      single: mj.concat([b()], 1),
    }), { exact: true, fusion: dt === "f32" ? "both" : "fused" });
  }
  const z = vals([-0, 0, NaN, -Infinity], "f32", [2, 2]);
  await check("concat keeps -0 and NaN", () => mj.concat([z(), z().neg()], 1), { exact: true });
});

gpuTest("movement feeding reductions and elementwise ops across kernels", async () => {
  const x = f32([9, 7, 5], 10, -2, 2);
  await check("views into reductions", () => {
    const v = x();
    const t = v.permute([2, 0, 1]); // [5, 9, 7]
    return {
      r1: t.sum(1),
      r2: t.slice([[1, 4], null, [2, 6]]).max(2, true),
      r3: t.pad([[0, 0], [1, 1], [0, 0]], -1).min(1),
      r4: mj.concat([t, t.exp()], 0).logsumexp(0),
      r5: t.reshape([45, 7]).softmax(0),
      r6: mj.stack([v, v.neg()], 1).mean([0, 3]),
    };
  }, { rtol: 2e-5, atol: 2e-6 });
});
