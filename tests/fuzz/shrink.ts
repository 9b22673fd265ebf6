/**
 * Shrinks a failing fuzz program to a small one that still fails, greedily: simpler modes,
 * fewer outputs, nodes bypassed (uses redirected to an operand of the same type) or cut
 * (replaced by a fresh input with the node's range of values), smaller dimensions, simpler
 * parameters. A candidate is kept only when it still fails; candidates that are invalid or
 * ill-conditioned do not count.
 */
import * as mj from "../../mod.ts";
import { evaluate } from "../../src/interp/interpreter.ts";
import { checkProgram, type Mode, type Verdict } from "./check.ts";
import {
  build,
  compact,
  type Dim,
  type DT,
  live,
  type Op,
  operands,
  type Program,
  replaceUses,
  shapesOf,
} from "./program.ts";

export interface ShrinkOptions {
  /** Most candidate programs to run. */
  budget?: number;
  /** Wall-clock limit in milliseconds. */
  timeLimitMs?: number;
  log?: (msg: string) => void;
}

export interface Shrunk {
  program: Program;
  mode: Mode;
  verdict: Verdict & { status: "fail" };
  tried: number;
}

type Failure = Verdict & { status: "fail" };

/**
 * What kind of failure it is: a mismatch, or an exception of one class with one message head
 * (sizes and kernel names aside). Shrinking keeps the kind, so that it cannot drift from one bug
 * to another (or to an input the shrinking itself made invalid).
 */
export function failureKind(f: Failure): string {
  // "webgpu threw" or "native threw" (check.ts names the backend).
  if (!f.what.endsWith(" threw")) return "mismatch";
  const m = f.detail.match(/^(\w+): (.*)/);
  if (!m) return `threw ${f.detail.slice(0, 20)}`;
  const head = m[2].split(/\s+/).slice(0, 3).join(" ").replace(/\d+/g, "#");
  return `threw ${m[1]}: ${head}`;
}

/** Runs `p` in `mode`; the failure, or null when it passes, is ill-conditioned or invalid. */
async function failure(p: Program, mode: Mode, kind: string): Promise<Failure | null> {
  try {
    const v = await checkProgram(p, [mode]);
    return v.status === "fail" && failureKind(v) === kind ? v : null;
  } catch {
    return null;
  }
}

/** Greedily shrinks a program that fails in `mode` on WebGPU. */
export async function shrink(
  start: Program,
  startMode: Mode,
  first: Failure,
  opts: ShrinkOptions = {},
): Promise<Shrunk> {
  const budget = opts.budget ?? 250;
  const deadline = performance.now() + (opts.timeLimitMs ?? 120_000);
  let mode = startMode, verdict = first, tried = 0;
  const kind = failureKind(first);
  // Simpler modes first: they make every later run cheaper.
  for (const m of [{ ...mode, jit: false }, { ...mode, grads: false }, { ...mode, fusion: true }]) {
    if (JSON.stringify(m) === JSON.stringify(mode)) continue;
    tried++;
    const f = await failure(start, m, kind);
    if (f) [mode, verdict] = [m, f];
  }
  const r = await shrinkWith(start, async (q) => {
    const f = await failure(q, mode, kind);
    if (f) verdict = f;
    return !!f;
  }, { ...opts, budget: budget - tried, timeLimitMs: deadline - performance.now() });
  return { program: r.program, mode, verdict, tried: tried + r.tried };
}

/**
 * Greedily shrinks a program for which `fails` holds: each accepted candidate is smaller, and
 * the search restarts from it until no candidate fails or the budget is spent.
 */
export async function shrinkWith(
  start: Program,
  fails: (p: Program) => Promise<boolean>,
  opts: ShrinkOptions = {},
): Promise<{ program: Program; tried: number }> {
  const budget = opts.budget ?? 250;
  const deadline = performance.now() + (opts.timeLimitMs ?? 120_000);
  let p = compact(start), tried = 0;
  const out = () => performance.now() > deadline || tried >= budget;
  let progress = true;
  while (progress && !out()) {
    progress = false;
    for (const cand of candidates(p)) {
      if (out()) break;
      const q = compact(cand);
      if (JSON.stringify(q) === JSON.stringify(p)) continue;
      tried++;
      // A candidate the shrinking made invalid (a size no longer fits) does not fail.
      if (await Promise.resolve().then(() => fails(q)).catch(() => false)) {
        opts.log?.(`shrink: ${live(q).length} nodes, dims ${q.dims.join("/")}`);
        [p, progress] = [q, true];
        break;
      }
    }
  }
  return { program: p, tried };
}

