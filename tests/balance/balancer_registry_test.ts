/**
 * The balancer registry and balancers at the routing op: moe.route applies the same balancers
 * as moe.layer (the same graph), balancer objects, specs and --balance strings are the same
 * balancers, a registered kind is usable from configs and the command-line syntax, and a
 * balancer's state is what it declares.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose } from "../helpers.ts";

const logitsOf = (x: mj.Tensor, router: mj.Tensor) => x.matmul(router.transpose());

function inputs() {
  const x = mj.randn([24, 4], { seed: 3 });
  const params = {
    router: mj.randn([5, 4], { seed: 4 }),
    up: mj.randn([5, 6, 4], { seed: 5 }).mul(0.3),
    down: mj.randn([5, 4, 6], { seed: 6 }).mul(0.3),
  };
  return { x, params };
}

const keys = (ts: Record<string, mj.Tensor>) =>
  Object.entries(ts).map(([k, t]) => `${k}=${t.node.key}`).join(",");

Deno.test("balancers at the routing op: moe.route and moe.layer apply the same balancers to the same graph", () => {
  const { x, params } = inputs();
  for (const estimator of ["topk", "default", "sparsemixer"] as const) {
    const balance = [
      mj.balance.auxLoss({ alpha: 0.1 }),
      mj.balance.zLoss(),
      mj.balance.lossFree(),
      mj.balance.bip({ iters: 2 }),
    ];
    const sampling = estimator === "sparsemixer" ? { seed: 5 } : {};
    const l = mj.moe.layer(x, params, { topK: 2, estimator, balance, ...sampling });
    const r = mj.moe.route(logitsOf(x, params.router), {
      topK: 2,
      estimator,
      balance,
      ...sampling,
    });
    assert.equal(r.indices.node.key, l.indices.node.key, estimator);
    assert.equal(r.weights.node.key, l.weights.node.key, estimator);
    assert.equal(keys(r.losses), keys(l.losses), estimator);
    const { ehat: _e, ...balancerState } = l.state;
    assert.equal(keys(r.state), keys(balancerState), estimator);
    assert.deepEqual(Object.keys(r.state), ["lossFreeBias", "bipQ"], estimator);
  }
});

Deno.test("balancers: objects, specs and strings are the same balancers", () => {
  const { x, params } = inputs();
  const forms: mj.moe.RouteOptions["balance"][] = [
    [mj.balance.auxLoss({ alpha: 0.02 }), mj.balance.bip({ iters: 3, cap: "floor" })],
    [{ kind: "auxLoss", alpha: 0.02 }, { kind: "bip", iters: 3, cap: "floor" }],
    "aux:0.02,bip:3:cap=floor",
    ["aux:0.02", { kind: "bip", iters: 3, cap: "floor" }],
  ];
  const outs = forms.map((balance) => mj.moe.layer(x, params, { topK: 2, balance }));
  for (const o of outs.slice(1)) {
    assert.equal(keys(o.losses), keys(outs[0].losses));
    assert.equal(keys(o.state), keys(outs[0].state));
    assert.equal(o.indices.node.key, outs[0].indices.node.key);
  }
  // A config holds specs whichever form it was given.
  const fromString = mj.nn.modelConfig({ balance: "aux:0.02,bip:3:cap=floor" });
  const fromObjects = mj.nn.modelConfig({
    balance: forms[0] as mj.nn.BalanceInput,
  });
  assert.deepEqual(fromString.balance, [
    { kind: "auxLoss", alpha: 0.02 },
    { kind: "bip", iters: 3, cap: "floor" },
  ]);
  assert.deepEqual(fromObjects.balance, [
    { kind: "auxLoss", alpha: 0.02, scope: "global", score: "scores", convention: "unified" },
    { kind: "bip", iters: 3, cap: "floor" },
  ]);
  assert.deepEqual(
    mj.balance.specOf(mj.balance.balancerFromSpec({ kind: "zLoss", beta: 0.5 })),
    { kind: "zLoss", beta: 0.5 },
  );
  // BIP's start: the default stays out of specs (older specs name the same balancer).
  assert.deepEqual(mj.balance.parseBalance("bip:8:start=zero"), [
    { kind: "bip", iters: 8, start: "zero" },
  ]);
  assert.deepEqual(mj.balance.specOf(mj.balance.bip({ iters: 8, start: "zero" })), {
    kind: "bip",
    iters: 8,
    cap: "ceil",
    start: "zero",
  });
  assert.deepEqual(mj.balance.specOf(mj.balance.bip({ start: "previous" })), {
    kind: "bip",
    iters: 4,
    cap: "ceil",
  });
  assert.equal(
    mj.balance.formatBalance([{ kind: "bip", iters: 8, start: "zero" }]),
    "bip:8:start=zero",
  );
  assert.throws(
    () => mj.balance.parseBalance("bip:4:start=cold"),
    /"bip:4:start=cold": start must be "previous" or "zero", got "cold"/,
  );
  assert.throws(
    () => mj.moe.layer(x, params, { topK: 2, balance: "aux;bip" }),
    /moe\.layer: balance gives one list per layer/,
  );
  assert.throws(
    () => mj.nn.modelConfig({ balance: "magic" }),
    /balance must be an array of balancer specs .*unknown balancer "magic"/,
  );
});

/** A test kind with state: counts the tokens each expert received, and reports the max share. */
function counter(opts: { scale?: number } = {}): mj.balance.Balancer {
  const scale = opts.scale ?? 1;
  return {
    kind: "testCounter",
    config: { scale },
    state: { counted: ({ N }) => mj.zeros([N]) },
    metrics: ["max_share"],
    finish: ({ routing, state, T, topK }) => ({
      state: { counted: state.counted.add(routing.counts.cast("f32").mul(scale)) },
      metrics: { max_share: routing.counts.max().cast("f32").div(T * topK) },
    }),
  };
}

