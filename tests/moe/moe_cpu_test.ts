/**
 * MoE primitives on the interpreter: routing semantics, the routing table's invariants, and
 * float64 finite-difference checks of dispatch, combine, grouped matmul and the whole layer.
 */
import * as mj from "../../mod.ts";
import {
  assert,
  assertClose,
  checkGradFD,
  evalWide,
  prng,
  randomArray,
  wideTensor,
} from "../helpers.ts";

mj.setBackend("cpu");

const i32 = (data: number[], shape?: number[]) => mj.tensor(data, shape, { dtype: "i32" });

Deno.test("moe.route: softmax scores, top-k by score with ties to the lower index, counts", async () => {
  const logits = mj.tensor([[1, 3, 3, 0], [0, 0, 0, 0], [5, -1, 2, 2]]);
  const r = mj.moe.route(logits, { k: 2 });
  assert.deepEqual(await r.indices.tolist(), [[1, 2], [0, 1], [0, 2]]);
  const s = await r.scores.data();
  const sm = (row: number[]) =>
    row.map((v) => Math.exp(v) / row.reduce((a, b) => a + Math.exp(b), 0));
  assertClose(s, [...sm([1, 3, 3, 0]), ...sm([0, 0, 0, 0]), ...sm([5, -1, 2, 2])]);
  const w = await r.weights.data();
  assertClose(w, [s[1], s[2], s[4], s[5], s[8], s[10]]);
  assert.deepEqual(Array.from(await r.counts.data()), [2, 2, 2, 0]);
});

Deno.test("moe.route: sigmoid scores, normalize, and a selection-only bias without gradient", async () => {
  const logits = mj.tensor([[0.5, -0.2, 0.1], [1, 2, 3]]);
  const bias = mj.tensor([0, 1, 0]);
  const r = mj.moe.route(logits, { k: 1, score: "sigmoid", bias, normalize: true });
  // The bias flips row 0's choice to expert 1; weights stay unbiased and normalize to 1.
  assert.deepEqual(await r.indices.tolist(), [[1], [1]]);
  assertClose(await r.weights.data(), [1, 1]);
  const r2 = mj.moe.route(logits, { k: 2, score: "sigmoid", bias });
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  assertClose(await r2.weights.data(), [sig(-0.2), sig(0.5), sig(2), sig(3)]);
  const [gb] = mj.grad((b: mj.Tensor) => mj.moe.route(logits, { k: 2, bias: b }).weights.sum())(
    bias,
  );
  assert.deepEqual(Array.from(await gb.data()), [0, 0, 0]);
});

Deno.test("moe.route: errors name the option and the expected values", () => {
  const logits = mj.zeros([4, 3]);
  assert.throws(
    () => mj.moe.route(logits, { topK: 4 }),
    /moe\.route: topK must be an integer in 1\.\.3/,
  );
  assert.throws(
    () => mj.moe.route(logits, { k: 1, score: "tanh" as "softmax" }),
    /score must be one of "softmax", "sigmoid"/,
  );
  assert.throws(() => mj.moe.route(logits, { k: 1, bias: mj.zeros([2]) }), /bias must be f32\[3\]/);
  assert.throws(
    () => mj.moe.route(logits, { k: 1, topk: 2 } as unknown as mj.moe.RouteOptions),
    /unknown option "topk"/,
  );
  assert.throws(
    () => mj.moe.route(mj.zeros([2, 3, 4]), { k: 1 }),
    /expected router logits f32\[T, N\]/,
  );
});

async function tableOf(indices: number[][], N: number) {
  const t = mj.moe.routingTable(i32(indices.flat(), [indices.length, indices[0].length]), N);
  return {
    counts: Array.from(await t.counts.data()),
    offsets: Array.from(await t.offsets.data()),
    destRow: Array.from(await t.destRow.data()),
    srcEntry: Array.from(await t.srcEntry.data()),
    tokenOfRow: Array.from(await t.tokenOfRow.data()),
  };
}

