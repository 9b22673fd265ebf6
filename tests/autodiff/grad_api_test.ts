/**
 * The mj.grad / mj.valueAndGrad surface: parameter trees, argument identity, non-float and
 * unused arguments, auxiliary outputs and higher-order gradients.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, checkGradFD, evalWide, randomArray } from "../helpers.ts";

const vals = (t: mj.Tensor) => Array.from(evalWide(t)[0]);

Deno.test("grad: nested parameter trees come back with the same structure", () => {
  const params = {
    w: [mj.tensor([1, 2]), mj.tensor([[3], [4]])],
    c: { d: mj.tensor(0.5) },
  };
  const x = mj.tensor([2, -1]);
  const f = (p: typeof params, x: mj.Tensor) =>
    p.w[0].mul(x).matmul(p.w[1]).mul(p.c.d).sum().add(p.w[0].square().sum());
  const [gp, gx] = mj.grad(f)(params, x);
  assert.deepEqual(Object.keys(gp), ["w", "c"]);
  assert.ok(Array.isArray(gp.w) && gp.w.length === 2);
  assert.deepEqual(Object.keys(gp.c), ["d"]);
  // f = d·Σ_i w0_i x_i w1_i + Σ w0²; w0·x = [2, -2], (w0·x)@w1 = 6 - 8 = -2.
  assert.deepEqual(gp.w[0].shape, [2]);
  assert.deepEqual(gp.w[1].shape, [2, 1]);
  assert.deepEqual(gp.c.d.shape, []);
  assertClose(vals(gp.w[0]), [0.5 * 2 * 3 + 2, 0.5 * -1 * 4 + 4]);
  assertClose(vals(gp.w[1]), [0.5 * 2, 0.5 * -2]);
  assertClose(vals(gp.c.d), [-2]);
  assertClose(vals(gx), [0.5 * 1 * 3, 0.5 * 2 * 4]);
});

Deno.test("grad: FD check through a parameter tree", () => {
  // checkGradFD takes flat inputs; rebuild a tree inside so the tree path is what gets checked.
  checkGradFD(
    (a, b, d) => {
      const p = { w: [a, b], c: { d } };
      return mj.grad((q: typeof p) => q.w[0].matmul(q.w[1]).tanh().mul(q.c.d).sum())(p)[0].w[1]
        .square().sum();
    },
    [
      { data: randomArray(6, 1), shape: [2, 3] },
      { data: randomArray(12, 2), shape: [3, 4] },
      { data: randomArray(4, 3), shape: [4] },
    ],
  );
});

Deno.test("grad: the same tensor as two arguments gets per-argument (partial) gradients", () => {
  const x = mj.tensor([1, 2, 3]);
  const [ga, gb] = mj.grad((a: mj.Tensor, b: mj.Tensor) => a.mul(b.square()).sum())(x, x);
  // ∂/∂a = b² and ∂/∂b = 2ab, not the total derivative 3x².
  assertClose(vals(ga), [1, 4, 9]);
  assertClose(vals(gb), [2, 8, 18]);
  // The same tensor twice inside one tree behaves the same way.
  const [[g0, g1]] = mj.grad(([a, b]: mj.Tensor[]) => a.sub(b.mul(3)).sum())([x, x]);
  assertClose(vals(g0), [1, 1, 1]);
  assertClose(vals(g1), [-3, -3, -3]);
});

Deno.test("grad: a constant equal to an argument does not receive its gradient", () => {
  // The closure's tensor is the argument's own leaf, but only the argument is differentiated.
  const x = mj.tensor([1, 2]);
  const [g] = mj.grad((a: mj.Tensor) => a.mul(x).sum())(x);
  assertClose(vals(g), [1, 2]);
});

Deno.test("grad: unused float arguments get zeros of their shape", () => {
  const [ga, gb, gc] = mj.grad((a: mj.Tensor, _b: mj.Tensor, c: { u: mj.Tensor }) =>
    a.sum().add(c.u.stopGradient().sum())
  )(mj.tensor([1, 2]), mj.ones([2, 3]), { u: mj.ones([4]) });
  assertClose(vals(ga), [1, 1]);
  assert.deepEqual(gb.shape, [2, 3]);
  assert.equal(gb.dtype, "f32");
  assert.deepEqual(vals(gb), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(vals(gc.u), [0, 0, 0, 0]);
});

Deno.test("grad: integer, bool and non-tensor arguments get null", () => {
  const f = (x: mj.Tensor, idx: mj.Tensor, mask: mj.Tensor, scale: number, tag: string) =>
    x.gather(0, idx).mul(mask.cast("f32")).mul(scale).sum().add(tag.length);
  const [gx, gi, gm, gs, gt] = mj.grad(f)(
    mj.tensor([1, 2, 3]),
    mj.tensor([2, 2], undefined, { dtype: "i32" }),
    mj.tensor([true, false]),
    3,
    "hi",
  );
  assertClose(vals(gx), [0, 0, 3]);
  assert.equal(gi, null);
  assert.equal(gm, null);
  assert.equal(gs, null);
  assert.equal(gt, null);
});

Deno.test("valueAndGrad: returns the loss value with the gradients", async () => {
  const x = mj.tensor([1, -2, 3]);
  const [loss, [g]] = mj.valueAndGrad((x: mj.Tensor) => x.square().mean())(x);
  assert.deepEqual(loss.shape, []);
  assertClose([await loss.item()], [14 / 3]);
  assertClose(await g.data(), [2 / 3, -4 / 3, 2]);
});

Deno.test("valueAndGrad: a one-element non-scalar loss is accepted", async () => {
  const [loss, [g]] = mj.valueAndGrad((x: mj.Tensor) => x.sum(0, true).mul(2))(
    mj.tensor([1, 2]),
  );
  assert.deepEqual(loss.shape, [1]);
  assert.equal(await loss.item(), 6);
  assertClose(await g.data(), [2, 2]);
});

Deno.test("valueAndGrad: hasAux returns aux alongside and does not differentiate it", async () => {
  const x = mj.tensor([1, 2, 3]);
  const [loss, [g], aux] = mj.valueAndGrad(
    (x: mj.Tensor) => [x.square().sum(), { mean: x.mean(), n: 3 }] as const,
    { hasAux: true },
  )(x);
  assert.equal(await loss.item(), 14);
  assertClose(await g.data(), [2, 4, 6]);
  assert.equal(await aux.mean.item(), 2);
  assert.equal(aux.n, 3);
});

Deno.test("grad of grad: d²/dx² x³ = 6x", async () => {
  const x = mj.tensor([-1.5, 0.5, 2]);
  for (const cube of [(x: mj.Tensor) => x.mul(x).mul(x), (x: mj.Tensor) => x.pow(3)]) {
    const dfdx = (x: mj.Tensor) => mj.grad((y: mj.Tensor) => cube(y).sum())(x)[0];
    assertClose(await dfdx(x).data(), [6.75, 0.75, 12]);
    const [d2] = mj.grad((x: mj.Tensor) => dfdx(x).sum())(x);
    assertClose(await d2.data(), [-9, 3, 12]);
  }
});

Deno.test("grad of grad: FD check of a gradient (Hessian-vector products)", () => {
  checkGradFD(
    (x, w) => {
      const g = mj.grad((x: mj.Tensor) => x.matmul(w).tanh().square().sum())(x)[0];
      return g.mul(g).sum();
    },
    [{ data: randomArray(6, 4), shape: [2, 3] }, { data: randomArray(9, 5), shape: [3, 3] }],
  );
});

Deno.test("grad: gradients of a gradient through a custom VJP (sigmoid)", () => {
  // sigmoid's backward is hand-written; its output must still be differentiable.
  checkGradFD(
    (x) => mj.grad((y: mj.Tensor) => y.sigmoid().mul(y).sum())(x)[0].square().sum(),
    [{ data: randomArray(5, 6, -3, 3), shape: [5] }],
  );
});

Deno.test("grad: a gradient kept from an earlier call is a constant in a later call", () => {
  // Both calls wrap x in the same (level, path) marker; the kept gradient must not carry it.
  const x = mj.tensor([1, 2, 3]);
  const [g1] = mj.grad((x: mj.Tensor) => x.square().sum())(x);
  const [g2] = mj.grad((x: mj.Tensor) => x.mul(g1).sum())(x);
  assertClose(vals(g2), [2, 4, 6]);
  // The same for the value and aux of valueAndGrad.
  const [loss, , aux] = mj.valueAndGrad((x: mj.Tensor) => [x.square().sum(), x.exp()] as const, {
    hasAux: true,
  })(x);
  const [g3] = mj.grad((x: mj.Tensor) => x.mul(loss).add(x.mul(aux)).sum())(x);
  assertClose(vals(g3), [1, 2, 3].map((v) => 14 + Math.exp(v)), { rtol: 1e-6 });
  for (const t of [g1, loss, aux]) assert.doesNotMatch(mj.debug.graph(t), / = arg/);
});

Deno.test("grad: gradient matching against a gradient taken earlier at the same point", () => {
  // h(x) = ⟨∇L(x), g⟩ with g = ∇L(x0) fixed: ∇h = ∇²L(x)·g = 6x ⊙ 3x² for L = Σx³.
  const x = mj.tensor([1, 2, 3]);
  const L = (x: mj.Tensor) => x.pow(3).sum();
  const [g] = mj.grad(L)(x);
  const [h] = mj.grad((x: mj.Tensor) => mj.grad(L)(x)[0].mul(g).sum())(x);
  assertClose(vals(h), [18, 144, 486]);
});

Deno.test("valueAndGrad: an out-of-range index computed from an argument names the op the user called", async () => {
  // The index depends on the differentiated argument, so the graph handed back is rebuilt
  // without the argument markers; its index check must keep the op, axis and call site.
  mj.setBackend("cpu");
  const x = mj.tensor([1, 2, 3]);
  const [value] = mj.valueAndGrad((x: mj.Tensor) => x.gather(0, x.argmax(0, true).add(5)).sum())(x);
  await assert.rejects(
    () => value.data(),
    /gather: index 7 is out of range for axis 0 \(size 3\); expected an integer in 0\.\.2\n {4}at your call: .*grad_api_test\.ts:\d+/,
  );
});
