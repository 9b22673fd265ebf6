/**
 * Index-driven ops on WebGPU against the interpreter: gather/takeRows (every dtype, every axis),
 * scatterAdd/scatterAddRows (repeated indices), topk (ties, NaN, ±inf, k=1, k=n, the chunked
 * path for k·n > 16384), oneHot, and cumsum (every axis, reverse/exclusive, blocked scans for
 * lengths > 8192). Indices stay in range here: out-of-range ones are a named error on every
 * backend (index_checks_test.ts).
 */
import { anyOf, assert, backend, check, f32, gpuTest, i32, mj, u32, vals } from "./harness.ts";
import type { DType } from "../../src/dtype.ts";
import { prng } from "../helpers.ts";

const ALL: DType[] = ["f32", "i32", "u32", "bool"];

gpuTest("gather along every axis in every dtype, repeated indices", async () => {
  for (const dt of ALL) {
    const x = anyOf(dt, [7, 13, 3], 1);
    const i0 = i32([4, 13, 3], 2, 0, 6),
      i1 = i32([7, 9, 3], 3, 0, 12),
      i2 = i32([7, 13, 1], 4, 0, 2);
    await check(`${dt} gather`, () => {
      const v = x();
      return {
        a0: v.gather(0, i0()),
        a1: v.gather(1, i1()),
        a2: mj.gather(v, -1, i2()),
        // A computed source (fused producer) and a permuted one.
        perm: v.permute([1, 0, 2]).gather(1, i0().permute([1, 0, 2]).slice([null, [0, 7]])),
      };
    }, { exact: true, fusion: dt === "f32" ? "both" : "fused" });
  }
  const x = f32([7, 13], 5, -3, 3);
  const idx = i32([7, 4], 6, 0, 12);
  await check("gather of a computed value, index computed too", () => {
    const v = x().exp().add(1);
    const j = idx().mul(7).mod(mj.tensor(13, [], { dtype: "i32" }));
    return { g: v.gather(1, j), amax: v.gather(1, v.argmax(1, true)) };
  }, { rtol: 4e-6, atol: 2e-6 });
});

gpuTest("takeRows and scatterAddRows (1-D, 2-D, 3-D tables, repeats)", async () => {
  const rows = i32([11], 7, 0, 8);
  for (const dt of ["f32", "i32", "u32"] as const) {
    const t1 = anyOf(dt, [9], 8), t2 = anyOf(dt, [9, 13], 9), t3 = anyOf(dt, [9, 2, 5], 10);
    const u2 = anyOf(dt, [11, 13], 11), u3 = anyOf(dt, [11, 2, 5], 12);
    await check(`${dt} rows`, () => ({
      t1: mj.takeRows(t1(), rows()),
      t2: mj.takeRows(t2(), rows()),
      t3: mj.takeRows(t3(), rows()),
      s2: mj.scatterAddRows(u2(), rows(), 9),
      s3: mj.scatterAddRows(u3(), rows(), 10),
      // Accumulate into more rows than the updates touch (untouched rows stay 0).
      wide: mj.scatterAddRows(u2(), rows(), 40),
    }), {
      // Float atomics add repeated rows in an unspecified order: a few ulps of the row sum.
      rtol: 1e-6,
      atol: 1e-6,
      fusion: dt === "f32" ? "both" : "fused",
    });
  }
  const b = anyOf("bool", [9, 4], 13);
  await check("bool takeRows", () => mj.takeRows(b(), rows()));
});

