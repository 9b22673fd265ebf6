/**
 * Optimizers as pure functions of parameter trees, so that the whole update compiles into a
 * jitted training step: AdamW (decoupled weight decay), global gradient-norm clipping, and a
 * warmup + cosine learning-rate schedule computed on the host (pass its value into the jitted
 * step as a number: it becomes a runtime scalar, not a recompilation).
 */
import { fail, formatValue } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { flatten } from "../autodiff/tree.ts";
import { constant } from "../ops/prim.ts";

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (default 0.1). */
  weightDecay?: number;
  /**
   * Which parameters decay, by path (e.g. "layers.0.attn.q"). Default: every parameter with
   * two or more dims — i.e. no decay on norms and biases.
   */
  decay?: (path: string, shape: readonly number[]) => boolean;
}

/** Optimizer state: first and second moments with the parameters' structure. */
export interface AdamWState<P> {
  m: P;
  v: P;
}

const KEYS = ["beta1", "beta2", "eps", "weightDecay", "decay"];

export function defaultDecay(path: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && !/(^|\.)(bias|weight)$/.test(path);
}

/**
 * AdamW (Loshchilov & Hutter): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − lr·(m̂/(√v̂ + ε) +
 * λp) with bias-corrected m̂, v̂; decay only where `decay(path)` holds.
 *
 * @example
 * ```ts
 * const opt = mj.optim.adamw({ weightDecay: 0.1 });
 * let state = opt.init(params);
 * // inside a jitted step: ({ params, state } = opt.update(params, grads, state, lr, step));
 * ```
 */
export interface AdamW {
  init<P>(params: P): AdamWState<P>;
  update<P>(
    params: P,
    grads: P,
    state: AdamWState<P>,
    lr: number | Tensor,
    step: number | Tensor,
  ): { params: P; state: AdamWState<P> };
}

export function adamw(opts: AdamWOptions = {}): AdamW {
  for (const k of Object.keys(opts)) {
    if (!KEYS.includes(k)) {
      fail("optim.adamw", `unknown option ${JSON.stringify(k)}; expected ${KEYS.join(", ")}`);
    }
  }
  const b1 = opts.beta1 ?? 0.9,
    b2 = opts.beta2 ?? 0.95,
    eps = opts.eps ?? 1e-8,
    wd = opts.weightDecay ?? 0.1;
  for (const [name, v] of [["beta1", b1], ["beta2", b2]] as const) {
    if (!(v >= 0 && v < 1)) fail("optim.adamw", `${name} must be in [0, 1), got ${v}`);
  }
  if (!(eps > 0)) fail("optim.adamw", `eps must be positive, got ${eps}`);
  if (!(wd >= 0)) fail("optim.adamw", `weightDecay must be ≥ 0, got ${wd}`);
  const decay = opts.decay ?? defaultDecay;
  return {
    /** Zero moments with the parameters' structure. */
    init<P>(params: P): AdamWState<P> {
      const f = flatten(params);
      const zeros = f.leaves.map((l) => (l instanceof Tensor ? constant(0, l.shape, l.dtype) : l));
      return { m: f.rebuild(zeros) as P, v: f.rebuild(zeros) as P };
    },
    /**
     * One step. `lr` and `step` (1-based) may be numbers — inside mj.jit they are runtime
     * scalars — or scalar tensors.
     */
    update<P>(
      params: P,
      grads: P,
      state: AdamWState<P>,
      lr: number | Tensor,
      step: number | Tensor,
    ): { params: P; state: AdamWState<P> } {
      const fp = flatten(params), fg = flatten(grads), fm = flatten(state.m), fv = flatten(state.v);
      if (fg.leaves.length !== fp.leaves.length || fm.leaves.length !== fp.leaves.length) {
        fail("optim.adamw", "params, grads and state must have the same structure");
      }
      const t = step instanceof Tensor ? step : constant(step, [], "f32");
      const rate = lr instanceof Tensor ? lr : constant(lr, [], "f32");
      // Bias corrections 1 − β^t, computed in the graph so the step can be a runtime scalar.
      const c1 = constant(b1, [], "f32").pow(t).neg().add(1);
      const c2 = constant(b2, [], "f32").pow(t).neg().add(1);
      const np: unknown[] = [], nm: unknown[] = [], nv: unknown[] = [];
      fp.leaves.forEach((p, i) => {
        const g = fg.leaves[i];
        if (!(p instanceof Tensor) || !(g instanceof Tensor)) {
          np.push(p), nm.push(fm.leaves[i]), nv.push(fv.leaves[i]);
          return;
        }
        const m = (fm.leaves[i] as Tensor).mul(b1).add(g.mul(1 - b1));
        const v = (fv.leaves[i] as Tensor).mul(b2).add(g.square().mul(1 - b2));
        let upd = m.div(c1).div(v.div(c2).sqrt().add(eps));
        if (wd > 0 && decay(fp.paths[i], p.shape)) upd = upd.add(p.mul(wd));
        np.push(p.sub(upd.mul(rate)));
        nm.push(m);
        nv.push(v);
      });
      return {
        params: fp.rebuild(np) as P,
        state: { m: fm.rebuild(nm) as P, v: fv.rebuild(nv) as P },
      };
    },
  };
}

