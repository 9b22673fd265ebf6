/** kthLargest: exact against a sort, on the interpreter and on WebGPU (radix select). */
import * as mj from "../../mod.ts";
import { assert, prng, SLOW } from "../helpers.ts";
import { acquireGpu } from "../../src/runtime/device.ts";

const gpu = (await acquireGpu()) !== null;

function column(data: Float32Array, n: number, m: number, j: number): number[] {
  return Array.from({ length: n }, (_, i) => data[i * m + j]);
}

async function check(
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
  for (const backend of gpu ? ["cpu", "webgpu"] as const : ["cpu"] as const) {
    mj.setBackend(backend);
    const got = Array.from(await mj.kthLargest(mj.tensor(data, [n, m]), rank, 0).data());
    assert.deepEqual(got, expected, `${backend} n=${n} m=${m} rank=${rank}`);
  }
  mj.setBackend("cpu");
}

Deno.test("kthLargest: ranks at both ends and in the middle, several shapes", async () => {
  for (
    const [n, m, rank] of [[1, 1, 1], [7, 3, 1], [7, 3, 7], [33, 5, 17], [1000, 2, 500], [
      5000,
      4,
      2500,
    ]]
  ) {
    await check(n, m, rank, n + rank);
  }
});

Deno.test("kthLargest: ties, negatives, zeros of both signs, and a rank past the end", async () => {
  await check(300, 3, 40, 1, (r) => Math.round(r() * 10) - 5); // heavy ties
  await check(64, 2, 10, 2, (r) => (r() < 0.5 ? -0 : 0) * 1); // only zeros
  await check(50, 2, 60, 3); // fewer rows than the rank: -inf
  await check(200, 3, 100, 4, (r) => -Math.exp(r() * 20)); // all negative, wide range
});

Deno.test("kthLargest: along other axes and in higher ranks", async () => {
  const v = Array.from({ length: 2 * 3 * 4 }, (_, i) => (i * 7) % 11);
  const at = (a: number, b: number, c: number) => v[(a * 3 + b) * 4 + c];
  const x = mj.tensor(v, [2, 3, 4]);
  const kth = (xs: number[], r: number) => [...xs].sort((p, q) => q - p)[r - 1];
  const axis1 = [0, 1].map((a) =>
    [0, 1, 2, 3].map((c) => kth([0, 1, 2].map((b) => at(a, b, c)), 2))
  );
  const last = [0, 1].flatMap((a) =>
    [0, 1, 2].map((b) => kth([0, 1, 2, 3].map((c) => at(a, b, c)), 1))
  );
  for (const backend of gpu ? ["cpu", "webgpu"] as const : ["cpu"] as const) {
    mj.setBackend(backend);
    assert.deepEqual(await mj.kthLargest(x, 2, 1).tolist(), axis1, backend);
    assert.deepEqual(Array.from(await mj.kthLargest(x, 1, -1).data()), last, backend);
  }
  mj.setBackend("cpu");
  assert.throws(() => mj.kthLargest(x, 0, 0), /rank must be an integer ≥ 1/);
});

Deno.test({
  name: "kthLargest: BIP's design size, 65,536 rows × 64 columns",
  ignore: !SLOW || !gpu,
}, async () => {
  await check(65536, 64, 8193, 9);
});