gpuTest("scatterAdd along each axis, repeated indices, every numeric dtype", async () => {
  for (const dt of ["f32", "i32", "u32"] as const) {
    const u0 = anyOf(dt, [13, 5], 14), u1 = anyOf(dt, [5, 13], 15);
    const i0 = i32([13, 5], 16, 0, 6), i1 = i32([5, 13], 17, 0, 2);
    const u3 = anyOf(dt, [3, 7, 4], 18), i3 = i32([3, 7, 4], 19, 0, 3);
    await check(`${dt} scatterAdd`, () => ({
      a0: mj.scatterAdd(u0(), 0, i0(), [7, 5]),
      a1: mj.scatterAdd(u1(), 1, i1(), [5, 3]),
      mid: mj.scatterAdd(u3(), 1, i3(), [3, 4, 4]),
      last: mj.scatterAdd(u3(), -1, i3(), [3, 7, 6]),
      // A fused producer of the updates.
      computed: mj.scatterAdd(dt === "f32" ? u0().mul(2).add(1) : u0().mul(2), 0, i0(), [7, 5]),
    }), { rtol: 1e-6, atol: 2e-6, fusion: dt === "f32" ? "both" : "fused" });
  }
  // Exactly representable updates: the float sum is exact whatever the atomic order.
  const q = i32([101, 3], 20, -8, 8), qi = i32([101, 3], 21, 0, 4);
  await check(
    "f32 scatterAdd of small integers is exact",
    () => mj.scatterAdd(q().cast("f32").mul(0.25), 0, qi(), [5, 3]),
    { exact: "value" },
  );
});

gpuTest("topk: ties, NaN, ±inf, ints, k=1 and k=n, 1-D and 3-D", async () => {
  const rows = [
    [1, 3, 3, 2, 3, 0, -1],
    [NaN, 1, NaN, -Infinity, Infinity, 0, -0],
    [NaN, NaN, NaN, NaN, NaN, NaN, NaN],
    [-0, 0, -0, 0, 1, -1, 0],
    [-Infinity, -Infinity, NaN, -Infinity, 5, NaN, -Infinity],
  ];
  const x = vals(rows.flat(), "f32", [5, 7]);
  for (const k of [1, 3, 7]) {
    await check(`special rows, k=${k}`, () => {
      const { values, indices } = x().topk(k);
      return { values, indices };
    }, { exact: true });
  }
  const r = f32([3, 4, 13], 22, -2, 2);
  const ti = i32([6, 13], 23, -3, 3), tu = u32([6, 13], 24, 0, 4);
  const one = f32([13], 25);
  await check("random rows and integer ties", () => ({
    r1: r().topk(1).indices,
    r5: r().topk(5).values,
    r13: r().topk(13).indices,
    i: ti().topk(4).indices,
    iv: ti().topk(13).values,
    u: tu().topk(6).indices,
    one: one().topk(13).indices,
    size1: r().slice([null, null, [3, 4]]).topk(1).indices,
  }), { exact: true });
});

gpuTest("topk: rows with k·n > 16384 take the chunked path", async () => {
  // n = 5001 and k = 4: chunks of 4096 (the last padded), then a top-k of the candidates.
  const n = 5001;
  const rnd = prng(26);
  const d = new Float32Array(3 * n);
  for (let i = 0; i < d.length; i++) d[i] = Math.floor(rnd() * 200) / 8; // many ties
  // Row 1: all -inf (the pad value) but two, so -infs are picked and must come from the real
  // row, in index order, after the NaN (ranked first) and the 1.
  for (let i = n; i < 2 * n; i++) d[i] = -Infinity;
  d[n + 4500] = 1;
  d[n + 17] = NaN;
  // Row 2: the largest values sit in the last, padded chunk and tie with the first chunk.
  d[2 * n + 5000] = 1e6;
  d[2 * n + 4999] = 1e6;
  d[2 * n + 3] = 1e6;
  const x = mj.tensor(d, [3, n]);
  const [, idx] = await check("chunked topk", () => {
    const { values, indices } = mj.tensor(d, [3, n]).topk(4);
    return { values, indices, k1: mj.tensor(d, [3, n]).topk(1).indices };
  }, { exact: true });
  assert.deepEqual(Array.from(idx.slice(4, 8)), [17, 4500, 0, 1]);
  assert.deepEqual(Array.from(idx.slice(8, 12)).slice(0, 3), [3, 4999, 5000]);
  void x;
  // k = n = 200: k·n = 40,000 is one unchunked pass (still under the loop cap).
  const w = f32([2, 200], 27, -1, 1);
  await check("k = n = 200", () => w().topk(200).indices, { exact: true, fusion: "fused" });
  // Integer rows through the chunked path (pads are the dtype's minimum; ties keep index order).
  const wi = i32([2, 9000], 28, -3, 3);
  await check("i32 chunked", () => wi().topk(3).indices, { exact: true, fusion: "fused" });
});

