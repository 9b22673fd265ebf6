/**
 * The estimator registry: the built-ins register through the public call, a registered
 * estimator works by name, spec and object in moe.route and moe.layer (options checked, state
 * declared and carried, extra parameters owned), and the old option names still work, with one
 * warning each.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, evalWide, wideTensor } from "../helpers.ts";

const softmax = (z: number[]) => {
  const m = Math.max(...z), e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

/** Top-k routing whose gates are the selected scores raised to a power p (a test estimator). */
const topkPower: mj.moe.Estimator<{ power: number }> = {
  name: "test-topk-power",
  description: "top-k with gates π^p (test)",
  options: {
    power: {
      default: 2,
      doc: "exponent p",
      check: (v) =>
        typeof v === "number" && v > 0 ? undefined : `must be a positive number, got ${v}`,
    },
  },
  trustedIndices: true,
  route: ({ selection, scores, topK }, { power }) => {
    const indices = selection.topk(topK).indices;
    return { indices, weights: scores.gather(-1, indices).pow(power) };
  },
};
mj.moe.registerEstimator(topkPower);

const Z = [[0.3, -1.2, 0.8, 0.1], [1.5, 0.2, -0.4, 0.9], [-0.7, 0.6, 0.05, -0.2]];

Deno.test("estimator registry: the built-ins are registered, in order, through registerEstimator", () => {
  const names = mj.moe.estimators().map((e) => e.name);
  assert.deepEqual(names.slice(0, 5), [
    "topk",
    "dense",
    "default",
    "sparsemixer",
    "sparsemixer-v1",
  ]);
  assert.equal(mj.moe.estimatorNamed("sparsemixer")?.hfFamily, "phimoe");
  assert.equal(mj.moe.estimatorNamed("topk")?.hfFamily, "mixtral");
  // Registering the same object again is a no-op; another under a taken name is an error.
  mj.moe.registerEstimator(topkPower);
  assert.throws(
    () => mj.moe.registerEstimator({ ...topkPower }),
    /moe\.registerEstimator: an estimator named "test-topk-power" is already registered/,
  );
});

Deno.test("estimator registry: a registered estimator by name, spec and object gives the same routing, and follows its formula", () => {
  const logits = wideTensor(Z.flat(), [3, 4]);
  const byName = mj.moe.route(logits, { topK: 2, estimator: "test-topk-power" });
  const bySpec = mj.moe.route(logits, {
    topK: 2,
    estimator: { kind: "test-topk-power", power: 2 },
  });
  const byObject = mj.moe.route(logits, { topK: 2, estimator: topkPower });
  assert.equal(byName.weights.node.key, bySpec.weights.node.key);
  assert.equal(byName.weights.node.key, byObject.weights.node.key);
  const p3 = mj.moe.route(logits, { topK: 2, estimator: { kind: "test-topk-power", power: 3 } });
  const [idx, w] = evalWide(p3.indices, p3.weights);
  const want = Z.map(softmax).flatMap((pi) => {
    const order = pi.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 2);
    return order.map(([v]) => v ** 3);
  });
  assert.deepEqual(
    Array.from(idx),
    Z.map(softmax).flatMap((pi) =>
      pi.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 2).map(([, i]) => i)
    ),
  );
  assertClose(w, want, { rtol: 1e-12 });
  // Its gradient is autodiff's (no custom backward): finite differences agree.
  checkGradFD(
    (z) =>
      mj.moe.route(z, { topK: 2, estimator: { kind: "test-topk-power", power: 3 } }).weights
        .mul(wideTensor([1, -2, 0.5, 3, -1, 2], [3, 2])).sum(),
    [{ data: Z.flat(), shape: [3, 4] }],
  );
});

