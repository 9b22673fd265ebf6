/**
 * Shared test helpers: tolerant comparisons, float64 evaluation on the interpreter, and
 * finite-difference gradient checks along random directions.
 */
import assert from "node:assert/strict";
import * as mj from "../mod.ts";
import { evaluate } from "../src/interp/interpreter.ts";
import { fromHost } from "../src/ops/creation.ts";
import type { TypedArray } from "../src/dtype.ts";

export { assert };

/** True when the WebGPU tier should run (an adapter exists and it is not disabled). */
export const SLOW = Deno.env.get("MOEJIT_SLOW") === "1";

export function toNumbers(x: TypedArray | ArrayLike<number> | number[]): number[] {
  return Array.from(x as ArrayLike<number>, Number);
}

/**
 * Asserts |a - e| <= atol + rtol·|e| elementwise (NaN matches NaN, ±inf must match exactly).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { rtol?: number; atol?: number; msg?: string } = {},
): void {
  const rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-6;
  const a = Array.from(actual, Number), e = Array.from(expected, Number);
  assert.equal(a.length, e.length, `${opts.msg ?? ""} length ${a.length} vs ${e.length}`);
  let worst = -1, worstErr = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(e[i]) && Number.isNaN(a[i])) continue;
    if (!Number.isFinite(e[i]) || !Number.isFinite(a[i])) {
      if (a[i] !== e[i]) {
        assert.fail(`${opts.msg ?? ""} element ${i}: got ${a[i]}, expected ${e[i]}`);
      }
      continue;
    }
    const err = Math.abs(a[i] - e[i]) - (atol + rtol * Math.abs(e[i]));
    if (err > worstErr) {
      worstErr = err;
      worst = i;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${opts.msg ?? ""} element ${worst}: got ${a[worst]}, expected ${e[worst]} ` +
        `(rtol ${rtol}, atol ${atol})\n got ${a.slice(0, 16).join(", ")}\n exp ${
          e.slice(0, 16).join(", ")
        }`,
    );
  }
}

/** Realizes and compares to nested/flat expected values; also checks the shape when given. */
export async function assertTensor(
  t: mj.Tensor,
  expected: ArrayLike<number> | number,
  opts: { shape?: number[]; dtype?: mj.DType; rtol?: number; atol?: number } = {},
): Promise<void> {
  if (opts.shape) assert.deepEqual(t.shape, opts.shape, "shape");
  if (opts.dtype) assert.equal(t.dtype, opts.dtype, "dtype");
  const d = await t.data();
  assertClose(d, typeof expected === "number" ? [expected] : expected, opts);
}

/** Evaluates tensors on the interpreter with f32 values held in float64. */
export function evalWide(...ts: mj.Tensor[]): Float64Array[] {
  return evaluate(ts.map((t) => t.node), { wide: true }).map((v) => Float64Array.from(v));
}

/** A float64-backed f32 tensor (for finite differences); not rounded to f32 on the oracle. */
export function wideTensor(data: ArrayLike<number>, shape: number[]): mj.Tensor {
  return fromHost(Float64Array.from(data), shape, "f32");
}

/** Deterministic pseudo-random numbers (mulberry32), for test inputs. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [lo, hi). */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = prng(seed);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/**
 * Finite-difference check in float64: for each float input and a few random directions v,
 * compares ⟨∇f(x), v⟩ with (f(x + h·v) − f(x − h·v)) / 2h. `f` must return a scalar tensor.
 */
export function checkGradFD(
  f: (...xs: mj.Tensor[]) => mj.Tensor,
  inputs: { data: ArrayLike<number>; shape: number[] }[],
  opts: { h?: number; rtol?: number; atol?: number; directions?: number; seed?: number } = {},
): void {
  const h = opts.h ?? 1e-5, rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-7;
  const dirs = opts.directions ?? 3;
  const xs = inputs.map((i) => wideTensor(i.data, i.shape));
  const grads = mj.grad(f)(...xs) as mj.Tensor[];
  const gv = evalWide(...grads);
  for (let d = 0; d < dirs; d++) {
    const vs = inputs.map((_inp, i) => randomArray(gv[i].length, (opts.seed ?? 7) + 31 * d + i));
    let analytic = 0;
    vs.forEach((v, i) => v.forEach((vk, k) => (analytic += gv[i][k] * vk)));
    const shifted = (sgn: number) =>
      inputs.map((inp, i) =>
        wideTensor(Array.from(inp.data, (x, k) => Number(x) + sgn * h * vs[i][k]), inp.shape)
      );
    const [fp] = evalWide(f(...shifted(1)));
    const [fm] = evalWide(f(...shifted(-1)));
    const numeric = (fp[0] - fm[0]) / (2 * h);
    const tol = atol + rtol * Math.max(Math.abs(numeric), Math.abs(analytic));
    assert.ok(
      Math.abs(numeric - analytic) <= tol,
      `directional derivative ${d}: analytic ${analytic}, finite difference ${numeric} ` +
        `(|diff| ${Math.abs(numeric - analytic)} > tol ${tol})`,
    );
  }
}

/**
 * Runs `body` with fusion on, then off (each kernel its own op), restoring fusion after: model
 * tests must agree both ways.
 */
export async function fusedAndUnfused(body: (fused: boolean) => Promise<void>): Promise<void> {
  try {
    for (const fused of [true, false]) {
      mj.setFusion(fused);
      await body(fused);
    }
  } finally {
    mj.setFusion(true);
  }
}