gpuTest("oneHot in every dtype, incl. out-of-range indices (all zeros)", async () => {
  const idx = i32([7, 3], 29, -1, 9);
  for (const dt of ALL) {
    await check(`oneHot ${dt}`, () => mj.oneHot(idx(), 9, dt), { exact: true });
  }
});

gpuTest("cumsum along every axis, reverse/exclusive, every numeric dtype", async () => {
  for (const dt of ["f32", "i32", "u32"] as const) {
    const x = anyOf(dt, [5, 7, 3], 30);
    for (const reverse of [false, true]) {
      for (const exclusive of [false, true]) {
        await check(`${dt} reverse=${reverse} exclusive=${exclusive}`, () => {
          const v = x();
          return {
            a0: v.cumsum(0, { reverse, exclusive }),
            a1: v.cumsum(1, { reverse, exclusive }),
            a2: v.cumsum(-1, { reverse, exclusive }),
            perm: v.permute([2, 0, 1]).cumsum(1, { reverse, exclusive }),
          };
        }, {
          rtol: 1e-5,
          atol: 1e-5,
          fusion: dt === "f32" && !reverse ? "both" : "fused",
        });
      }
    }
  }
  const w = i32([2, 13], 31, -2147483648, 2147483647);
  await check("i32 cumsum wraps", () => w().cumsum(1), { exact: true });
});

gpuTest("long cumsums (> 8192) run as blocked scans", async () => {
  // The interpreter accumulates floats in float64; the GPU in f32 over blocks: for partial sums
  // of up to ~|Σ| ≤ 200 the f32 error stays below ~1e-4 absolute.
  const x = f32([2, 20011], 32, -1, 1);
  for (const [reverse, exclusive] of [[false, false], [true, true], [false, true]]) {
    await check(`rows of 20,011 reverse=${reverse} exclusive=${exclusive}`, () => ({
      c: x().cumsum(1, { reverse, exclusive }),
    }), { rtol: 1e-5, atol: 2e-4, fusion: "fused" });
  }
  // Integer scans over a long non-last axis are exact.
  const y = i32([9001, 2], 33, -1000, 1000);
  await check("i32 column of 9,001", () => y().cumsum(0, { reverse: true }), {
    exact: true,
    fusion: "fused",
  });
  // A scan of ones is exact in f32 (every partial sum < 2^24).
  const n = 70001;
  const [c] = await check("ones", () => mj.tensor(new Float32Array(n).fill(1)).cumsum(0), {
    exact: true,
    fusion: "fused",
  });
  assert.equal(c[n - 1], n);
});

gpuTest("NaN rule: topk, argmax, max and kthLargest agree, NaNs of either sign", async () => {
  // Columns with a positive NaN, a negative NaN (sign bit set, as x86 makes 0/0), none.
  const bits = new Uint32Array([
    0x3f800000,
    0x7fc00000,
    0x40400000, // 1, +NaN, 3
    0xff800000,
    0xffc00000,
    0x7f800000, // -inf, -NaN, +inf
    0x40000000,
    0x40000000,
    0xbf800000, // 2, 2, -1
  ]);
  const x = () => mj.bitcast(mj.tensor(bits, [3, 3], { dtype: "u32" }), "f32");
  await check("NaN rule", () => ({
    top: x().topk(2).indices,
    arg: x().argmax(1),
    argmin: x().argmin(1),
    max: x().max(1),
    kth1: mj.kthLargest(x(), 1, 1),
    kth2: mj.kthLargest(x(), 2, 1),
    colKth: mj.kthLargest(x(), 1, 0),
  }), { exact: "value" });
  mj.setBackend(backend());
  assert.deepEqual([...await x().topk(2).indices.data()], [1, 2, 1, 2, 0, 1]);
  assert.deepEqual([...await x().argmax(1).data()], [1, 1, 0]);
});
