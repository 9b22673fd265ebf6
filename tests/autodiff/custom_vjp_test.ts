/**
 * customVjp: gradient estimators whose backward deliberately differs from the forward's
 * gradient, fused ops with hand-written backwards, multiple outputs, static arguments, and the
 * errors a wrong registration or a wrong backward must produce.
 */
import * as mj from "../../mod.ts";
import { toposort } from "../../src/ir/graph.ts";
import { makeNode, type Node } from "../../src/ir/node.ts";
import type { OpArgs } from "../../src/ir/ops.ts";
import { Tensor } from "../../src/tensor.ts";
import { assert, assertClose, checkGradFD, evalWide, randomArray } from "../helpers.ts";

const vals = (t: mj.Tensor) => Array.from(evalWide(t)[0]);

/** Runs `f`, expecting a MoejitError from customVjp whose message matches `re`. */
function throwsCustom(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof mj.MoejitError, `expected a MoejitError, got ${e}`);
    assert.equal(e.op, "customVjp");
    assert.match(e.message, re);
    return true;
  });
}

// ---- (a) a straight-through estimator ----------------------------------------------------------

// Forward: sign(x). Backward: the clipped identity g·1[|x| ≤ 1] (the "hardtanh" STE), which is
// not the forward's gradient (that is 0 almost everywhere).
const steSign = mj.customVjp({
  name: "test.custom.steSign",
  fwd: (x: mj.Tensor) => ({ out: x.sign(), saved: [x] }),
  bwd: ([x], g) => [g.mul(x.abs().le(1).cast("f32"))],
  estimator: true,
});

Deno.test("customVjp: straight-through sign uses its stated backward", () => {
  const xs = [-2.5, -0.75, -0.1, 0.3, 0.9, 1.7];
  const ws = [0.5, -1, 2, 3, -0.25, 4];
  const x = mj.tensor(xs), w = mj.tensor(ws);
  assert.deepEqual(vals(steSign(x)), [-1, -1, -1, 1, 1, 1]);
  // loss = Σ w·ste(x) + Σ x·ste(x): the second term also flows through the forward value.
  const [g] = mj.grad((x: mj.Tensor) => steSign(x).mul(w).add(steSign(x).mul(x)).sum())(x);
  const expected = xs.map((xi, i) => {
    const pass = Math.abs(xi) <= 1 ? 1 : 0;
    return ws[i] * pass + Math.sign(xi) + xi * pass;
  });
  assertClose(vals(g), expected);
});

Deno.test("customVjp: the estimator is really not the true gradient (FD disagrees)", () => {
  // Guards the test above: if the custom backward were ignored and the forward differentiated,
  // sign's true gradient (0) would come back and this finite-difference check would pass.
  assert.throws(
    () => checkGradFD((x) => steSign(x).mul(x.exp()).sum(), [{ data: [0.3, -0.6], shape: [2] }]),
    /directional derivative/,
  );
});

Deno.test("customVjp: the estimator flag is recorded on the graph node", () => {
  const y = steSign(mj.tensor([1, -1]));
  assert.equal(y.node.op, "custom");
  const arg = y.node.arg as OpArgs["custom"];
  assert.equal(arg.name, "test.custom.steSign");
  assert.equal(arg.estimator, true);
});

Deno.test("mj.debug.estimators names the estimators a gradient passes through, and only those", () => {
  const x = mj.tensor([0.5, -2]);
  const exact = mj.customVjp({
    name: "test.custom.exactSquare",
    fwd: (x: mj.Tensor) => x.square(),
    bwd: (_s, g, [x]) => [(g as mj.Tensor).mul(x as mj.Tensor).mul(2)],
  });
  assert.deepEqual(mj.debug.estimators(exact(x).sum()), [], "a true backward is no estimator");
  assert.deepEqual(mj.debug.estimators(steSign(x).add(exact(x)).sum()), ["test.custom.steSign"]);
  assert.deepEqual(mj.debug.estimators({ a: x.exp(), b: x }), []);
  // The MoE estimators are found behind a routing result.
  const logits = mj.tensor([[0.1, 0.5, -0.2], [1, 0, 0.3]]);
  const grin = mj.moe.route(logits, { topK: 2, estimator: "sparsemixer", seed: 1 });
  assert.deepEqual(mj.debug.estimators(grin.weights), ["moe.sparsemixer.v2"]);
  assert.deepEqual(mj.debug.estimators(mj.moe.route(logits, { topK: 2 }).weights), []);
});