Deno.test("estimator registry: options, shorthands and registrations are checked", () => {
  const logits = mj.tensor(Z.flat(), [3, 4]);
  assert.throws(
    () => mj.moe.route(logits, { topK: 2, estimator: { kind: "test-topk-power", power: -1 } }),
    /moe\.route: power must be a positive number, got -1/,
  );
  assert.throws(
    () => mj.moe.route(logits, { topK: 2, estimator: { kind: "test-topk-power", pow: 2 } }),
    /unknown option "pow" of estimator "test-topk-power"; expected one of power/,
  );
  assert.throws(
    () => mj.moe.route(logits, { topK: 2, estimator: { kind: "nope" } }),
    /estimator must be one of "topk", "dense", "default", "sparsemixer", "sparsemixer-v1"/,
  );
  assert.throws(
    () =>
      mj.moe.route(logits, {
        topK: 1,
        estimator: "sparsemixer",
        default: { beta: 0.5 },
      } as mj.moe.RouteOptions),
    /option default configures estimator "default", not "sparsemixer"/,
  );
  assert.throws(
    () => mj.moe.route(logits, { topK: 2, estimator: "test-topk-power", seed: 3 }),
    /option seed applies to sampling estimators \(sparsemixer, sparsemixer-v1, or a function\)/,
  );
  // The built-ins' options in spec form are the same as their shorthands.
  const a = mj.moe.route(logits, { topK: 2, estimator: "sparsemixer", jitterEps: 0.2, seed: 1 });
  const b = mj.moe.route(logits, {
    topK: 2,
    estimator: { kind: "sparsemixer", jitterEps: 0.2 },
    seed: 1,
  });
  assert.equal(a.weights.node.key, b.weights.node.key);
  const bad = (e: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => mj.moe.registerEstimator(e as unknown as mj.moe.Estimator), re);
  bad({ name: "Bad Name", description: "x", route: () => null }, /name must be lowercase/);
  bad({ name: "no-route", description: "x" }, /no-route: route must be a function/);
  bad(
    {
      name: "bad-default",
      description: "x",
      route: () => null,
      options: { a: { default: 1, doc: "a", check: () => "must be 2" } },
    },
    /bad-default: the default of option a must be 2/,
  );
  bad(
    {
      name: "bad-short",
      description: "x",
      route: () => null,
      shorthands: { s: { appliesTo: "x", option: "zz" } },
    },
    /bad-short: shorthand s sets option zz, which it does not declare/,
  );
});

/** An estimator with state and a layer step: it counts the tokens each expert received. */
const counting: mj.moe.Estimator = {
  name: "test-counting",
  description: "top-k that counts each expert's tokens over steps (test)",
  trustedIndices: true,
  state: { seen: ({ N }) => mj.zeros([N]) },
  route: ({ selection, scores, topK }) => {
    const indices = selection.topk(topK).indices;
    return { indices, weights: scores.gather(-1, indices) };
  },
  layer: ({ y, routing, state }) => ({
    y: y.mul(2),
    state: { seen: state.seen.add(routing.counts.cast("f32")) },
  }),
};
mj.moe.registerEstimator(counting);

function layerInputs() {
  const x = mj.tensor([[1, 0], [0, 1], [1, 1], [-1, 0.5], [0.3, -0.2]], [5, 2]);
  const params = {
    router: mj.tensor([[1, 0], [0, 1], [-1, -1]], [3, 2]),
    up: mj.tensor(Array.from({ length: 12 }, (_, i) => 0.1 * i - 0.5), [3, 2, 2]),
    down: mj.tensor(Array.from({ length: 12 }, (_, i) => 0.05 * i), [3, 2, 2]),
  };
  return { x, params };
}

