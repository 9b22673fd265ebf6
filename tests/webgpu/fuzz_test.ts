/**
 * Randomized graphs: chains of elementwise ops, broadcasts, keepdims reductions, softmax,
 * cumsum, gathers and view changes over odd shapes with size-1 dims, built from a seed and run
 * on the interpreter and on WebGPU fused and unfused. This exercises the fuser's grouping,
 * realize rules and index arithmetic on combinations no hand-written case lists. Only ops that
 * are continuous (or nearly: where on a strict comparison) are drawn, so that an ulp of
 * difference upstream cannot become a large difference downstream.
 */
import { check, f32, gpuTest, mj } from "./harness.ts";
import { prng } from "../helpers.ts";

type T = mj.Tensor;

const UNARY: ((x: T) => T)[] = [
  (x) => x.tanh(),
  (x) => x.sigmoid(),
  (x) => x.sin(),
  (x) => x.mul(0.5).add(0.25),
  (x) => x.neg(),
  (x) => x.abs(),
  (x) => x.relu(),
  (x) => x.tanh().exp(),
  (x) => x.square().tanh(),
  (x) => x.clip(-0.4, 0.6),
];

const BINARY: ((a: T, b: T) => T)[] = [
  (a, b) => a.add(b),
  (a, b) => a.sub(b),
  (a, b) => a.mul(b),
  (a, b) => a.maximum(b),
  (a, b) => a.minimum(b),
  (a, b) => mj.where(a.gt(b), a, b.mul(0.5)),
  (a, b) => a.div(b.abs().add(1)),
];

function pick<X>(r: () => number, xs: readonly X[]): X {
  return xs[Math.floor(r() * xs.length)];
}

function randomAxes(r: () => number, rank: number): number[] {
  const axes = Array.from({ length: rank }, (_, i) => i).filter(() => r() < 0.5);
  return axes.length ? axes : [Math.floor(r() * rank)];
}

/** One random graph over inputs of `shape` (and one broadcast input); returns its outputs. */
function randomGraph(seed: number, shape: number[], inputs: T[]): Record<string, T> {
  const r = prng(seed);
  const pool: T[] = [...inputs];
  const rank = shape.length;
  const steps = 6 + Math.floor(r() * 6);
  for (let s = 0; s < steps; s++) {
    const x = pick(r, pool);
    const kind = r();
    let y: T;
    if (kind < 0.3) y = pick(r, UNARY)(x);
    else if (kind < 0.55) y = pick(r, BINARY)(x, pick(r, pool));
    else if (kind < 0.7) {
      const axes = randomAxes(r, rank);
      const red = pick(r, [
        (t: T) => t.mean(axes, true),
        (t: T) => t.max(axes, true),
        (t: T) => t.min(axes, true),
        (t: T) => t.logsumexp(axes, true).tanh(),
        (t: T) => t.var(axes, true),
      ]);
      y = red(x);
    } else if (kind < 0.78) y = x.softmax(Math.floor(r() * rank));
    else if (kind < 0.84) {
      // A permutation and, after an op, its inverse: a non-contiguous view inside a kernel.
      const perm = [...Array(rank).keys()].sort(() => r() - 0.5);
      const inv = new Array<number>(rank);
      perm.forEach((p, i) => (inv[p] = i));
      y = pick(r, UNARY)(x.permute(perm)).permute(inv);
    } else if (kind < 0.9) {
      const a = Math.floor(r() * rank);
      y = x.cumsum(a, { reverse: r() < 0.5, exclusive: r() < 0.5 }).mul(0.2);
    } else if (kind < 0.95) {
      // Shift along an axis by slicing one end and padding the other: same shape.
      const a = Math.floor(r() * rank);
      if (x.shape[a] < 2) continue;
      const ranges = x.shape.map((d, i) => (i === a ? [1, d] as [number, number] : null));
      const pads = x.shape.map((_, i) => (i === a ? [0, 1] : [0, 0]) as [number, number]);
      y = x.slice(ranges).pad(pads, 0.125);
    } else {
      const a = Math.floor(r() * rank);
      const n = x.shape[a];
      const idxShape = x.shape.map((d, i) => (i === a ? Math.max(1, n) : d));
      const size = idxShape.reduce((p, d) => p * d, 1);
      const idx = mj.tensor(
        Int32Array.from({ length: size }, () => Math.floor(r() * n)),
        idxShape,
      );
      y = x.gather(a, idx);
    }
    pool.push(y);
  }
  const last = pool[pool.length - 1];
  return {
    last,
    mix: pool.slice(-3).reduce((a, b) => a.add(b)),
    total: pool[pool.length - 2].sum(),
  };
}

gpuTest("random graphs match the interpreter, fused and unfused", async (t) => {
  const shapes = [[7, 13], [1, 13], [5, 1, 9], [3, 7, 5], [13], [2, 1, 3, 5]];
  for (let g = 0; g < 24; g++) {
    const shape = shapes[g % shapes.length];
    const a = f32(shape, 1000 + g), b = f32(shape, 2000 + g);
    // A third input broadcast along the first axis (size 1 there).
    const cShape = shape.map((d, i) => (i === 0 ? 1 : d));
    const c = f32(cShape, 3000 + g);
    await t.step(
      `graph ${g} over ${JSON.stringify(shape)}`,
      () =>
        check(`graph ${g}`, () => randomGraph(g, shape, [a(), b(), c()]), {
          rtol: 1e-4,
          atol: 2e-5,
        }).then(() => {}),
    );
  }
});

gpuTest("gradients of random graphs match the interpreter", async (t) => {
  const shapes = [[7, 13], [5, 1, 9], [3, 7, 5], [2, 1, 3, 5]];
  for (let g = 100; g < 108; g++) {
    const shape = shapes[g % shapes.length];
    const a = f32(shape, 1000 + g), b = f32(shape, 2000 + g);
    const c = f32(shape.map((d, i) => (i === 0 ? 1 : d)), 3000 + g);
    await t.step(`graph ${g} over ${JSON.stringify(shape)}`, () =>
      check(`grad graph ${g}`, () => {
        const [value, grads] = mj.valueAndGrad((x: T, y: T, z: T) => {
          const o = randomGraph(g, shape, [x, y, z]);
          return o.mix.mul(f32(o.mix.shape, 77)()).sum().add(o.total);
        })(a(), b(), c());
        return { value, da: grads[0], db: grads[1], dc: grads[2] };
      }, { rtol: 1e-4, atol: 2e-5 }).then(() => {}));
  }
});