// A rounding STE with a plain identity backward: the textbook straight-through estimator.
const steRound = mj.customVjp({
  name: "test.custom.steRound",
  fwd: (x: mj.Tensor) => x.add(0.5).floor(),
  bwd: (_saved, g) => [g],
  estimator: true,
});

Deno.test("customVjp: straight-through round passes the cotangent unchanged", () => {
  const x = mj.tensor([0.2, 1.6, -0.7]);
  assert.deepEqual(vals(steRound(x)), [0, 2, -1]);
  const [g] = mj.grad((x: mj.Tensor) => steRound(x).square().sum())(x);
  // d/dx round(x)² under STE = 2·round(x).
  assert.deepEqual(vals(g), [0, 4, -2]);
});

// ---- (b) non-estimators that must pass finite differences ---------------------------------------

// Fused x·sigmoid(x) with the backward written from saved residuals:
// d/dx = s + x·s·(1 − s) = s·(1 + x·(1 − s)).
const fusedSilu = mj.customVjp({
  name: "test.custom.fusedSilu",
  fwd: (x: mj.Tensor) => {
    const s = x.sigmoid();
    return { out: x.mul(s), saved: [x, s] };
  },
  bwd: ([x, s], g) => [g.mul(s.mul(x.mul(mj.sub(1, s)).add(1)))],
});

Deno.test("customVjp: a fused silu with a hand-written backward passes FD", () => {
  checkGradFD(
    (x) => fusedSilu(x).mul(x.cos()).sum(),
    [{ data: randomArray(8, 1, -4, 4), shape: [2, 4] }],
  );
  // And it agrees with the built-in silu.
  const x = mj.tensor([-2, -0.5, 0, 1, 3]);
  const [a] = mj.grad((x: mj.Tensor) => fusedSilu(x).sum())(x);
  const [b] = mj.grad((x: mj.Tensor) => x.silu().sum())(x);
  assertClose(vals(a), vals(b), { rtol: 1e-6 });
});

// Two arguments, to check that the returned gradients line up with the argument order.
const mulExp = mj.customVjp({
  name: "test.custom.mulExp",
  fwd: (x: mj.Tensor, y: mj.Tensor) => {
    const ey = y.exp();
    return { out: x.mul(ey), saved: [x, ey] };
  },
  bwd: ([x, ey], g) => [g.mul(ey), g.mul(x).mul(ey)],
});

Deno.test("customVjp: two arguments (one broadcast inside) pass FD", () => {
  checkGradFD(
    (x, y) => mulExp(x, y).tanh().sum(),
    [{ data: randomArray(6, 2), shape: [2, 3] }, { data: randomArray(6, 3), shape: [2, 3] }],
  );
});

Deno.test("customVjp: the same tensor as both arguments accumulates both gradients", () => {
  const mul2 = mj.customVjp({
    name: "test.custom.mul2",
    fwd: (a: mj.Tensor, b: mj.Tensor) => ({ out: a.mul(b), saved: [a, b] }),
    bwd: ([a, b], g) => [g.mul(b), g.mul(a)],
  });
  const [g] = mj.grad((x: mj.Tensor) => mul2(x, x).sum())(mj.tensor([1, -2, 3]));
  assertClose(vals(g), [2, -4, 6]);
});

