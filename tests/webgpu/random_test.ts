/**
 * Counter-based random numbers on WebGPU against the interpreter: the Threefry bits are
 * bit-identical, rand (24 bits over 2^24) is exact, randn (log, sqrt, cos in f32) agrees to
 * float tolerance. Each builder adds a fresh zero buffer so that every run computes (a seeded
 * draw with no inputs is one interned node, which a backend may have cached).
 */
import { assert, check, gpuTest, mj } from "./harness.ts";
import { randomBits } from "../../src/ops/creation.ts";

const zeroU = (shape: number[]) =>
  mj.tensor(new Uint32Array(shape.reduce((a, b) => a * b, 1)), shape);
/** -0 leaves every float unchanged under addition (+0 would turn -0 into +0). */
const negZero = (shape: number[]) =>
  mj.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(-0), shape);

gpuTest("random bits are bit-identical (odd shapes, streams, seeds above 2^32)", async () => {
  for (
    const [shape, seed] of [[[7, 13], 0], [[129], 42], [[3, 1, 5], 2 ** 40 + 3], [[], 9]] as const
  ) {
    const s = [...shape];
    await check(`bits ${JSON.stringify(s)} seed ${seed}`, () => ({
      s0: randomBits(s, 0, seed).logicalXor(zeroU(s)),
      s1: randomBits(s, 1, seed).logicalXor(zeroU(s)),
      s7: randomBits(s, 7, seed).logicalXor(zeroU(s)),
    }));
  }
  // Bits read through a view (the counter is the element's index in the draw's own shape).
  await check("bits through a permute and a slice", () => ({
    p: randomBits([5, 7], 0, 3).permute([1, 0]).logicalXor(zeroU([7, 5])),
    s: randomBits([5, 7], 0, 3).slice([[1, 4], [2, 7]]).logicalXor(zeroU([3, 5])),
  }));
});

gpuTest("rand is exact and randn agrees on both backends", async () => {
  const [r] = await check("seeded rand/randn", () => ({
    rand: mj.rand([7, 13], { seed: 5 }).add(negZero([7, 13])),
    randn: mj.randn([7, 13], { seed: 5 }).add(negZero([7, 13])),
    scalar: mj.randn([], { seed: 11 }).add(negZero([])),
    big: mj.randn([1, 129, 3], { seed: 2 ** 33 }).add(negZero([1, 129, 3])),
  }), {
    per: {
      rand: { exact: true },
      // randn = sqrt(-2 log u1)·cos(2π u2) in f32: a few ulps of log, sqrt and cos, and |z| ≤ 6.
      randn: { rtol: 1e-5, atol: 1e-5 },
      scalar: { rtol: 1e-5, atol: 1e-5 },
      big: { rtol: 1e-5, atol: 1e-5 },
    },
  });
  assert.ok(Array.from(r).every((v) => v >= 0 && v < 1 && Number.isInteger(v * 2 ** 24)));
  // The global sequence: mj.seed restarts it on both backends alike.
  await check("global seed sequence", () => {
    mj.seed(1234);
    const a = mj.rand([5, 3]), b = mj.rand([5, 3]), c = mj.randn([4]);
    return { a: a.add(negZero([5, 3])), b: b.add(negZero([5, 3])), c: c.add(negZero([4])) };
  }, { per: { a: { exact: true }, b: { exact: true }, c: { rtol: 1e-5, atol: 1e-5 } } });
  // Random values feeding a fused computation (dropout-like mask and scaling).
  await check("dropout-like mask", () => {
    const x = mj.randn([9, 17], { seed: 3 }).add(negZero([9, 17]));
    const keep = mj.rand([9, 17], { seed: 4 }).ge(0.25);
    return { y: mj.where(keep, x.div(0.75), 0), kept: keep.cast("i32").sum() };
  }, { rtol: 1e-5, atol: 1e-5 });
});