/** Smaller programs than p, most promising first. */
function* candidates(p: Program): Generator<Program> {
  // Fewer outputs.
  if (p.outputs.length > 1) {
    for (const o of p.outputs) yield { ...p, outputs: p.outputs.filter((x) => x !== o) };
  }
  // An output's operand as the output instead (whatever its shape): the graph loses its tail.
  for (const o of p.outputs) {
    for (const s of new Set(operands(p.nodes[o]))) {
      yield { ...p, outputs: [...new Set(p.outputs.map((x) => (x === o ? s : x)))] };
    }
  }
  const info = shapesOf(p);
  const nodes = live(p).reverse();
  // Bypass a node: its users read one of its operands instead.
  for (const i of nodes) {
    for (const s of new Set(operands(p.nodes[i]))) {
      if (info[s].dtype === info[i].dtype && info[s].shape.join() === info[i].shape.join()) {
        yield replaceUses(p, i, s);
      }
    }
  }
  // Cut a node: a fresh input with its values' range takes its place.
  for (const i of nodes) {
    if (p.nodes[i].k === "input" || p.nodes[i].k === "index") continue;
    const cut = cutAt(p, i, info[i].shape, info[i].dtype);
    if (cut) yield cut;
  }
  // Smaller dimensions.
  for (let s = 0; s < p.dims.length; s++) {
    for (const d of smaller(p.dims[s])) {
      const dims = [...p.dims];
      dims[s] = d;
      yield { ...p, dims };
    }
  }
  for (const i of nodes) {
    const op = p.nodes[i];
    if (op.k !== "input" && op.k !== "index") continue;
    // One axis of one input alone (its size may come from a symbol other axes share).
    for (let a = 0; a < op.shape.length; a++) {
      for (const v of smaller(info[i].shape[a])) {
        const shape = [...op.shape];
        shape[a] = { lit: v };
        yield withNode(p, i, { ...op, shape });
      }
    }
  }
  // Simpler parameters.
  for (const i of nodes) {
    for (const op of simpler(p.nodes[i])) yield withNode(p, i, op);
  }
}

function withNode(p: Program, i: number, op: Op): Program {
  const nodes = [...p.nodes];
  nodes[i] = op;
  return { ...p, nodes };
}

function smaller(d: number): number[] {
  const c = [1, 2, 3, Math.ceil(d / 4), Math.ceil(d / 2), d - 1].filter((v) => v >= 1 && v < d);
  return [...new Set(c)].sort((a, b) => a - b);
}

function* simpler(op: Op): Generator<Op> {
  switch (op.k) {
    case "reduce":
      if (op.axes === null || op.axes.length > 1) {
        for (const a of op.axes ?? [0]) yield { ...op, axes: [a] };
      }
      if (op.keepdims) yield { ...op, keepdims: false };
      return;
    case "topk":
      if (op.kk > 1) yield { ...op, kk: 1 };
      return;
    case "cumsum":
      if (op.reverse) yield { ...op, reverse: false };
      if (op.exclusive) yield { ...op, exclusive: false };
      return;
    case "slice":
      if (op.from !== 0) yield { ...op, from: 0 };
      return;
    case "pad":
      if (op.pads.some(([a, b]) => a + b > 1)) {
        yield { ...op, pads: op.pads.map(([a, b]) => [Math.min(a, 1), Math.min(b, a ? 0 : 1)]) };
      }
      return;
    case "input":
      if (op.dtype === "f32" && !op.grad) yield { ...op, grad: true };
      return;
    case "concat":
    case "stack":
      if (op.xs.length > 2) yield { ...op, xs: op.xs.slice(0, 2) };
      return;
  }
}

/** Node i replaced by a fresh input of the same shape and dtype, over the same range of values. */
function cutAt(p: Program, i: number, shape: number[], dtype: DT): Program | null {
  mj.setBackend("cpu");
  let v: ArrayLike<number>;
  try {
    const ts = build(p, (_j, d) => mj.tensor(d.data, d.shape, { dtype: d.dtype }));
    [v] = evaluate([ts[i].node]) as ArrayLike<number>[];
  } catch {
    return null;
  }
  let lo = Infinity, hi = -Infinity;
  for (let k = 0; k < v.length; k++) {
    lo = Math.min(lo, Number(v[k]));
    hi = Math.max(hi, Number(v[k]));
  }
  if (!(lo <= hi)) [lo, hi] = [0, 1];
  // Four digits are enough for a range and read better in the snippet.
  if (dtype === "f32") [lo, hi] = [Number(lo.toPrecision(4)), Number(hi.toPrecision(4))];
  const dims: Dim[] = shape.map((d) => ({ lit: d }));
  const seed = 900_000 + i;
  const op: Op = dtype === "f32"
    ? { k: "input", dtype, shape: dims, lo, hi: hi > lo ? hi : lo + 1, seed, grad: true }
    : dtype === "i32"
    ? { k: "input", dtype, shape: dims, lo, hi, seed, grad: false }
    : { k: "input", dtype, shape: dims, lo: 0, hi: 0.5, seed, grad: false };
  return withNode(p, i, op);
}