Deno.test("customVjp: tree arguments and second-order gradients through saved residuals", () => {
  const affine = mj.customVjp({
    name: "test.custom.affineTanh",
    fwd: (p: { w: mj.Tensor; b: mj.Tensor }, x: mj.Tensor) => {
      const y = x.matmul(p.w).add(p.b).tanh();
      return { out: y, saved: [p.w, x, y] };
    },
    bwd: ([w, x, y], g) => {
      const gz = g.mul(mj.sub(1, y.square()));
      return [{ w: x.transpose().matmul(gz), b: gz.sum(0) }, gz.matmul(w.transpose())];
    },
  });
  checkGradFD(
    (w, b, x) => affine({ w, b }, x).square().sum(),
    [
      { data: randomArray(6, 4), shape: [3, 2] },
      { data: randomArray(2, 5), shape: [2] },
      { data: randomArray(12, 6), shape: [4, 3] },
    ],
  );
  // Differentiating the gradient differentiates bwd's graph, including the saved residuals.
  checkGradFD(
    (w, x) =>
      mj.grad((x: mj.Tensor) => affine({ w, b: mj.zeros([2]) }, x).sum())(x)[0].square()
        .sum(),
    [{ data: randomArray(6, 7), shape: [3, 2] }, { data: randomArray(6, 8), shape: [2, 3] }],
  );
});

// ---- (c) multiple outputs ------------------------------------------------------------------------

Deno.test("customVjp: multi-output, only one output used: the other's cotangent is zeros", () => {
  const seen: mj.Tensor[] = [];
  const expLog = mj.customVjp({
    name: "test.custom.expAndSquare",
    fwd: (x: mj.Tensor) => ({ out: { e: x.exp(), sq: x.square() }, saved: [x] }),
    bwd: ([x], g) => {
      seen.push(g.e, g.sq);
      return [g.e.mul(x.exp()).add(g.sq.mul(x).mul(2))];
    },
  });
  const x = mj.tensor([0.5, -1, 2]);
  const [g] = mj.grad((x: mj.Tensor) => expLog(x).sq.mul(mj.tensor([1, 2, 3])).sum())(x);
  assertClose(vals(g), [1, -4, 12]);
  assert.equal(seen.length, 2);
  assert.deepEqual(seen[0].shape, [3]);
  assert.deepEqual(vals(seen[0]), [0, 0, 0]);
  assertClose(vals(seen[1]), [1, 2, 3]);
  // Both outputs used: the backward runs once with both cotangents (FD would catch a double
  // call, which would double the gradient).
  seen.length = 0;
  checkGradFD(
    (x) => {
      const { e, sq } = expLog(x);
      return e.mul(sq.sin()).sum();
    },
    [{ data: randomArray(4, 9), shape: [4] }],
  );
  assert.equal(seen.length, 2);
});

Deno.test("customVjp: array outputs, the second one used", () => {
  const split = mj.customVjp({
    name: "test.custom.splitHalves",
    fwd: (x: mj.Tensor) => [x.narrow(0, 0, 2), x.narrow(0, 2, 2).mul(3)],
    bwd: (_s, [g0, g1]) => [mj.concat([g0, g1.mul(3)], 0)],
  });
  const [g] = mj.grad((x: mj.Tensor) => split(x)[1].mul(mj.tensor([1, 2])).sum())(
    mj.tensor([1, 2, 3, 4]),
  );
  assert.deepEqual(vals(g), [0, 0, 3, 6]);
});

// ---- (d) static (non-tensor) arguments ---------------------------------------------------------------

// The threshold is used only by the backward, so two calls that differ only in it share the
// forward graph: the calls must still be told apart.
const steClip = mj.customVjp({
  name: "test.custom.steClip",
  fwd: (x: mj.Tensor, _opts: { limit: number }) => ({ out: x.sign(), saved: [x] }),
  bwd: ([x], g, [, opts]) => [g.mul(x.abs().le(opts.limit).cast("f32")), null],
  estimator: true,
});

