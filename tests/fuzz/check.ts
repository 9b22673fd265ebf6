/**
 * Runs a fuzz program on the interpreter (with error estimates) and on the compiled backend under
 * test (WebGPU or native), and compares the outputs, the loss and the gradients of every f32
 * input.
 *
 * f32 results must agree within SAFETY × the per-element error estimate of error_bounds.ts;
 * i32 and bool results (casts, comparisons, argmax, top-k indices) must agree exactly. A program
 * whose interpreter run has a NaN or an infinity, or a discontinuity within the error of its
 * boundary, is ill-conditioned there: it is reported as such and not compared.
 */
import { backend } from "../webgpu/harness.ts";
import * as mj from "../../mod.ts";
import type { TypedArray } from "../../src/dtype.ts";
import { MoejitError } from "../../src/errors.ts";
import { analyze } from "./error_bounds.ts";
import { build, isGradInput, live, lossOf, type Program, runtimeScalars } from "./program.ts";

/** How far past the error estimate a difference may go. */
export const SAFETY = 8;

/** One way of running a program on a compiled backend. */
export interface Mode {
  /** Kernel fusion on (the default) or off (one kernel per op). */
  fusion: boolean;
  /** Through `mj.jit` (a compiled step over parameters) rather than eagerly. */
  jit: boolean;
  /** The loss and the gradients too, or the outputs alone. */
  grads: boolean;
}

export const DEFAULT_MODE: Mode = { fusion: true, jit: false, grads: true };

export function modeName(m: Mode): string {
  return [m.fusion ? "fused" : "unfused", m.jit ? "jit" : "eager", m.grads ? "grads" : "values"]
    .join(", ");
}

export type Verdict =
  /** worst: the largest |difference| / tolerance seen, and where. */
  | { status: "pass"; worst: number; worstAt: string; compared: number }
  | { status: "ill"; why: string }
  | { status: "invalid"; why: string }
  | { status: "fail"; mode: Mode; what: string; detail: string };

/** The tensors to compare, by name. */
export interface Roots {
  names: string[];
  tensors: mj.Tensor[];
}

/** Input nodes that get gradients: live f32 inputs marked `grad`. */
export function gradInputs(p: Program): number[] {
  return live(p).filter((i) => isGradInput(p.nodes[i]));
}

/**
 * The roots to compare: the program's outputs, then (with grads, when an output is f32) the loss
 * and the gradient of every grad input. `input(i)` gives the tensor of input node i.
 */
function computeRoots(
  p: Program,
  grads: boolean,
  input: (i: number) => mj.Tensor,
  scalars?: ReadonlyMap<number, mj.Tensor>,
): Roots {
  const outsOf = (inp: (i: number) => mj.Tensor) => {
    const ts = build(p, (i) => inp(i), scalars);
    return p.outputs.map((o) => ts[o]);
  };
  const plain = outsOf(input);
  const names = p.outputs.map((o) => `t${o}`);
  const gradIns = grads && plain.some((t) => t.dtype === "f32") ? gradInputs(p) : [];
  if (!gradIns.length) return { names, tensors: plain };
  const f = (...xs: mj.Tensor[]) => {
    const o = outsOf((i) => {
      const k = gradIns.indexOf(i);
      return k >= 0 ? xs[k] : input(i);
    });
    return [lossOf(o)!, o] as const;
  };
  const [loss, g, o] = mj.valueAndGrad(f, { hasAux: true })(...gradIns.map(input));
  return {
    names: [...names, "loss", ...gradIns.map((i) => `grad of t${i}`)],
    tensors: [...o, loss, ...(g as mj.Tensor[])],
  };
}

/** All input tensors of a program, fresh (new buffers, so that nothing is cached). */
function freshInputs(p: Program): Map<number, mj.Tensor> {
  const m = new Map<number, mj.Tensor>();
  build(p, (i, d) => {
    const t = mj.tensor(d.data, d.shape, { dtype: d.dtype });
    m.set(i, t);
    return t;
  });
  return m;
}

/** The roots of a program over fresh inputs, built (not run) on the current backend. */
export function eager(p: Program, grads: boolean): Roots {
  const inputs = freshInputs(p);
  return computeRoots(p, grads, (i) => inputs.get(i)!);
}

/**
 * Runs the program through `mj.jit` with every input as an argument, and the constants of
 * runtime scalar nodes as number arguments.
 */
async function jitted(p: Program, grads: boolean): Promise<Roots> {
  const inputs = freshInputs(p);
  const ids = [...inputs.keys()];
  const scalarIds = runtimeScalars(p);
  let names: string[] = [];
  const step = mj.jit((xs: mj.Tensor[], ss: number[]) => {
    const byId = new Map(ids.map((id, k) => [id, xs[k]]));
    // Traced numbers arrive as scalar tensors.
    const scalars = new Map(scalarIds.map((id, k) => [id, ss[k] as unknown as mj.Tensor]));
    const r = computeRoots(p, grads, (i) => byId.get(i)!, scalars);
    names = r.names;
    return r.tensors;
  });
  const tensors = await step(
    ids.map((id) => inputs.get(id)!),
    scalarIds.map((id) => (p.nodes[id] as { c: number }).c),
  );
  return { names, tensors };
}

