/**
 * Compiled-backend-vs-interpreter harness. A test gives a builder that creates its input
 * tensors afresh (graph nodes are interned and the backends cache realized roots, so rebuilding
 * over new buffer leaves is what makes every run really compute) and returns the tensors to
 * compare. The builder runs on the interpreter (the oracle), then on the compiled backend under
 * test (WebGPU or native) with fusion on and, unless told otherwise, with fusion off (one kernel
 * per op); every output must match the oracle: exactly for integer and bool outputs, within
 * float tolerances for f32. `gpuTest` registers a test once per compiled backend available
 * (MOEJIT_TEST_BACKENDS=webgpu or =native narrows it).
 */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import type { DType, TypedArray } from "../../src/dtype.ts";
import { prng, SLOW } from "../helpers.ts";

export { assert, mj };

/** What a builder returns: one tensor, a list, or named tensors. */
export type Outs = mj.Tensor | readonly mj.Tensor[] | Readonly<Record<string, mj.Tensor>>;

export interface CompareOpts {
  /** f32 tolerance |gpu − cpu| ≤ atol + rtol·|cpu| (defaults 1e-5, 1e-6). */
  rtol?: number;
  atol?: number;
  /**
   * f32 values must be identical: `true` compares signed zeros too (NaN payloads may differ);
   * `"value"` lets -0 equal +0, for arithmetic results: WGSL lets implementations ignore the
   * sign of a zero in arithmetic, and llvmpipe does (it folds fma(a, b, +0) to a·b, so a sum of
   * -0 products comes out -0 where IEEE summation from +0 gives +0).
   */
  exact?: boolean | "value";
  /** Which WebGPU runs: fused and unfused (default), or only one of them. */
  fusion?: "both" | "fused" | "unfused";
  /** Per-output options, by output name (or index). */
  per?: Record<string, Omit<CompareOpts, "per" | "fusion">>;
}

function flat(o: Outs): [string, mj.Tensor][] {
  if (o instanceof mj.Tensor) return [["out", o]];
  if (Array.isArray(o)) return (o as mj.Tensor[]).map((t, i) => [String(i), t]);
  return Object.entries(o as Record<string, mj.Tensor>);
}

async function runOn(
  backend: mj.BackendName,
  fused: boolean,
  build: () => Outs,
): Promise<{ names: string[]; tensors: mj.Tensor[]; values: TypedArray[] }> {
  mj.setBackend(backend);
  mj.setFusion(fused);
  try {
    const outs = flat(build());
    const tensors = outs.map(([, t]) => t);
    // One realize call: on WebGPU all outputs are one step (multi-output programs are tested too).
    const values = await (await mj.getBackend()).realize(tensors.map((t) => t.node));
    return { names: outs.map(([n]) => n), tensors, values };
  } finally {
    mj.setFusion(true);
  }
}

function describeIndex(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `[${idx.join(",")}]`;
}