Deno.test("customVjp: static arguments pass through to fwd and bwd", () => {
  const x = mj.tensor([0.5, 1.5, 2.5]);
  const [g1] = mj.grad((x: mj.Tensor) => steClip(x, { limit: 1 }).sum())(x);
  const [g2] = mj.grad((x: mj.Tensor) => steClip(x, { limit: 2 }).sum())(x);
  assert.deepEqual(vals(g1), [1, 0, 0]);
  assert.deepEqual(vals(g2), [1, 1, 0]);
  // Both calls in one loss: each keeps its own option.
  const [g3] = mj.grad((x: mj.Tensor) =>
    steClip(x, { limit: 1 }).add(steClip(x, { limit: 2 }).mul(10)).sum()
  )(x);
  assert.deepEqual(vals(g3), [11, 10, 0]);
  assert.notEqual(steClip(x, { limit: 1 }).node.key, steClip(x, { limit: 2 }).node.key);
  assert.equal(steClip(x, { limit: 1 }).node, steClip(x, { limit: 1 }).node);
});

Deno.test("customVjp: a numeric option that changes the forward passes FD", () => {
  const scaledTanh = mj.customVjp({
    name: "test.custom.scaledTanh",
    fwd: (x: mj.Tensor, scale: number) => {
      const y = x.mul(scale).tanh();
      return { out: y, saved: [y] };
    },
    bwd: ([y], g, [, scale]) => [g.mul(mj.sub(1, y.square())).mul(scale), null],
  });
  for (const scale of [0.5, 2]) {
    checkGradFD(
      (x) => scaledTanh(x, scale).mul(x).sum(),
      [{ data: randomArray(5, 10), shape: [5] }],
    );
  }
  const [, gs] = mj.grad((x: mj.Tensor, s: number) => scaledTanh(x, s).sum())(mj.ones([2]), 3);
  assert.equal(gs, null);
});

// ---- (e) errors ----------------------------------------------------------------------------------------

Deno.test("customVjp errors: bwd returns the wrong shape", () => {
  const bad = mj.customVjp({
    name: "test.custom.badShape",
    fwd: (x: mj.Tensor) => x.mul(2),
    bwd: (_s, g) => [g.sum()],
  });
  throwsCustom(
    () => mj.grad((x: mj.Tensor) => bad(x).sum())(mj.ones([2, 3])),
    /test\.custom\.badShape: bwd returned f32\[\] for argument 0, expected f32\[2,3\]/,
  );
});

Deno.test("customVjp errors: bwd returns the wrong dtype or a non-tensor", () => {
  const badDtype = mj.customVjp({
    name: "test.custom.badDtype",
    fwd: (x: mj.Tensor) => x.mul(2),
    bwd: (_s, g) => [g.cast("i32")],
  });
  throwsCustom(
    () => mj.grad((x: mj.Tensor) => badDtype(x).sum())(mj.ones([2])),
    /bwd returned i32\[2\] for argument 0, expected f32\[2\]/,
  );
  const badTree = mj.customVjp({
    name: "test.custom.badTreeLeaf",
    fwd: (p: { w: mj.Tensor }) => p.w.mul(2),
    bwd: () => [{ w: 1 }],
  });
  throwsCustom(
    () => mj.grad((w: mj.Tensor) => badTree({ w }).sum())(mj.ones([2])),
    /bwd returned number for argument 0\.w, expected f32\[2\]/,
  );
});

Deno.test("customVjp errors: bwd returns the wrong number of entries", () => {
  const bad = mj.customVjp({
    name: "test.custom.badCount",
    fwd: (x: mj.Tensor, y: mj.Tensor) => x.mul(y),
    bwd: (_s, g) => [g],
  });
  throwsCustom(
    () => mj.grad((x: mj.Tensor, y: mj.Tensor) => bad(x, y).sum())(mj.ones([2]), mj.ones([2])),
    /test\.custom\.badCount: bwd must return an array with one gradient per argument \(2\), got 1 entries/,
  );
  const notArray = mj.customVjp({
    name: "test.custom.badNotArray",
    fwd: (x: mj.Tensor) => x.mul(2),
    bwd: (_s, g) => g as unknown as mj.Tensor[],
  });
  throwsCustom(
    () => mj.grad((x: mj.Tensor) => notArray(x).sum())(mj.ones([2])),
    /one gradient per argument \(1\), got object/,
  );
});