/**
 * The global L2 norm of a tree of tensors (a scalar tensor): the square root of the sum of
 * squares over every leaf.
 *
 * @example
 * ```ts
 * const norm = mj.optim.globalNorm(grads); // what clipGradNorm clips against
 * ```
 */
export function globalNorm(tree: unknown): Tensor {
  let sq: Tensor | null = null;
  for (const g of flatten(tree).leaves) {
    if (!(g instanceof Tensor)) continue;
    const s = g.square().sum();
    sq = sq ? sq.add(s) : s;
  }
  return sq ? sq.sqrt() : constant(0, [], "f32");
}

/**
 * Scales a gradient tree so its global L2 norm is at most `maxNorm`; returns the scaled tree and
 * the norm before clipping (a scalar tensor).
 *
 * @example
 * ```ts
 * const { grads: clipped, norm } = mj.optim.clipGradNorm(grads, 1.0);
 * ```
 */
export function clipGradNorm<G>(grads: G, maxNorm: number): { grads: G; norm: Tensor } {
  if (!(maxNorm > 0)) fail("optim.clipGradNorm", `maxNorm must be positive, got ${maxNorm}`);
  const f = flatten(grads);
  const norm = globalNorm(grads);
  const scale = norm.add(1e-6).reciprocal().mul(maxNorm).minimum(1);
  return {
    grads: f.rebuild(f.leaves.map((g) => (g instanceof Tensor ? g.mul(scale) : g))) as G,
    norm,
  };
}

export interface CosineOptions {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps from 0 to lr. */
  warmup: number;
  /** Total steps; the cosine decays from lr to minLr between warmup and total. */
  total: number;
  /** Final learning rate (default lr/10). */
  minLr?: number;
}

/**
 * Warmup + cosine decay. Returns the learning rate for a 1-based step number.
 *
 * @example
 * ```ts
 * const lrAt = mj.optim.cosineSchedule({ lr: 3e-3, warmup: 50, total: 1000 });
 * lrAt(1); // 6e-5
 * ```
 */
export function cosineSchedule(o: CosineOptions): (step: number) => number {
  const minLr = o.minLr ?? o.lr / 10;
  if (!(o.lr > 0) || !(minLr >= 0) || !(o.warmup >= 0) || !(o.total >= 1)) {
    fail(
      "optim.cosineSchedule",
      `expected lr > 0, minLr ≥ 0, warmup ≥ 0, total ≥ 1, got ${formatValue(o)}`,
    );
  }
  return (step: number) => {
    if (step <= o.warmup) return (o.lr * step) / Math.max(1, o.warmup);
    const t = Math.min(1, (step - o.warmup) / Math.max(1, o.total - o.warmup));
    return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * t));
  };
}
