/**
 * matmul on WebGPU against the interpreter: odd shapes (the scalar path when N or K is not a
 * multiple of 4), the vec4 path, batched and broadcast batches, 1-D operands, non-contiguous
 * operands, fused epilogues, and K = 100,000 (split-K: one loop of K would pass llvmpipe's
 * 65,535-iteration cap).
 */
import { assert, check, f32, gpuTest, i32, mj } from "./harness.ts";

/**
 * The interpreter accumulates in float64 and rounds once; the GPU accumulates K products in f32
 * with fma. For entries in [-1, 1] the error is well below K·2^-24·Σ|a·b| ≤ K²·2^-24; in practice
 * it grows like √K ulps of the row's magnitude, so atol scales with √K.
 */
const tol = (K: number) => ({ rtol: 1e-5, atol: 4e-7 * Math.sqrt(K) * 4 });

gpuTest("matmul 2-D: scalar and vec4 paths, odd and size-1 shapes", async () => {
  const shapes: [number, number, number][] = [
    [7, 13, 5], // scalar path (N, K odd)
    [9, 12, 8], // vec4 path (N, K multiples of 4), M not a multiple of 8
    [16, 8, 12], // vec4 with full row blocks
    [5, 16, 7], // K multiple of 4, N odd → scalar
    [3, 7, 4], // N multiple of 4, K odd → scalar
    [1, 13, 1], // size-1 M and N
    [13, 1, 9], // K = 1 (outer product)
    [1, 1, 1],
    [33, 129, 65], // larger odd shapes: several workgroups and row blocks
  ];
  for (const [M, K, N] of shapes) {
    const a = f32([M, K], M * 100 + K), b = f32([K, N], K * 100 + N + 7);
    await check(`[${M},${K}]@[${K},${N}]`, () => a().matmul(b()), {
      ...tol(K),
      fusion: M === 7 || M === 9 ? "both" : "fused",
    });
  }
});

gpuTest("matmul: batched, broadcast batches, 1-D operands", async () => {
  const cases: [number[], number[]][] = [
    [[3, 7, 13], [3, 13, 5]], // batched, scalar path
    [[2, 5, 8], [2, 8, 12]], // batched, vec4 path
    [[2, 3, 7, 13], [13, 5]], // batch broadcast on the right (rank differs)
    [[7, 12], [4, 12, 8]], // batch broadcast on the left
    [[2, 1, 5, 6], [1, 3, 6, 4]], // size-1 batch dims broadcast both ways
    [[13], [13, 5]], // 1-D @ 2-D
    [[7, 13], [13]], // 2-D @ 1-D
    [[13], [13]], // 1-D @ 1-D
    [[13], [3, 13, 5]], // 1-D @ batched
    [[3, 7, 13], [13]], // batched @ 1-D
  ];
  for (const [sa, sb] of cases) {
    const a = f32(sa, sa.length * 31 + sa[0]), b = f32(sb, sb.length * 37 + sb[0]);
    await check(`${JSON.stringify(sa)}@${JSON.stringify(sb)}`, () => a().matmul(b()), {
      ...tol(13),
      fusion: sa.length === 3 && sb.length === 3 ? "both" : "fused",
    });
  }
});

gpuTest("matmul: non-contiguous operands, computed operands and fused epilogues", async () => {
  const a = f32([13, 7], 1), b = f32([5, 13], 2), c = f32([7, 5], 3), bias = f32([5], 4);
  await check("transposed operands and an epilogue", () => {
    const x = a().transpose(), w = b().transpose(); // [7, 13] @ [13, 5]
    return {
      plain: x.matmul(w),
      epilogue: x.matmul(w).add(bias()).gelu(),
      // The epilogue reads another buffer at the output's coordinates.
      resid: x.matmul(w).mul(c()).sub(c().exp()),
      computed: x.exp().matmul(w.tanh()).relu(),
      // A consumer that reduces: the matmul is realized, then a row kernel.
      reduced: x.matmul(w).softmax(-1),
      // An epilogue that reads one of the matmul's operands.
      self: x.matmul(w).add(x.slice([null, [0, 5]])),
    };
  }, { rtol: 2e-5, atol: 4e-6 });
  const q = f32([2, 3, 8, 16], 5), k = f32([2, 3, 8, 16], 6);
  await check("attention-like batched scores", () => {
    const s = q().matmul(k().swapAxes(-1, -2)).mul(0.25);
    return { p: s.softmax(-1).matmul(k()) };
  }, { rtol: 2e-5, atol: 4e-6 });
});