Deno.test("customVjp errors: fwd closing over a differentiated argument", () => {
  const run = (x: mj.Tensor, y: mj.Tensor) =>
    mj.grad((x: mj.Tensor, y: mj.Tensor) => {
      const leaky = mj.customVjp({
        name: "test.custom.capture",
        fwd: (a: mj.Tensor) => a.mul(y.exp()),
        bwd: (_s, g) => [g],
      });
      return leaky(x).sum();
    })(x, y);
  throwsCustom(
    () => run(mj.ones([3]), mj.ones([3])),
    /test\.custom\.capture: fwd uses a tensor \(f32\[3\]\) that is not one of its arguments; pass it as an argument/,
  );
  // Capturing a tensor that is not being differentiated is fine.
  const c = mj.tensor([1, 2, 3]);
  const scaled = mj.customVjp({
    name: "test.custom.captureConstant",
    fwd: (a: mj.Tensor) => a.mul(c),
    bwd: (_s, g) => [g.mul(c)],
  });
  const [g] = mj.grad((x: mj.Tensor) => scaled(x).sum())(mj.ones([3]));
  assert.deepEqual(vals(g), [1, 2, 3]);
});

Deno.test("customVjp errors: fwd that returns no tensor, or saves a non-tensor", () => {
  const noTensor = mj.customVjp({
    name: "test.custom.noTensor",
    fwd: (_x: mj.Tensor) => 3 as unknown as mj.Tensor,
    bwd: () => [null],
  });
  throwsCustom(() => noTensor(mj.ones([2])), /fwd output \(root\) is not a Tensor/);
  const badSaved = mj.customVjp({
    name: "test.custom.badSaved",
    fwd: (x: mj.Tensor) => ({ out: x, saved: [2 as unknown as mj.Tensor] }),
    bwd: (_s, g) => [g],
  });
  throwsCustom(() => badSaved(mj.ones([2])), /every saved residual must be a Tensor/);
});

Deno.test("customVjp errors: a name registered with a different fwd/bwd is rejected", () => {
  mj.customVjp({
    name: "test.custom.taken",
    fwd: (x: mj.Tensor) => x.mul(2),
    bwd: (_s, g) => [g.mul(2)],
  });
  throwsCustom(
    () =>
      mj.customVjp({
        name: "test.custom.taken",
        fwd: (x: mj.Tensor) => x.mul(3),
        bwd: (_s, g) => [g.mul(3)],
      }),
    /the name "test\.custom\.taken" is already registered with a different fwd\/bwd/,
  );
  // Flipping only the estimator flag changes what the name means, too.
  throwsCustom(
    () =>
      mj.customVjp({
        name: "test.custom.taken",
        fwd: (x: mj.Tensor) => x.mul(2),
        bwd: (_s, g) => [g.mul(2)],
        estimator: true,
      }),
    /already registered/,
  );
});

Deno.test("customVjp: re-registering identical source is allowed", () => {
  // A layer that builds its customVjp on every call re-registers the same text each time.
  const make = () =>
    mj.customVjp({
      name: "test.custom.rebuilt",
      fwd: (x: mj.Tensor) => x.mul(2),
      bwd: (_s, g) => [g.mul(2)],
    });
  const f1 = make(), f2 = make();
  const x = mj.tensor([1, 2]);
  assert.equal(f1(x).node, f2(x).node);
  const [g] = mj.grad((x: mj.Tensor) => f2(x).sum())(x);
  assert.deepEqual(vals(g), [2, 2]);
});

Deno.test("customVjp: same source, different captured values: each keeps its own backward", () => {
  // The source text cannot see closures, so both registrations are accepted; the calls differ in
  // their forward graphs and must each run the backward they were made with.
  const make = (k: number) =>
    mj.customVjp({
      name: "test.custom.closure",
      fwd: (x: mj.Tensor) => x.mul(k),
      bwd: (_s, g) => [g.mul(k)],
    });
  const double = make(2), triple = make(3);
  const x = mj.tensor([1, -1]);
  assert.deepEqual(vals(mj.grad((x: mj.Tensor) => double(x).sum())(x)[0]), [2, 2]);
  assert.deepEqual(vals(mj.grad((x: mj.Tensor) => triple(x).sum())(x)[0]), [3, 3]);
  assert.deepEqual(
    vals(mj.grad((x: mj.Tensor) => double(x).add(triple(x)).sum())(x)[0]),
    [5, 5],
  );
});

