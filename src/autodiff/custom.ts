/**
 * Custom VJPs: one call registers a forward and its backward. The forward's outputs are wrapped
 * in `custom` nodes whose sources are [output, ...tensor inputs, ...saved residuals]; autodiff
 * never differentiates the forward body, it calls the registered backward instead.
 */
import { fail, formatValue } from "../errors.ts";
import { toposort } from "../ir/graph.ts";
import { argText, contentHash, makeNode, type Node, onCreate } from "../ir/node.ts";
import type { OpArgs } from "../ir/ops.ts";
import type { DType } from "../dtype.ts";
import type { Shape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { flatten } from "./tree.ts";

export interface CustomVjpSpec<A extends unknown[], O> {
  /** Stable, unique name: part of cache keys (closures are not hashable). */
  name: string;
  /** The forward. Return `{ out, saved }` to hand residuals to `bwd`, or just the output. */
  fwd: (...xs: A) => O | { out: O; saved?: Tensor[] };
  /**
   * The backward: given the residuals, the output gradient (same structure as the output;
   * zeros for unused outputs) and the original arguments, one gradient per argument (null for
   * none; non-tensor arguments must get null).
   */
  bwd: (saved: Tensor[], gOut: O, xs: A) => readonly unknown[];
  /**
   * True when `bwd` is deliberately not the forward's gradient (a gradient estimator). The
   * graph records it, so `mj.debug.estimators` can tell where a gradient is an estimate (and a
   * finite-difference check of it would fail by design).
   */
  estimator?: boolean;
}

/** A custom node's call: its arguments (tensors taken from the node's sources) and outputs. */
export interface CallRecord {
  name: string;
  spec: CustomVjpSpec<unknown[], unknown>;
  xs: unknown[];
  rebuildOut: (leaves: readonly unknown[]) => unknown;
  outs: { shape: Shape; dtype: DType }[];
  saved: Node[];
}

/**
 * What a call's nodes do not carry in their sources: the argument tree with its static leaves,
 * and the output tree. It holds no graph nodes, so graphs rewritten over new sources (mj.grad
 * unwrapping its argument markers, legalization passes) share it with the original call.
 */
interface CallShape {
  name: string;
  /**
   * The spec of the customVjp that made the call. Re-registering a name with the same source is
   * allowed, but closures may capture different values: each call keeps its own backward.
   */
  spec: CustomVjpSpec<unknown[], unknown>;
  /** The flattened argument list, with null in place of each tensor leaf. */
  argLeaves: unknown[];
  isTensor: boolean[];
  rebuildArgs: (leaves: readonly unknown[]) => unknown;
  rebuildOut: (leaves: readonly unknown[]) => unknown;
  outs: { shape: Shape; dtype: DType }[];
}

interface Registered {
  source: string;
  spec: CustomVjpSpec<unknown[], unknown>;
}

const registry = new Map<string, Registered>();
const shapes = new WeakMap<Node, CallShape>();
const records = new WeakMap<Node, CallRecord>();

// Any custom node, including one rebuilt by a graph rewrite, finds its call through its group;
// the entry lives as long as some node of the group does.
const byGroup = new Map<string, WeakRef<CallShape>>();
const groupGc = new FinalizationRegistry<string>((group) => {
  if (byGroup.get(group)?.deref() === undefined) byGroup.delete(group);
});
onCreate("custom", (n) => {
  const shape = byGroup.get((n.arg as OpArgs["custom"]).group)?.deref();
  if (shape) shapes.set(n, shape);
});

/** The call a custom node belongs to, over the node's own sources. */
export function callRecord(n: Node): CallRecord {
  const cached = records.get(n);
  if (cached) return cached;
  const shape = shapes.get(n);
  if (!shape) throw new Error(`internal: custom node ${n.key} has no call record`);
  const a = n.arg as OpArgs["custom"];
  const inputs = n.src.slice(1, 1 + a.nIn);
  let k = 0;
  const leaves = shape.argLeaves.map((l, i) => (shape.isTensor[i] ? new Tensor(inputs[k++]) : l));
  const r: CallRecord = {
    name: shape.name,
    spec: shape.spec,
    xs: shape.rebuildArgs(leaves) as unknown[],
    rebuildOut: shape.rebuildOut,
    outs: shape.outs,
    saved: n.src.slice(1 + a.nIn),
  };
  records.set(n, r);
  return r;
}

function splitResult<O>(r: O | { out: O; saved?: Tensor[] }): { out: O; saved: Tensor[] } {
  if (r && typeof r === "object" && !(r instanceof Tensor) && !Array.isArray(r) && "out" in r) {
    const keys = Object.keys(r);
    if (keys.every((k) => k === "out" || k === "saved")) {
      const s = r as { out: O; saved?: Tensor[] };
      return { out: s.out, saved: s.saved ?? [] };
    }
  }
  return { out: r as O, saved: [] };
}

/**
 * Registers a forward with its own backward rule and returns the differentiable function.
 *
 * @example
 * ```ts
 * // Straight-through sign: forward is sign(x), backward passes the gradient unchanged.
 * const steSign = mj.customVjp({
 *   name: "ste.sign",
 *   fwd: (x: mj.Tensor) => x.sign(),
 *   bwd: (_saved, g) => [g],
 *   estimator: true,
 * });
 * const g = mj.grad((x: mj.Tensor) => steSign(x).sum())(mj.tensor([-2, 3]));
 * ```
 */
export function customVjp<A extends unknown[], O>(
  spec: CustomVjpSpec<A, O>,
): (...xs: A) => O {
  if (!spec || typeof spec !== "object") fail("customVjp", "expected a spec object");
  const known = new Set(["name", "fwd", "bwd", "estimator"]);
  for (const k of Object.keys(spec)) {
    if (!known.has(k)) {
      fail("customVjp", `unknown option ${formatValue(k)}; expected name, fwd, bwd, estimator`);
    }
  }
  if (typeof spec.name !== "string" || !spec.name) {
    fail("customVjp", "expected a non-empty string name");
  }
  if (typeof spec.fwd !== "function" || typeof spec.bwd !== "function") {
    fail("customVjp", `${spec.name}: fwd and bwd must be functions`);
  }
  const source = `${spec.fwd}\n${spec.bwd}\n${!!spec.estimator}`;
  const prev = registry.get(spec.name);
  if (prev && prev.source !== source) {
    fail(
      "customVjp",
      `the name ${formatValue(spec.name)} is already registered with a different fwd/bwd; ` +
        `names are part of cache keys and must be unique`,
    );
  }
  registry.set(spec.name, { source, spec: spec as unknown as CustomVjpSpec<unknown[], unknown> });
  const name = spec.name;

  return (...xs: A): O => {
    const inFlat = flatten(xs);
    const inputs = inFlat.leaves.filter((l): l is Tensor => l instanceof Tensor);
    const statics = argText(
      inFlat.leaves.map((l) => (l instanceof Tensor ? null : typeof l === "function" ? "fn" : l)),
    );
    const { out, saved } = splitResult(spec.fwd(...xs));
    const outFlat = flatten(out);
    const outTensors = outFlat.leaves.map((l, i) => {
      if (!(l instanceof Tensor)) {
        fail("customVjp", `${name}: fwd output ${outFlat.paths[i] || "(root)"} is not a Tensor`);
      }
      return l;
    });
    if (!outTensors.length) fail("customVjp", `${name}: fwd returned no tensors`);
    for (const s of saved) {
      if (!(s instanceof Tensor)) {
        fail("customVjp", `${name}: every saved residual must be a Tensor`);
      }
    }
    checkNoCapture(name, inputs, [...outTensors, ...saved]);
    const group = contentHash(
      `${name}|${statics}|${outTensors.map((t) => t.node.key).join(",")}|${
        inputs.map((t) => t.node.key).join(",")
      }`,
    );
    let shape = byGroup.get(group)?.deref();
    if (!shape) {
      const isTensor = inFlat.leaves.map((l) => l instanceof Tensor);
      shape = {
        name,
        spec: spec as unknown as CustomVjpSpec<unknown[], unknown>,
        argLeaves: inFlat.leaves.map((l, i) => (isTensor[i] ? null : l)),
        isTensor,
        rebuildArgs: inFlat.rebuild,
        rebuildOut: outFlat.rebuild,
        outs: outTensors.map((t) => ({ shape: t.shape, dtype: t.dtype })),
      };
      byGroup.set(group, new WeakRef(shape));
      groupGc.register(shape, group);
    }
    const savedNodes = saved.map((t) => t.node);
    const wrapped = outTensors.map((t, index) => {
      const node = makeNode("custom", [t.node, ...inputs.map((x) => x.node), ...savedNodes], {
        name,
        index,
        nOut: outTensors.length,
        nIn: inputs.length,
        nSaved: savedNodes.length,
        group,
        estimator: !!spec.estimator,
      });
      if (!shapes.has(node)) shapes.set(node, shape);
      return new Tensor(node);
    });
    return outFlat.rebuild(wrapped) as O;
  };
}

/** A differentiated value reached without going through an argument would lose its gradient. */
function checkNoCapture(name: string, inputs: Tensor[], outs: Tensor[]): void {
  const inputNodes = new Set(inputs.map((t) => t.node));
  const order = toposort(outs.map((t) => t.node), (n) => inputNodes.has(n));
  let ancestors: Set<Node> | null = null;
  for (const n of order) {
    if (inputNodes.has(n)) continue;
    if (n.op === "arg" || n.op === "param") {
      // Simplifications (a reshape of a reshape) may reach below an input to its own sources;
      // only a differentiated value that no input depends on is really captured. This walk
      // runs only when something suspicious turned up.
      ancestors ??= new Set(toposort([...inputNodes]));
      if (ancestors.has(n)) continue;
      fail(
        "customVjp",
        `${name}: fwd uses a tensor (${n.dtype}[${n.shape}]) that is not one of its arguments; ` +
          `pass it as an argument so that it receives a gradient`,
      );
    }
  }
}