/** Compares one realized output with the oracle's. */
export function compareValues(
  got: TypedArray,
  want: TypedArray,
  dtype: DType,
  shape: readonly number[],
  opts: Omit<CompareOpts, "per" | "fusion">,
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length} vs ${want.length}`);
  const bad: string[] = [];
  const note = (i: number, extra = "") => {
    if (bad.length < 8) {
      bad.push(
        `  at ${describeIndex(i, shape)} (flat ${i}): compiled ${got[i]}, cpu ${want[i]}${extra}`,
      );
    } else bad.push("");
  };
  if (dtype !== "f32") {
    for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) note(i);
  } else {
    const rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-6;
    for (let i = 0; i < got.length; i++) {
      const a = got[i], e = want[i];
      if (Number.isNaN(a) || Number.isNaN(e)) {
        if (!(Number.isNaN(a) && Number.isNaN(e))) note(i);
      } else if (opts.exact === "value") {
        if (a !== e) note(i);
      } else if (opts.exact) {
        if (!Object.is(a, e)) note(i);
      } else if (!Number.isFinite(a) || !Number.isFinite(e)) {
        if (a !== e) note(i);
      } else if (Math.abs(a - e) > atol + rtol * Math.abs(e)) {
        note(i, ` (|diff| ${Math.abs(a - e).toExponential(3)})`);
      }
    }
  }
  if (bad.length) {
    assert.fail(
      `${what} (${dtype}[${shape}]): ${bad.length} mismatching elements\n` +
        bad.filter((l) => l).join("\n"),
    );
  }
}

/**
 * Builds the computation on the interpreter and on WebGPU (fused and unfused) and compares every
 * output. Returns the oracle's values (for extra checks by the caller).
 */
export async function check(
  name: string,
  build: () => Outs,
  opts: CompareOpts = {},
): Promise<TypedArray[]> {
  const ref = await runOn("cpu", true, build);
  const modes = opts.fusion === "fused"
    ? [true]
    : opts.fusion === "unfused"
    ? [false]
    : [true, false];
  try {
    for (const fused of modes) {
      const gpu = await runOn(backend(), fused, build);
      assert.deepEqual(gpu.names, ref.names, `${name}: output names`);
      gpu.tensors.forEach((t, i) => {
        const r = ref.tensors[i];
        const what = `${name} [${backend()} ${fused ? "fused" : "unfused"}] output ${ref.names[i]}`;
        assert.equal(t.dtype, r.dtype, `${what}: dtype`);
        assert.deepEqual(t.shape, r.shape, `${what}: shape`);
        const o = { ...opts, ...(opts.per?.[ref.names[i]] ?? {}) };
        compareValues(gpu.values[i], ref.values[i], r.dtype, r.shape, o, what);
      });
    }
  } finally {
    mj.setBackend("cpu");
  }
  return ref.values;
}

// ---- inputs --------------------------------------------------------------------------------------

/** A factory of fresh input tensors over fixed data (a new buffer leaf on every call). */
export type Input = (() => mj.Tensor) & { data: TypedArray; shape: number[]; dtype: DType };

export function input(data: TypedArray, shape: readonly number[], dtype: DType): Input {
  const f = (() => mj.tensor(data, [...shape], { dtype })) as Input;
  f.data = data;
  f.shape = [...shape];
  f.dtype = dtype;
  return f;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Uniform f32 values in [lo, hi); `specials` are scattered over the first positions. */
export function f32(
  shape: readonly number[],
  seed: number,
  lo = -1,
  hi = 1,
  specials: readonly number[] = [],
): Input {
  const r = prng(seed);
  const d = Float32Array.from({ length: numel(shape) }, () => lo + (hi - lo) * r());
  // Spread the specials with a stride so that they land in different rows and columns.
  const stride = Math.max(1, Math.floor(d.length / Math.max(1, specials.length)));
  specials.forEach((v, i) => {
    if (i * stride < d.length) d[(i * stride + (i % 3)) % d.length] = v;
  });
  return input(d, shape, "f32");
}

/** Uniform integers in [lo, hi] as i32. */
export function i32(shape: readonly number[], seed: number, lo = -50, hi = 50): Input {
  const r = prng(seed);
  const d = Int32Array.from({ length: numel(shape) }, () => lo + Math.floor((hi - lo + 1) * r()));
  return input(d, shape, "i32");
}

/** Uniform integers in [lo, hi] as u32. */
export function u32(shape: readonly number[], seed: number, lo = 0, hi = 100): Input {
  const r = prng(seed);
  const d = Uint32Array.from({ length: numel(shape) }, () => lo + Math.floor((hi - lo + 1) * r()));
  return input(d, shape, "u32");
}

/** Random booleans, true with probability p. */
export function bool(shape: readonly number[], seed: number, p = 0.5): Input {
  const r = prng(seed);
  const d = Uint8Array.from({ length: numel(shape) }, () => (r() < p ? 1 : 0));
  return input(d, shape, "bool");
}

/** Explicit values (shape defaults to 1-D). */
export function vals(values: readonly number[], dtype: DType = "f32", shape?: number[]): Input {
  const d = dtype === "f32"
    ? Float32Array.from(values)
    : dtype === "i32"
    ? Int32Array.from(values)
    : dtype === "u32"
    ? Uint32Array.from(values.map((v) => v >>> 0))
    : Uint8Array.from(values.map((v) => (v ? 1 : 0)));
  return input(d, shape ?? [values.length], dtype);
}

/** Random data of any dtype in a range suitable for generic tests. */
export function anyOf(dtype: DType, shape: readonly number[], seed: number): Input {
  switch (dtype) {
    case "f32":
      return f32(shape, seed, -3, 3);
    case "i32":
      return i32(shape, seed);
    case "u32":
      return u32(shape, seed);
    default:
      return bool(shape, seed);
  }
}

/** Whether the WebGPU tier can run here (an adapter exists). */
export const HAS_GPU: boolean = (await mj.backendInfo()) !== null;
/** Whether the native tier can run here (a C compiler works). */
export const HAS_NATIVE: boolean = (await mj.nativeInfo()) !== null;

const wanted = (Deno.env.get("MOEJIT_TEST_BACKENDS") ?? "webgpu,native").split(",");

/** The compiled backends tested here, and why each one that is not is skipped. */
export const COMPILED: { name: "webgpu" | "native"; skip: string | null }[] = [
  {
    name: "webgpu",
    skip: !wanted.includes("webgpu")
      ? "not in MOEJIT_TEST_BACKENDS"
      : HAS_GPU
      ? null
      : "no WebGPU adapter; see README, Backends",
  },
  {
    name: "native",
    skip: !wanted.includes("native")
      ? "not in MOEJIT_TEST_BACKENDS"
      : HAS_NATIVE
      ? null
      : "no C compiler; see README, Backends",
  },
];

let current: "webgpu" | "native" = "webgpu";

/** The compiled backend the running gpuTest is for. */
export function backend(): "webgpu" | "native" {
  return current;
}

/**
 * Deno.test for the compiled tiers: one test per compiled backend (`webgpu: …`, `native: …`),
 * each run with `backend()` naming it. An unavailable backend's test is ignored with the reason
 * in its name; `knownBug` does the same for a test that documents a bug outside this tier's files
 * (say where, so that the test is re-enabled with the fix); `only` limits a test to the backends
 * it is about (a WebGPU runtime detail, say); `slow` puts it in the slow tier (MOEJIT_SLOW=1).
 */
export function gpuTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void> | void,
  opts: { knownBug?: string; only?: "webgpu" | "native"; slow?: boolean } = {},
): void {
  for (const b of COMPILED) {
    if (opts.only && opts.only !== b.name) continue;
    const skip = b.skip ?? (opts.knownBug ? `known bug: ${opts.knownBug}` : null) ??
      (opts.slow && !SLOW ? "slow tier, MOEJIT_SLOW=1 runs it" : null);
    Deno.test({
      name: `${b.name}: ${name}${skip ? ` [skipped: ${skip}]` : ""}`,
      ignore: !!skip,
      fn: async (t) => {
        current = b.name;
        try {
          await fn(t);
        } finally {
          mj.setFusion(true);
          mj.setBackend("cpu");
        }
      },
    });
  }
}

/**
 * A test for the interpreter and for every compiled backend: `cpu: name` (it always runs) and
 * gpuTest's `webgpu: name` and `native: name`, each calling `body` with the backend to run on.
 */
export function everyBackendTest(
  name: string,
  body: (b: mj.BackendName, t: Deno.TestContext) => Promise<void> | void,
  opts: Parameters<typeof gpuTest>[2] = {},
): void {
  Deno.test(`cpu: ${name}`, async (t) => {
    try {
      await body("cpu", t);
    } finally {
      mj.setBackend("cpu");
    }
  });
  gpuTest(name, (t) => body(backend(), t), opts);
}