Deno.test("customVjp errors: bad specs", () => {
  throwsCustom(
    () =>
      mj.customVjp({
        name: "test.custom.typo",
        fwd: (x: mj.Tensor) => x,
        bwd: (_s: mj.Tensor[], g: mj.Tensor) => [g],
        estimate: true,
      } as unknown as mj.CustomVjpSpec<[mj.Tensor], mj.Tensor>),
    /unknown option "estimate"; expected name, fwd, bwd, estimator/,
  );
  throwsCustom(
    () => mj.customVjp({ name: "", fwd: (x: mj.Tensor) => x, bwd: (_s, g) => [g] }),
    /expected a non-empty string name/,
  );
  throwsCustom(
    () =>
      mj.customVjp({
        name: "test.custom.noBwd",
        fwd: (x: mj.Tensor) => x,
      } as unknown as mj.CustomVjpSpec<[mj.Tensor], mj.Tensor>),
    /fwd and bwd must be functions/,
  );
});

Deno.test("customVjp: kept results of a custom call stay differentiable and constant", () => {
  // mj.grad rewrites what it returns so that it no longer refers to its argument markers; the
  // rewritten custom nodes must keep working (their backward still runs, with both outputs).
  const x = mj.tensor([0.5, -1, 2]);
  const [g1] = mj.grad((x: mj.Tensor) => fusedSilu(x).sum())(x);
  const [g2] = mj.grad((x: mj.Tensor) => x.mul(g1).sum())(x);
  assertClose(vals(g2), vals(g1));
  const [, [g], aux] = mj.valueAndGrad(
    (x: mj.Tensor) => [fusedSilu(x).sum(), fusedSilu(x.mul(2))] as const,
    { hasAux: true },
  )(x);
  assertClose(vals(g), vals(g1));
  assert.equal(aux.node.op, "custom");
  const [ga] = mj.grad((y: mj.Tensor) => aux.mul(y).sum())(mj.ones([3]));
  assertClose(vals(ga), vals(aux));
  checkGradFD((y) => {
    const kept = mj.grad((z: mj.Tensor) => fusedSilu(z).square().sum())(y)[0];
    return kept.mul(y.sin()).sum();
  }, [{ data: randomArray(3, 11), shape: [3] }]);
});

Deno.test("customVjp: a custom node rebuilt over new sources by a graph rewrite keeps working", () => {
  // Passes rebuild nodes with makeNode(op, newSources, arg); the rebuilt custom node must still
  // find its call, over its own new sources (inputs and saved residuals).
  const rewrite = (root: Node, from: Node, to: Node): Node => {
    const map = new Map<Node, Node>([[from, to]]);
    for (const n of toposort([root])) {
      if (map.has(n)) continue;
      const src = n.src.map((s) => map.get(s) ?? s);
      map.set(n, src.some((s, i) => s !== n.src[i]) ? makeNode(n.op, src, n.arg as never) : n);
    }
    return map.get(root)!;
  };
  const viaRewrite = (a: mj.Tensor) => {
    const y = fusedSilu(a.mul(2));
    return new Tensor(rewrite(y.node, a.mul(2).node, a.mul(3).node)).mul(a).sum();
  };
  const direct = (a: mj.Tensor) => fusedSilu(a.mul(3)).mul(a).sum();
  const x = mj.tensor([0.5, -1.5, 2]);
  assertClose(vals(mj.grad(viaRewrite)(x)[0]), vals(mj.grad(direct)(x)[0]), { rtol: 1e-6 });
  checkGradFD(viaRewrite, [{ data: randomArray(3, 12), shape: [3] }]);
});