Deno.test("moe.routingTable: destination rows are expert-contiguous, stable, and a bijection", async () => {
  const rand = prng(3);
  for (const [T, k, N] of [[1, 1, 1], [7, 2, 4], [64, 2, 8], [20, 3, 64], [5, 4, 4], [33, 1, 2]]) {
    const idx = Array.from({ length: T }, () => {
      // k distinct experts per token, like top-k.
      const pool = Array.from({ length: N }, (_, i) => i).sort(() => rand() - 0.5);
      return pool.slice(0, k);
    });
    const t = await tableOf(idx, N);
    const flat = idx.flat();
    const P = T * k;
    assert.deepEqual(
      t.counts,
      Array.from({ length: N }, (_, e) => flat.filter((x) => x === e).length),
    );
    assert.equal(t.offsets[0], 0);
    assert.equal(t.offsets[N], P);
    assert.deepEqual(
      [...t.destRow].sort((a, b) => a - b),
      Array.from({ length: P }, (_, i) => i),
      "bijection",
    );
    for (let p = 0; p < P; p++) {
      const e = flat[p], r = t.destRow[p];
      assert.ok(t.offsets[e] <= r && r < t.offsets[e + 1], "row inside its expert's segment");
      assert.equal(t.srcEntry[r], p, "srcEntry inverts destRow");
      assert.equal(t.tokenOfRow[r], Math.floor(p / k));
    }
    // Stable: within an expert, rows follow entry order.
    for (let p = 1; p < P; p++) {
      for (let q = 0; q < p; q++) if (flat[q] === flat[p]) assert.ok(t.destRow[q] < t.destRow[p]);
    }
    assert.deepEqual(await tableOf(idx, N), t, "deterministic");
  }
});

Deno.test("moe.routingTable: an expert with no tokens and all tokens to one expert", async () => {
  const t = await tableOf([[2], [2], [2]], 4);
  assert.deepEqual(t.counts, [0, 0, 3, 0]);
  assert.deepEqual(t.offsets, [0, 0, 0, 3, 3]);
  assert.deepEqual(t.destRow, [0, 1, 2]);
});

const moeShapes = { T: 6, d: 4, N: 3, f: 5 };

function moeInputs(seed: number, swiglu = false) {
  const { T, d, N, f } = moeShapes;
  const list = [
    { data: randomArray(T * d, seed), shape: [T, d] },
    { data: randomArray(N * d, seed + 1), shape: [N, d] },
    { data: randomArray(N * f * d, seed + 2, -0.6, 0.6), shape: [N, f, d] },
    { data: randomArray(N * d * f, seed + 3, -0.6, 0.6), shape: [N, d, f] },
  ];
  if (swiglu) list.push({ data: randomArray(N * f * d, seed + 4, -0.6, 0.6), shape: [N, f, d] });
  return list;
}

const mix = randomArray(moeShapes.T * moeShapes.d, 99);
const mixT = () => wideTensor(mix, [moeShapes.T, moeShapes.d]);

for (
  const [name, opts, swiglu] of [
    ["gelu k=1", { k: 1 }, false],
    ["gelu k=2", { k: 2 }, false],
    ["relu k=3 (k = E)", { k: 3, activation: "relu" }, false],
    ["swiglu k=2", { k: 2 }, true],
    ["sigmoid normalized k=2", { k: 2, score: "sigmoid", normalize: true }, false],
  ] as const
) {
  Deno.test(`moe.layer (${name}): every gradient passes float64 finite differences`, () => {
    checkGradFD(
      (x, router, up, down, gate) =>
        mj.moe.layer(
          x,
          { router, up, down, ...(gate ? { gate } : {}) },
          opts as mj.moe.LayerOptions,
        ).y.mul(mixT()).sum(),
      moeInputs(10, swiglu),
      { h: 1e-6, rtol: 1e-5, atol: 1e-8 },
    );
  });
}

Deno.test("moe.dispatch and moe.combine: gather-based backward passes finite differences", () => {
  const indices = i32([0, 2, 1, 2, 2, 0, 1, 1], [4, 2]);
  const table = mj.moe.routingTable(indices, 3);
  const w8 = randomArray(8 * 3, 5);
  checkGradFD(
    (x, ys, wts) =>
      mj.moe.dispatch(x, table).mul(wideTensor(w8, [8, 3])).sum().add(
        mj.moe.combine(ys, table, wts).mul(wideTensor(randomArray(12, 6), [4, 3])).sum(),
      ),
    [{ data: randomArray(12, 1), shape: [4, 3] }, { data: randomArray(24, 2), shape: [8, 3] }, {
      data: randomArray(8, 3, 0.1, 1),
      shape: [4, 2],
    }],
  );
});

