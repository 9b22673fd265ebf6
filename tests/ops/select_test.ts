/**
 * kthLargest: exact against a sort, on the interpreter and each compiled backend (radix select).
 */
import * as mj from "../../mod.ts";
import { assert, prng } from "../helpers.ts";
import { backend, everyBackendTest, gpuTest } from "../webgpu/harness.ts";

function column(data: Float32Array, n: number, m: number, j: number): number[] {
  return Array.from({ length: n }, (_, i) => data[i * m + j]);
}

async function check(
  backend: mj.BackendName,
  n: number,
  m: number,
  rank: number,
  seed: number,
  gen?: (r: () => number) => number,
) {
  const r = prng(seed);
  const data = Float32Array.from({ length: n * m }, () => (gen ? gen(r) : (r() * 2 - 1) * 100));
  // The order of a typed-array sort: −0 below +0, like the radix select's key order.
  const expected = Array.from({ length: m }, (_, j) => {
    const c = Float64Array.from(column(data, n, m, j)).sort().reverse();
    return rank <= n ? c[rank - 1] : -Infinity;
  });
  mj.setBackend(backend);
  const got = Array.from(await mj.kthLargest(mj.tensor(data, [n, m]), rank, 0).data());
  assert.deepEqual(got, expected, `${backend} n=${n} m=${m} rank=${rank}`);
  mj.setBackend("cpu");
}

everyBackendTest("kthLargest: ranks at both ends and in the middle, several shapes", async (b) => {
  for (
    const [n, m, rank] of [[1, 1, 1], [7, 3, 1], [7, 3, 7], [33, 5, 17], [1000, 2, 500], [
      5000,
      4,
      2500,
    ]]
  ) {
    await check(b, n, m, rank, n + rank);
  }
});

everyBackendTest(
  "kthLargest: ties, negatives, zeros of both signs, and a rank past the end",
  async (b) => {
    await check(b, 300, 3, 40, 1, (r) => Math.round(r() * 10) - 5); // heavy ties
    await check(b, 64, 2, 10, 2, (r) => (r() < 0.5 ? -0 : 0) * 1); // only zeros
    await check(b, 50, 2, 60, 3); // fewer rows than the rank: -inf
    await check(b, 200, 3, 100, 4, (r) => -Math.exp(r() * 20)); // all negative, wide range
  },
);

everyBackendTest("kthLargest: along other axes and in higher ranks", async (b) => {
  const v = Array.from({ length: 2 * 3 * 4 }, (_, i) => (i * 7) % 11);
  const at = (a: number, b: number, c: number) => v[(a * 3 + b) * 4 + c];
  const x = mj.tensor(v, [2, 3, 4]);
  const kth = (xs: number[], r: number) => [...xs].sort((p, q) => q - p)[r - 1];
  const axis1 = [0, 1].map((a) =>
    [0, 1, 2, 3].map((c) => kth([0, 1, 2].map((j) => at(a, j, c)), 2))
  );
  const last = [0, 1].flatMap((a) =>
    [0, 1, 2].map((j) => kth([0, 1, 2, 3].map((c) => at(a, j, c)), 1))
  );
  mj.setBackend(b);
  assert.deepEqual(await mj.kthLargest(x, 2, 1).tolist(), axis1, b);
  assert.deepEqual(Array.from(await mj.kthLargest(x, 1, -1).data()), last, b);
  mj.setBackend("cpu");
  assert.throws(() => mj.kthLargest(x, 0, 0), /rank must be an integer ≥ 1/);
});

gpuTest("kthLargest: BIP's design size, 65,536 rows × 64 columns", async () => {
  await check(backend(), 65536, 64, 8193, 9);
}, { slow: true });
