/**
 * matmul on WebGPU against the interpreter: odd shapes (the scalar path when N or K is not a
 * multiple of 4), the vec4 path, batched and broadcast batches, 1-D operands, non-contiguous
 * operands, fused epilogues and prologues, and K = 100,000 (split-K: one loop of K would pass
 * llvmpipe's 65,535-iteration cap).
 */
import { compileStep } from "../../src/passes/compile.ts";
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

/** The kernels `build`'s output compiles to (data leaves are inputs), without running them. */
function programs(build: () => mj.Tensor) {
  const prog = compileStep([build().node], (n) => n.op === "buffer", {
    fuse: true,
    maxBindings: 8,
  });
  return prog.launches.map((l) => l.program);
}

/** A prologue case: name, layout, which operands have a prologue, builder, kernels (1). */
type PrologueCase = [string, string, "A" | "B" | "AB", () => mj.Tensor, number?];

gpuTest(
  "matmul prologues: elementwise producers fuse into the reads of NN, TN, NT and scalar",
  async () => {
    const x = f32([9, 12], 51), xt = f32([12, 8], 52), w = f32([12, 8], 53), wt = f32([8, 12], 54);
    const s = f32([12], 55), b = f32([12], 56), x7 = f32([7, 13], 57), w7 = f32([13, 5], 58);
    const x7t = f32([13, 7], 59), w7t = f32([5, 13], 60);
    const x3 = f32([3, 7, 8], 61), w3 = f32([3, 8, 12], 62), g3 = f32([3, 1, 8], 63);
    const w8 = f32([8, 12], 64), a8 = f32([7, 8], 65), v = f32([12], 66);
    // NN 8x8 tiles: row blocks of 8 over 129 rows, column groups of 2 over 3 (clamped reads).
    const xc = f32([2, 129, 20], 67), wc = f32([2, 20, 12], 68), sc = f32([20], 69);
    const cases: PrologueCase[] = [
      ["NN A", "NN", "A", () => x().exp().matmul(w())],
      ["NN B", "NN", "B", () => x().matmul(w().tanh())],
      ["NN A and B", "NN", "AB", () => x().mul(s()).add(b()).matmul(w().tanh())],
      ["NN clamped", "NN 8x8", "AB", () => xc().mul(sc()).sub(0.5).matmul(wc().mul(2))],
      // B's two transposes cancel: it is read as stored, with no prologue.
      ["TN A", "TN", "A", () => xt().tanh().transpose().matmul(w().swapAxes(-1, -2).transpose())],
      ["TN A and B", "TN", "AB", () => xt().exp().swapAxes(-1, -2).matmul(w().neg())],
      ["NT B", "NT", "B", () => x().matmul(wt().exp().transpose())],
      ["NT A and B", "NT", "AB", () => x().mul(s()).matmul(wt().tanh().swapAxes(-1, -2))],
      ["scalar A and B", "scalar", "AB", () => x7().exp().matmul(w7().tanh())],
      ["scalar B", "scalar", "B", () => x7().matmul(w7().mul(3).add(1))],
      [
        "scalar transposed",
        "scalar",
        "AB",
        () => x7t().tanh().transpose().matmul(w7t().exp().transpose()),
      ],
      ["batched", "NN", "AB", () => x3().exp().matmul(w3().tanh())],
      // A per-batch scale [3, 1, 8] read at (mm_b, 0, mm_c).
      ["batched per-batch scale", "NN", "A", () => x3().mul(g3()).matmul(w3())],
      ["broadcast B", "NN", "AB", () => x3().tanh().matmul(w8().exp())],
      ["broadcast A", "NN", "A", () => a8().exp().matmul(w3())],
      // 1-D @ 2-D: the reshape to [1, 12] is read in place too (the [1, 8] result's reshape to
      // [8] is a copy, as before).
      ["1-D A", "NN", "A", () => v().exp().matmul(w()), 2],
      // Shared helpers (tanh) in a prologue and the epilogue are defined once.
      ["with an epilogue", "NN", "AB", () => x().tanh().matmul(w().tanh()).tanh()],
    ];
    for (const [name, variant, reads, build, kernels = 1] of cases) {
      const ps = programs(build);
      assert.equal(ps.length, kernels, `${name}: ${ps.map((p) => p.label).join("; ")}`);
      const mm = ps[0];
      assert.match(mm.label, new RegExp(`\\(${variant}[ )]`), name);
      assert.equal(mm.code.includes("fn mm_readA"), reads.includes("A"), `${name}: A prologue`);
      assert.equal(mm.code.includes("fn mm_readB"), reads.includes("B"), `${name}: B prologue`);
      await check(name, build, {
        rtol: 2e-5,
        atol: 4e-6,
        fusion: name === "NN A and B" ? "both" : "fused",
      });
    }
  },
);

gpuTest("matmul prologues: what does not fuse is realized and still right", async () => {
  const x = f32([9, 8], 71), w = f32([8, 8], 72), y = f32([9, 8], 73);
  const cases: [string, number, () => mj.Tensor][] = [
    // The prologue would read B's buffer, bound as vec4: the operand gets its own kernel.
    ["reads the other operand", 2, () => {
      const b = w();
      return x().mul(b.slice([[0, 1], null])).matmul(b);
    }],
    // Two full-size reads; a chain too long to recompute per read.
    ["two bases", 2, () => x().add(y()).matmul(w())],
    ["gelu", 2, () => x().gelu().matmul(w())],
    // Transposed inside the elementwise op: the base is not in the operand's layout.
    ["transpose inside", 2, () => x().transpose().exp().transpose().matmul(w())],
  ];
  for (const [name, kernels, build] of cases) {
    assert.equal(programs(build).length, kernels, name);
    await check(name, build, { rtol: 2e-5, atol: 4e-6, fusion: "fused" });
  }
  // A large matmul keeps a transcendental out of its reads (recomputed N/(4C) times per
  // element); an arithmetic prologue still fuses.
  const big = (f: (x: mj.Tensor) => mj.Tensor) => {
    const a = mj.tensor(new Float32Array(1024 * 1024), [1024, 1024]);
    return programs(() => f(a).matmul(a)).length;
  };
  assert.equal(big((a) => a.exp()), 2);
  assert.equal(big((a) => a.mul(2).add(1)), 1);
});

gpuTest("matmul prologues: the gradient through a fused tanh", async () => {
  const x = f32([9, 12], 81), w = f32([12, 8], 82);
  const loss = (x: mj.Tensor, w: mj.Tensor) => x.tanh().matmul(w).sum();
  // dW = tanh(x)ᵀ · 1 reads x through a prologue in the TN layout.
  const ps = programs(() => mj.grad(loss)(x(), w())[1]);
  assert.ok(ps.some((p) => p.code.includes("fn mm_readA")), ps.map((p) => p.label).join("; "));
  await check("grad of tanh(x)·w", () => {
    const [dx, dw] = mj.grad(loss)(x(), w());
    return { dx, dw };
  }, { rtol: 1e-4, atol: 1e-5 });
});