Deno.test("estimator registry: an estimator's state is declared, filled, carried in order with the balancers', and left alone at inference", async () => {
  const { x, params } = layerInputs();
  const opts = {
    topK: 2,
    estimator: "test-counting",
    balance: [mj.balance.lossFree({ rate: 0.1 })],
  };
  const r1 = mj.moe.layer(x, params, opts);
  assert.deepEqual(
    Object.keys(r1.state),
    ["lossFreeBias", "seen"],
    "balancers first, then the estimator",
  );
  const counts1 = Array.from(await r1.counts.data());
  assert.deepEqual(Array.from(await r1.state.seen.data()), counts1);
  const plain = mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.lossFree({ rate: 0.1 })] });
  assertClose(await r1.y.data(), Array.from(await plain.y.data(), (v) => 2 * v));
  const r2 = mj.moe.layer(x, params, { ...opts, state: r1.state });
  const counts2 = Array.from(await r2.counts.data());
  assert.deepEqual(Array.from(await r2.state.seen.data()), counts1.map((c, i) => c + counts2[i]));
  // The initial state a model step starts from has the same names in the same order.
  const init = mj.moe.initialState(
    [{ who: "lossFree", state: opts.balance[0].state }, {
      who: "test-counting",
      state: counting.state,
    }],
    { N: 3, d: 2, topK: 2 },
  );
  assert.deepEqual(Object.keys(init), Object.keys(r1.state));
  const evalR = mj.moe.layer(x, params, { ...opts, state: r1.state, training: false });
  assert.equal(evalR.state.seen, r1.state.seen, "inference returns the state it was given");
  // A state name nobody declares is an error; so is a hook returning undeclared state.
  assert.throws(
    () => mj.moe.layer(x, params, { ...opts, state: { sen: mj.zeros([3]) } }),
    /moe\.layer state: unknown option "sen"/,
  );
  const leaky: mj.moe.Estimator = {
    ...counting,
    name: "test-leaky",
    layer: ({ y }) => ({ y, state: { other: mj.zeros([3]) } }),
  };
  assert.throws(
    () => mj.moe.layer(x, params, { topK: 2, estimator: leaky }),
    /estimator test-leaky returned state other, which it does not declare/,
  );
});

Deno.test("estimator registry: an estimator's parameters belong to it", () => {
  const { x, params } = layerInputs();
  const scaled: mj.moe.Estimator = {
    ...counting,
    name: "test-scaled",
    state: undefined,
    params: { scale: { shape: (d) => [d], doc: "per-channel output scale" } },
    layer: ({ y, params }) => ({ y: params.scale ? y.mul(params.scale) : y }),
  };
  mj.moe.registerEstimator(scaled);
  const scale = mj.tensor([2, -1]);
  const r = mj.moe.layer(x, { ...params, scale }, { topK: 1, estimator: "test-scaled" });
  assert.deepEqual(r.y.shape, [5, 2]);
  assert.throws(
    () => mj.moe.layer(x, { ...params, scale }, { topK: 1 }),
    /params\.scale is the per-channel output scale of estimator "test-scaled"; the estimator is "topk"/,
  );
  assert.throws(
    () =>
      mj.moe.layer(x, { ...params, scale: mj.zeros([3]) }, { topK: 1, estimator: "test-scaled" }),
    /params\.scale must be f32\[2\]/,
  );
});

Deno.test("old option names: k, normalize and a context's k still work, with one warning each", () => {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => warnings.push(m);
  try {
    const logits = mj.tensor(Z.flat(), [3, 4]);
    const now = mj.moe.route(logits, { topK: 2, normalizeTopK: true });
    for (let i = 0; i < 2; i++) {
      const old = mj.moe.route(logits, { k: 2, normalize: true });
      assert.equal(old.weights.node.key, now.weights.node.key);
    }
    const seenK: number[] = [];
    mj.moe.route(logits, {
      topK: 2,
      estimator: (ctx) => {
        seenK.push(ctx.k);
        const indices = ctx.selection.topk(ctx.topK).indices;
        return { indices, weights: ctx.scores.gather(-1, indices) };
      },
    });
    assert.deepEqual(seenK, [2]);
    assert.throws(
      () => mj.moe.route(logits, { topK: 2, k: 2 }),
      /moe\.route: give topK only \(k is its deprecated name\)/,
    );
  } finally {
    console.warn = warn;
  }
  const about = (what: string) => warnings.filter((w) => w.includes(what));
  assert.equal(about("option k is deprecated").length, 1, warnings.join("\n"));
  assert.equal(about("option normalize is deprecated").length, 1, warnings.join("\n"));
  assert.equal(about("field k is deprecated").length, 1, warnings.join("\n"));
  assert.match(about("option k")[0], /moejit: moe\.route: option k is deprecated .*; use topK/);
});
