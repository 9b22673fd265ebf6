/**
 * Reductions and the softmax family on WebGPU against the interpreter: every axis form with and
 * without keepdims, integer dtypes, NaN/±inf propagation, signed zeros, permuted inputs, long
 * reductions that the legalizer chunks (> 4096), and a 1,000,000-element sum that must be exact
 * (llvmpipe stops shader loops after 65,535 iterations: a naive kernel returns 65535).
 */
import { assert, backend, check, f32, gpuTest, i32, mj, u32, vals } from "./harness.ts";

/**
 * The interpreter sums in float64 and rounds once; the GPU accumulates in f32 (sequentially per
 * invocation, then across chunks). For n terms of magnitude ≤ 3 the f32 error is far below
 * n·2^-24·Σ|x|; the tolerance here is a few units of √n·2^-24·max|x|·n^(1/2).
 */
function sumTol(n: number, mag = 3) {
  return { rtol: 1e-5, atol: 8 * n * mag * 2 ** -24 };
}

gpuTest("sum/mean/max/min/var/logsumexp over every axis form, keepdims", async (t) => {
  const x = f32([5, 7, 3], 1, -3, 3);
  const axes: (mj.Axis | undefined)[] = [undefined, 0, 1, -1, [0, 2], [1, 2], [2, 0], []];
  for (const keep of [false, true]) {
    await t.step(`keepdims=${keep}`, async () => {
      for (const a of axes) {
        await check(`axis ${JSON.stringify(a)} keepdims ${keep}`, () => {
          const v = x();
          return {
            sum: v.sum(a, keep),
            mean: v.mean(a, keep),
            max: v.max(a, keep),
            min: v.min(a, keep),
            var: v.var(a, keep),
            lse: v.logsumexp(a, keep),
          };
        }, {
          ...sumTol(105),
          fusion: a === 0 || a === undefined ? "both" : "fused",
          per: { max: { exact: true }, min: { exact: true } },
        });
      }
    });
  }
});

gpuTest("reductions with size-1 dims, scalars and non-contiguous inputs", async () => {
  const a = f32([1, 13, 1], 2), s = f32([], 3), p = f32([7, 5, 9], 4, -2, 2);
  await check("size-1 and scalar", () => {
    const v = a(), w = s();
    return {
      s0: v.sum(0),
      s1: v.sum(1, true),
      s2: v.max(2),
      all: v.mean(),
      sc: w.sum(),
      scMax: w.max([]),
      scLse: w.logsumexp(),
    };
  }, sumTol(13));
  await check("permuted → elementwise → reduce", () => {
    const v = p().permute([2, 0, 1]); // [9, 7, 5]
    return {
      a: v.exp().sum(1),
      b: v.mul(v.transpose([0, 2, 1]).transpose([0, 2, 1])).max([0, 2]),
      c: v.slice([[1, 8], null, [0, 4]]).sum(-1, true),
      d: v.sub(v.mean(-1, true)).square().mean(-1),
    };
  }, sumTol(63, 8));
});

gpuTest("reductions over different domains in one expression, and empty axes", async () => {
  const x = f32([7, 13], 15, -2, 2);
  await check("mixed domains", () => {
    const v = x();
    return {
      // Two reductions over different axes meet in one elementwise consumer.
      cross: v.sum(0, true).add(v.max(1, true)),
      // A reduction of a value that depends on a reduction over the other axis.
      nested: v.sub(v.max(0, true)).exp().sum(1),
      // Reduce → broadcast → reduce over the same rows (a row kernel with three reductions).
      chain: v.sub(v.mean(1, true)).abs().max(1).add(v.logsumexp(1)),
      // Reduce, then a full reduction of the result.
      total: v.max(1).sum(),
    };
  }, { ...sumTol(91), fusion: "both" });
  await check("size-0 axes", () => ({
    s: mj.zeros([0, 3]).add(mj.tensor(new Float32Array(0), [0, 3])).sum(0),
    i: mj.tensor(new Int32Array(0), [4, 0]).sum(1, true),
    all: mj.tensor(new Float32Array(0), [0]).sum(),
  }));
});

gpuTest("integer reductions: i32 wraparound, u32, max/min identities", async () => {
  const big = i32([7, 13], 5, -2147483648, 2147483647);
  const small = i32([7, 13], 6, -50, 50);
  const u = u32([7, 13], 7, 0, 4294967295);
  await check("ints", () => {
    const b = big(), s = small(), w = u();
    return {
      wrap: b.sum(1),
      wrapAll: b.sum(),
      max: b.max(0),
      min: b.min(1, true),
      s: s.sum([0, 1]),
      uSum: w.sum(0),
      uMax: w.max(1),
      uMin: w.min(),
      arg: s.argmax(1),
      argMin: w.argmin(0),
    };
  });
});

gpuTest("NaN and ±inf: max/min/sum propagate, logsumexp handles infinities", async () => {
  const rows = [
    [1, NaN, 3, -2],
    [NaN, NaN, 0, 1],
    [Infinity, 1, 2, 3],
    [-Infinity, -Infinity, -Infinity, -Infinity],
    [Infinity, -Infinity, 0, 1],
    [-0, 0, -0, -0],
    [0, -0, 0, 0],
    [-1, -1, -1, -1],
  ];
  const x = vals(rows.flat(), "f32", [8, 4]);
  await check("specials", () => {
    const v = x();
    return {
      max: v.max(1),
      min: v.min(1),
      sum: v.sum(1),
      lse: v.logsumexp(1),
      argmax: v.argmax(1),
      argmin: v.argmin(1),
      colMax: v.max(0),
      softmax: v.softmax(1),
      logSoftmax: v.logSoftmax(1),
    };
  }, { per: { max: { exact: true }, min: { exact: true }, colMax: { exact: true } } });
});