Deno.test("moe.groupedMatmul: per-segment products and their gradients", () => {
  const indices = i32([1, 1, 0, 1, 3, 1], [6, 1]); // expert 2 gets nothing
  const table = mj.moe.routingTable(indices, 4);
  checkGradFD(
    (xs, w) =>
      mj.moe.groupedMatmul(xs, w, table).mul(wideTensor(randomArray(6 * 5, 7), [6, 5])).sum(),
    [{ data: randomArray(6 * 3, 8), shape: [6, 3] }, {
      data: randomArray(4 * 5 * 3, 9),
      shape: [4, 5, 3],
    }],
  );
  // Forward against a loop: row r uses the expert whose segment holds it.
  const xs = randomArray(18, 10), w = randomArray(60, 11);
  const [out, off] = evalWide(
    mj.moe.groupedMatmul(wideTensor(xs, [6, 3]), wideTensor(w, [4, 5, 3]), table),
    table.offsets,
  );
  for (let r = 0; r < 6; r++) {
    let e = 0;
    while (!(off[e] <= r && r < off[e + 1])) e++;
    for (let o = 0; o < 5; o++) {
      let acc = 0;
      for (let i = 0; i < 3; i++) acc += xs[r * 3 + i] * w[(e * 5 + o) * 3 + i];
      assertClose([out[r * 5 + o]], [acc], { rtol: 1e-12, atol: 1e-12 });
    }
  }
});

Deno.test("moe.layer estimator dense: top-k forward, the dense mixture's router gradient", () => {
  const [xi, ri, ui, di] = moeInputs(20);
  const x = wideTensor(xi.data, xi.shape), router = wideTensor(ri.data, ri.shape);
  const up = wideTensor(ui.data, ui.shape), down = wideTensor(di.data, di.shape);
  const sparse = mj.moe.layer(x, { router, up, down }, { k: 1 });
  const dense = mj.moe.layer(x, { router, up, down }, { k: 1, estimator: "dense" });
  const [ys, yd] = evalWide(sparse.y, dense.y);
  assertClose(yd, ys, { rtol: 1e-12, atol: 1e-12 });
  // Router gradient = gradient of Σ_i π_i E_i(x) with every expert evaluated.
  const denseMixture = (router: mj.Tensor) => {
    const pi = x.matmul(router.transpose()).softmax(-1);
    const outs = mj.moe.allExperts(x, { router, up, down }, "gelu");
    return outs.mul(pi.transpose().unsqueeze(2)).sum(0).mul(mixT()).sum();
  };
  const [gExpected] = mj.grad(denseMixture)(router);
  const [gDense] = mj.grad((router: mj.Tensor) =>
    mj.moe.layer(x, { router, up, down }, { k: 1, estimator: "dense" }).y.mul(mixT()).sum()
  )(router);
  const [gTopk] = mj.grad((router: mj.Tensor) =>
    mj.moe.layer(x, { router, up, down }, { k: 1 }).y.mul(mixT()).sum()
  )(router);
  const [e, g, t] = evalWide(gExpected, gDense, gTopk);
  assertClose(g, e, { rtol: 1e-10, atol: 1e-12 });
  assert.ok(
    t.some((v, i) => Math.abs(v - e[i]) > 1e-6),
    "the top-k gradient differs from the dense one",
  );
});

Deno.test("moe.layer: shapes and options are checked", () => {
  const x = mj.zeros([4, 3]);
  const p = { router: mj.zeros([2, 3]), up: mj.zeros([2, 5, 3]), down: mj.zeros([2, 3, 5]) };
  assert.throws(
    () => mj.moe.layer(x, { ...p, down: mj.zeros([2, 5, 3]) }, { k: 1 }),
    /params\.down must be f32\[2, 3, 5\]/,
  );
  assert.throws(
    () => mj.moe.layer(x, { ...p, bogus: mj.zeros([1]) } as mj.moe.MoeParams, { k: 1 }),
    /unknown parameter "bogus"/,
  );
  assert.throws(
    () => mj.moe.layer(x, p, { k: 1, activation: "tanh" as "gelu" }),
    /activation must be one of "gelu", "relu"/,
  );
  assert.throws(
    () => mj.moe.layer(mj.zeros([4, 2]), p, { k: 1 }),
    /params\.router must be f32\[2, 2\]/,
  );
});

Deno.test("moe: the grouped weight-gradient op differentiates correctly (second order), also on a row range", async () => {
  const { prim } = await import("../../src/ops/prim.ts");
  const indices = i32([1, 0, 1, 2, 0, 1, 2], [7, 1]);
  const table = mj.moe.routingTable(indices, 3);
  for (const rows of [[0, 7], [2, 5]] as [number, number][]) {
    checkGradFD(
      (a, g) =>
        prim("groupedWgrad", [a, g, table.offsets], { rows }).mul(
          wideTensor(randomArray(3 * 4 * 5, 12), [3, 4, 5]),
        )
          .sum(),
      [{ data: randomArray(7 * 4, 13), shape: [7, 4] }, {
        data: randomArray(7 * 5, 14),
        shape: [7, 5],
      }],
    );
  }
});