mj.balance.registerBalancer<{ scale?: number }>({
  kind: "testCounter",
  description: "counts tokens per expert (test)",
  create: counter,
  cli: { name: "test-counter", main: "scale" },
});

Deno.test("a registered kind: the command-line syntax, configs and models use it, with its state and metrics", async () => {
  assert.deepEqual(mj.balance.parseBalance("aux,test-counter:2"), [
    { kind: "auxLoss" },
    { kind: "testCounter", scale: 2 },
  ]);
  assert.equal(mj.balance.formatBalance([{ kind: "testCounter", scale: 2 }]), "test-counter:2");
  assert.ok(mj.balance.balancerKinds().some((k) => k.kind === "testCounter"));
  const { x, params } = inputs();
  const r1 = mj.moe.layer(x, params, { topK: 2, balance: "test-counter:2" });
  const c1 = Array.from(await r1.counts.data());
  assert.deepEqual(Array.from(await r1.state.counted.data()), c1.map((c) => 2 * c));
  assertClose(await r1.metrics.max_share.data(), [Math.max(...c1) / 48]);
  // balance.metrics gives the declared metric next to the standard ones.
  const m1 = mj.balance.metrics(r1);
  assertClose(await m1.max_share.data(), [Math.max(...c1) / 48]);
  assert.ok(m1.max_vio);
  const r2 = mj.moe.layer(x, params, { topK: 2, balance: "test-counter:2", state: r1.state });
  assert.deepEqual(Array.from(await r2.state.counted.data()), c1.map((c) => 4 * c));
  // A model carries it: its initial state and the step's state have the same names.
  const config = mj.nn.modelConfig({
    nLayers: 2,
    dModel: 8,
    nHeads: 2,
    dFf: 8,
    experts: 4,
    maxSeqLen: 8,
    estimator: "default",
    balance: [[{ kind: "testCounter" }, { kind: "lossFree" }], [{ kind: "bip" }]],
  });
  const init = mj.nn.initialLayerState(config);
  const p = mj.nn.initParams(config, 0);
  const out = mj.nn.forward(p, mj.tensor([[1, 2, 3, 4]], [1, 4], { dtype: "i32" }), config, {
    state: init,
    key: mj.tensor([1, 2], [2], { dtype: "u32" }),
  });
  assert.deepEqual(init.map((s) => Object.keys(s)), [["counted", "lossFreeBias", "ehat"], [
    "bipQ",
    "ehat",
  ]]);
  assert.deepEqual(out.state.map((s) => Object.keys(s)), init.map((s) => Object.keys(s)));
});

Deno.test("balancers: clear errors for unregistered kinds in configs, clashing and undeclared state", () => {
  const { x, params } = inputs();
  const unregistered: mj.balance.Balancer = {
    kind: "adHoc",
    config: {},
    metrics: ["n"],
    finish: ({ routing }) => ({ metrics: { n: routing.counts.sum().cast("f32") } }),
  };
  // A router takes any balancer object; a configuration holds specs of registered kinds only.
  mj.moe.layer(x, params, { topK: 2, balance: [unregistered] });
  assert.throws(
    () => mj.nn.modelConfig({ balance: [unregistered] }),
    /balance\[0\]: a balancer of kind "adHoc", which is not registered/,
  );
  const leaky: mj.balance.Balancer = {
    kind: "leaky",
    config: {},
    finish: () => ({ state: { secret: mj.zeros([5]) } }),
  };
  assert.throws(
    () => mj.moe.route(logitsOf(x, params.router), { topK: 2, balance: [leaky] }),
    /balancer leaky returned state secret, which it does not declare/,
  );
  const chatty: mj.balance.Balancer = {
    kind: "chatty",
    config: {},
    finish: () => ({ metrics: { extra: mj.tensor(1) } }),
  };
  assert.throws(
    () => mj.moe.route(logitsOf(x, params.router), { topK: 2, balance: [chatty] }),
    /balancer chatty reported metric extra, which it does not declare/,
  );
  assert.throws(
    () =>
      mj.moe.route(logitsOf(x, params.router), {
        topK: 2,
        balance: [{ ...chatty, metrics: ["extra", "missing"] }],
      }),
    /balancer chatty declares metric missing but did not report it/,
  );
  const clash: mj.balance.Balancer = {
    kind: "clash",
    config: {},
    state: { lossFreeBias: ({ N }) => mj.zeros([N]) },
    finish: () => ({}),
  };
  assert.throws(
    () => mj.moe.layer(x, params, { topK: 2, balance: [mj.balance.lossFree(), clash] }),
    /balancer lossFree and balancer clash both declare state lossFreeBias/,
  );
  assert.throws(
    () =>
      mj.balance.registerBalancer({
        kind: "other",
        description: "x",
        create: counter,
        cli: { name: "aux" },
      }),
    /other: the command-line name aux is taken by auxLoss/,
  );
});