gpuTest("softmax/logSoftmax/logsumexp/var along each axis; argmax/argmin with ties", async () => {
  const x = f32([6, 7, 9], 8, -5, 5), big = f32([3, 129], 9, 40, 60);
  for (const a of [0, 1, 2, -1]) {
    await check(`axis ${a}`, () => {
      const v = x();
      return {
        sm: v.softmax(a),
        lsm: v.logSoftmax(a),
        lse: v.logsumexp(a),
        var: v.var(a, true),
        am: v.argmax(a),
        an: v.argmin(a, true),
      };
    }, { rtol: 2e-5, atol: 2e-6, fusion: a === -1 ? "both" : "fused" });
  }
  await check("large logits stay finite", () => {
    const v = big();
    return { sm: v.softmax(), lsm: v.logSoftmax(), lse: v.logsumexp(-1) };
  }, { rtol: 2e-5, atol: 2e-6 });
  // Ties: small integers as floats, so many rows have repeated maxima and minima.
  const ties = i32([13, 11], 10, -2, 2);
  const tiesU = u32([13, 11], 11, 0, 3);
  await check("ties go to the lowest index", () => {
    const v = ties().cast("f32"), w = ties(), q = tiesU();
    return {
      f: v.argmax(1),
      fMin: v.argmin(0),
      i: w.argmax(0, true),
      iMin: w.argmin(1),
      u: q.argmax(1),
      uMin: q.argmin(0),
    };
  });
});

gpuTest("long reductions are chunked (> 4096) and stay right", async () => {
  // 3 rows of 10,007 (prime: the chunking pads), reduced along the long axis and across it.
  const x = f32([3, 10007], 12, -1, 1);
  await check("rows of 10,007", () => {
    const v = x();
    return {
      sum: v.sum(1),
      max: v.max(1),
      min: v.min(-1, true),
      mean: v.mean(1),
      lse: v.logsumexp(1),
      var: v.var(1),
      am: v.argmax(1),
      an: v.argmin(1),
      all: v.sum(),
      sm: v.softmax(1),
    };
  }, { ...sumTol(30021, 1), per: { max: { exact: true }, min: { exact: true } }, fusion: "fused" });
  // A long reduction over a non-last axis, and over two axes together.
  const y = f32([5000, 3], 13, -1, 1);
  await check("column of 5,000 and a [70, 80] block", () => {
    const v = y();
    const w = v.reshape([50, 100, 3]).permute([2, 0, 1]);
    return { col: v.sum(0), max: v.max(0), block: w.sum([1, 2]) };
  }, { ...sumTol(5000, 1), fusion: "fused" });
  // Integer sums over long rows are exact (wraparound included).
  const z = i32([2, 70001], 14, -2147483648, 2147483647);
  const zu = u32([70001, 2], 16, 1, 4294967295);
  await check("integer rows of 70,001", () => ({
    s: z().sum(1),
    m: z().max(1),
    um: zu().min(0),
    us: zu().sum(0),
  }), { fusion: "fused" });
});

gpuTest("many reductions over one row domain stay under the loop cap together", async () => {
  // 21 chained reductions of 4,096 fuse into one row kernel: 86,016 loop iterations per
  // invocation, past llvmpipe's 65,535 total, unless the kernel is split.
  const x = f32([3, 4096], 17, -1, 1);
  await check("21 chained row reductions", () => {
    const v = x();
    let y = v.sum(1, true);
    for (let i = 0; i < 20; i++) y = v.mul(y.mul(1e-3)).sum(1, true).add(y);
    // And a per-element output after 20 reductions (one more loop of 4,096).
    let z = v.max(1, true);
    for (let i = 0; i < 19; i++) z = v.sub(z.mul(0.5)).max(1, true);
    return { y, z: v.sub(z).exp() };
  }, { rtol: 1e-5, atol: 1e-4, fusion: "fused" });
});

gpuTest("a 1,000,000-element sum of ones is exactly 1e6", async () => {
  const n = 1_000_000;
  const ones = new Float32Array(n).fill(1);
  const [v] = await check("sum of 1e6 ones", () => ({
    sum: mj.tensor(ones).sum(),
    // The same through a fused elementwise producer, and via a constant (no buffer at all).
    fused: mj.tensor(ones).mul(2).sum(),
    mean: mj.tensor(ones).reshape([1000, 1000]).mean(),
    max: mj.tensor(ones).mul(mj.arange(n).cast("f32")).max(),
  }), { exact: true, fusion: "fused" });
  assert.equal(v[0], n);
  mj.setBackend(backend());
  try {
    assert.equal(await mj.ones([n]).sum().item(), n);
    assert.equal(await mj.ones([n], { dtype: "i32" }).sum().item(), n);
    assert.equal(await mj.ones([2, n]).sum(1).max().item(), n);
  } finally {
    mj.setBackend("cpu");
  }
});