async function realize(ts: readonly mj.Tensor[]): Promise<TypedArray[]> {
  return (await mj.getBackend()).realize(ts.map((t) => t.node));
}

function describeIndex(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return `[${idx.join(",")}]`;
}

export interface Comparison {
  /** Number of elements outside the tolerance. */
  bad: number;
  /** The first few of them, described. */
  lines: string[];
  /** The largest |difference| / tolerance among the elements within it, and where. */
  worst: number;
  worstAt: string;
}

/**
 * Compares a device result with the interpreter's: f32 within SAFETY × the error estimate
 * (exactly where the estimate is null), other dtypes exactly.
 */
export function compareRoot(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  err: Float64Array | null,
  dtype: string,
  shape: readonly number[],
): Comparison {
  const c: Comparison = { bad: 0, lines: [], worst: 0, worstAt: "" };
  for (let i = 0; i < want.length; i++) {
    const a = Number(got[i]), e = Number(want[i]);
    if (a === e) continue;
    const tol = dtype === "f32" && err ? SAFETY * err[i] : 0;
    const diff = Math.abs(a - e);
    if (diff <= tol) {
      if (diff / tol > c.worst) [c.worst, c.worstAt] = [diff / tol, describeIndex(i, shape)];
      continue;
    }
    c.bad++;
    if (c.lines.length < 6) {
      c.lines.push(
        `  at ${describeIndex(i, shape)}: ${backend()} ${a}, interpreter ${e}` +
          (dtype === "f32"
            ? ` (|diff| ${diff.toExponential(3)}, tolerance ${tol.toExponential(3)})`
            : ""),
      );
    }
  }
  return c;
}

/**
 * Checks a program: the interpreter with error estimates, then WebGPU in each mode. Stops at the
 * first mode that disagrees.
 */
export async function checkProgram(p: Program, modes: readonly Mode[]): Promise<Verdict> {
  const wantGrads = modes.some((m) => m.grads);
  let ref: Roots;
  let analysis: ReturnType<typeof analyze>;
  mj.setBackend("cpu");
  try {
    ref = eager(p, wantGrads);
    analysis = analyze(ref.tensors.map((t) => t.node), SAFETY);
  } catch (e) {
    if (e instanceof MoejitError) return { status: "invalid", why: e.message };
    throw e;
  }
  if (analysis.nonFinite) {
    const n = analysis.nonFinite;
    return {
      status: "ill",
      why: `a ${n.op} node ${n.dtype}[${n.shape}] has NaN or infinite values`,
    };
  }
  if (analysis.hazards.length) {
    const h = analysis.hazards[0];
    return {
      status: "ill",
      why: `${h.what} at element ${h.index} of ${h.node.op}[${h.node.shape}]: margin ${
        h.margin.toExponential(2)
      }, error ${h.error.toExponential(2)}`,
    };
  }
  let worst = 0, worstAt = "", compared = 0;
  for (const mode of modes) {
    mj.setBackend(backend());
    mj.setFusion(mode.fusion);
    let got: Roots, values: TypedArray[];
    try {
      got = mode.jit ? await jitted(p, mode.grads) : eager(p, mode.grads);
      values = await realize(got.tensors);
    } catch (e) {
      return {
        status: "fail",
        mode,
        what: `${backend()} threw`,
        detail: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
      };
    } finally {
      mj.setFusion(true);
      mj.setBackend("cpu");
    }
    for (let j = 0; j < got.names.length; j++) {
      const k = ref.names.indexOf(got.names[j]);
      const t = ref.tensors[k];
      const g = values[j], w = analysis.values[k], err = analysis.errors[k];
      const what = got.names[j];
      if (got.tensors[j].dtype !== t.dtype || got.tensors[j].shape.join() !== t.shape.join()) {
        return {
          status: "fail",
          mode,
          what,
          detail: `${backend()} gives ${got.tensors[j].dtype}[${
            got.tensors[j].shape
          }], the interpreter ${t.dtype}[${t.shape}]`,
        };
      }
      const c = compareRoot(g, w, err, t.dtype, t.shape);
      compared += w.length;
      if (c.bad) {
        return {
          status: "fail",
          mode,
          what,
          detail: `${t.dtype}[${t.shape}]: ${c.bad} of ${w.length} elements differ\n${
            c.lines.join("\n")
          }`,
        };
      }
      if (c.worst > worst) {
        worst = c.worst;
        worstAt = `${what} at ${c.worstAt} (${modeName(mode)})`;
      }
    }
  }
  return { status: "pass", worst, worstAt, compared };
}
