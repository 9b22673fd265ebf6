/**
 * Launches with more than 65,535 workgroups (WebGPU's per-dimension limit): elementwise, row,
 * scan, top-k, scatter, gather and matmul kernels fold their grids into 2-D (or 3-D for matmul)
 * and must still cover every element exactly once. Values are integers (or exact floats) so
 * every comparison is exact.
 */
import { assert, check, gpuTest, i32, mj } from "./harness.ts";

/** 65,535 workgroups of 64 invocations, plus an odd remainder. */
const N = 65535 * 64 + 37;

gpuTest("elementwise kernels over more than 65,535 workgroups", async () => {
  const x = i32([N], 1, -1000, 1000);
  const [v] = await check("i32 index arithmetic", () => {
    const t = x();
    return {
      y: t.mul(3).add(mj.arange(N)),
      f: t.cast("f32").mul(0.5).add(mj.arange(N).cast("f32")),
      // Random bits use the element index as their counter.
      bits: mj.rand([N], { seed: 9 }).add(t.cast("f32").mul(0)),
    };
  }, { exact: true, fusion: "fused" });
  // The last elements (in the second grid row) are really written.
  assert.equal(v[N - 1], 3 * x.data[N - 1] + N - 1);
  assert.equal(v[N - 2], 3 * x.data[N - 2] + N - 2);
});

gpuTest("row, scan and top-k kernels over more than 65,535 workgroups", async () => {
  const x = i32([N, 2], 2, -1000, 1000);
  await check("rows", () => {
    const t = x();
    const f = t.cast("f32");
    return {
      sum: t.sum(1),
      arg: f.argmax(1),
      // A per-element row kernel (reduce then broadcast back).
      centered: t.sub(t.min(1, true)),
      scan: t.cumsum(1, { reverse: true }),
      top: f.topk(1).indices,
    };
  }, { exact: true, fusion: "fused" });
  // Scan lines: the scanned axis is short, the number of lines is large.
  const y = i32([2, N], 3, -1000, 1000);
  await check("scan lines", () => y().cumsum(0), { exact: true, fusion: "fused" });
});

gpuTest("scatter-add with more than 65,535 workgroups of updates", async () => {
  const u = i32([N], 4, -100, 100), idx = i32([N], 5, 0, 999);
  await check("scatterAddRows of 4.2M updates", () => ({
    i: mj.scatterAddRows(u(), idx(), 1000),
    // Quarter-integers: f32 sums stay exact (|Σ| < 2^21), whatever the atomic order.
    f: mj.scatterAddRows(u().cast("f32").mul(0.25), idx(), 1000),
    // A target larger than 65,535 workgroups (the zero-fill kernel folds too).
    big: mj.scatterAddRows(u(), idx(), N + 5),
  }), { exact: "value", fusion: "fused" });
});

gpuTest("matmul with more than 65,535 row blocks × batches", async () => {
  const B = 70001;
  const a = i32([B, 1, 4], 6, -3, 3), b = i32([B, 4, 4], 7, -3, 3), c = i32([B, 2, 3], 8, -3, 3);
  const d = i32([B, 3, 1], 9, -3, 3);
  await check("batched", () => ({
    vec4: a().cast("f32").matmul(b().cast("f32")),
    scalar: c().cast("f32").matmul(d().cast("f32")),
  }), { exact: "value", fusion: "fused" });
});