gpuTest(
  "matmul: operands stored transposed (TN, NT, TT layouts), batched and broadcast",
  async () => {
    // [M, K, N] chosen so that each layout's vec4 path and its scalar fallback both run.
    const shapes: [number, number, number][] = [[8, 12, 16], [12, 7, 8], [7, 12, 5], [9, 13, 4]];
    for (const [M, K, N] of shapes) {
      const at = f32([K, M], M + K),
        bt = f32([N, K], N * K),
        a = f32([M, K], 3 * M),
        b = f32([K, N], 5 * N);
      await check(`transposed [${M},${K},${N}]`, () => ({
        tn: at().transpose().matmul(b()),
        nt: a().matmul(bt().transpose()),
        tt: at().transpose().matmul(bt().transpose()),
        ttEpi: at().swapAxes().matmul(bt().swapAxes()).mul(2).add(1),
      }), { ...tol(K), fusion: M === 8 ? "both" : "fused" });
    }
    const a3 = f32([3, 12, 8], 41), b3 = f32([3, 16, 12], 42), w = f32([16, 12], 43);
    await check("batched transposed, broadcast weight", () => ({
      tn: a3().swapAxes(-1, -2).matmul(w().transpose()),
      nt: a3().swapAxes(-1, -2).matmul(b3().swapAxes(-1, -2)),
      tt: b3().matmul(a3()).swapAxes(-1, -2).matmul(w()),
    }), tol(16));
  },
);

gpuTest("matmul whose two operands are one buffer (x@x, x@xᵀ)", async () => {
  const x = f32([12, 12], 44), y = f32([7, 13], 45);
  await check("aliased operands", () => {
    const a = x(), b = y();
    return {
      sq: a.matmul(a),
      gram: b.matmul(b.transpose()),
      gramT: b.transpose().matmul(b),
    };
  }, tol(13));
});

gpuTest("matmul with K = 100,000 (split-K) is right", async () => {
  const K = 100_000;
  // Small integers: every product and partial sum is an exact f32 integer (|Σ| ≤ 4·K < 2^24),
  // so both backends must agree exactly, whatever the summation order.
  const a = i32([3, K], 7, -2, 2), b = i32([K, 5], 8, -2, 2);
  const [exact] = await check(
    "exact integer-valued K = 100,000",
    () => a().cast("f32").matmul(b().cast("f32")),
    { exact: "value", fusion: "fused" },
  );
  // An independent check of one entry (a capped loop would stop at 65,535 terms).
  let s = 0;
  for (let k = 0; k < K; k++) s += a.data[k] * b.data[k * 5];
  assert.equal(exact[0], s);
  // Random floats, vec4 path (N multiple of 4) and a 1-D dot product.
  const x = f32([2, K], 9), y = f32([K, 4], 10), v = f32([K], 11), yt = f32([4, K], 12);
  await check("random K = 100,000", () => ({
    mm: x().matmul(y()),
    // A linear layer's layout: the weight stored [out, in] and read transposed.
    linear: x().matmul(yt().transpose()),
    // The gradient's layout: Kᵀ @ (…), the contraction over the long axis.
    tn: y().transpose().matmul(y()),
    dot: v().matmul(v()),
    ones: mj.ones([K]).matmul(mj.ones([K, 1])),
  }), { ...tol(K), per: { ones: { exact: true } }, fusion: "fused" });
});
