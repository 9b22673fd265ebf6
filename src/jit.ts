/**
 * Compiled steps: `mj.jit(fn)` traces `fn` once per signature (tree structure, shapes, dtypes,
 * backend, fusion) over placeholder inputs, compiles the graph, and replays it. Numbers passed
 * as arguments become runtime scalars (so a changing learning rate compiles nothing new).
 */
import { type Backend, backendName, getBackend, type Prepared } from "./backend.ts";
import { flatten } from "./autodiff/tree.ts";
import { argText, makeNode, type Node } from "./ir/node.ts";
import { newBufferNode } from "./ir/values.ts";
import { fail } from "./errors.ts";
import { Tensor } from "./tensor.ts";
import { fusionEnabled } from "./backend.ts";
import { numericsChecked } from "./numerics.ts";

interface Entry {
  params: Node[];
  /** For each argument leaf: the param slot it binds, or -1 for static leaves. */
  leafSlots: number[];
  rebuildOut: (leaves: readonly unknown[]) => unknown;
  outLeaves: unknown[];
  /** Indices of tensor leaves among outLeaves, aligned with prepared roots. */
  tensorOut: number[];
  prepared: Promise<Prepared>;
}

/** Options for `jit`. */
export interface JitOptions {
  /** A name for debug output. */
  name?: string;
}

/**
 * Compiles `fn` into a step that runs as one submission, and returns its outputs as tensors
 * holding device values. `fn` may take and return tensors, numbers and nested arrays/objects
 * of them (parameter trees). Tensors it closes over are constants of the compiled step; pass
 * values that change as arguments.
 *
 * @example
 * ```ts
 * const step = mj.jit((w: mj.Tensor, x: mj.Tensor, lr: number) => {
 *   const [g] = mj.grad((w: mj.Tensor) => x.matmul(w).square().mean())(w);
 *   return w.sub(g.mul(lr));
 * });
 * w = await step(w, x, 0.1); // compiles
 * w = await step(w, x, 0.05); // replays: no new pipelines
 * ```
 */
export function jit<A extends unknown[], R>(
  fn: (...args: A) => R,
  opts: JitOptions = {},
): (...args: A) => Promise<R> {
  if (typeof fn !== "function") fail("jit", `expected a function, got ${typeof fn}`);
  for (const k of Object.keys(opts)) {
    if (k !== "name") fail("jit", `unknown option ${JSON.stringify(k)}; expected name`);
  }
  const cache = new Map<string, Entry>();
  return async (...args: A): Promise<R> => {
    const backend = await getBackend();
    const flat = flatten(args);
    const sig: string[] = [
      await backendName(),
      fusionEnabled() ? "F" : "U",
      numericsChecked() ? "N" : "",
      flat.paths.join("|"),
    ];
    for (const l of flat.leaves) {
      if (l instanceof Tensor) sig.push(`T${l.dtype}[${l.shape}]`);
      else if (typeof l === "number") sig.push("N");
      else if (l === undefined) sig.push("U");
      else if (typeof l === "function") fail("jit", "arguments must not be functions");
      else sig.push(`S${argText(l)}`);
    }
    const key = sig.join(";");
    let entry = cache.get(key);
    if (!entry) {
      entry = trace(fn, flat.leaves, flat.rebuild, backend);
      cache.set(key, entry);
    }
    const prepared = await entry.prepared;
    // Bind: tensors must be values (materialize lazy ones), numbers become scalar leaves.
    const lazy: Tensor[] = [];
    flat.leaves.forEach((l, i) => {
      if (entry!.leafSlots[i] >= 0 && l instanceof Tensor) lazy.push(l);
    });
    const values = await backend.materialize(lazy.map((t) => t.node));
    const argNodes: Node[] = new Array(entry.params.length);
    let v = 0;
    flat.leaves.forEach((l, i) => {
      const slot = entry!.leafSlots[i];
      if (slot < 0) return;
      argNodes[slot] = l instanceof Tensor
        ? values[v++]
        : newBufferNode([], "f32", Float32Array.of(l as number));
    });
    const outs = await backend.run(prepared, argNodes);
    const leaves = [...entry.outLeaves];
    entry.tensorOut.forEach((li, j) => (leaves[li] = new Tensor(outs[j])));
    return entry.rebuildOut(leaves) as R;
  };
}

function trace(
  fn: (...args: never[]) => unknown,
  leaves: unknown[],
  rebuild: (l: readonly unknown[]) => unknown,
  backend: Backend,
): Entry {
  const params: Node[] = [];
  const leafSlots: number[] = [];
  const placeholders = leaves.map((l) => {
    if (l instanceof Tensor || typeof l === "number") {
      const shape = l instanceof Tensor ? l.shape : [];
      const dtype = l instanceof Tensor ? l.dtype : "f32";
      const p = makeNode("param", [], { slot: params.length, shape, dtype });
      leafSlots.push(params.length);
      params.push(p);
      return new Tensor(p);
    }
    leafSlots.push(-1);
    return l;
  });
  const out = fn(...(rebuild(placeholders) as never[]));
  if (out instanceof Promise) {
    fail("jit", "the function must be synchronous (it is traced, not awaited)");
  }
  const of = flatten(out);
  const tensorOut: number[] = [];
  const roots: Node[] = [];
  of.leaves.forEach((l, i) => {
    if (l instanceof Tensor) {
      tensorOut.push(i);
      roots.push(l.node);
    }
  });
  return {
    params,
    leafSlots,
    rebuildOut: of.rebuild,
    outLeaves: of.leaves,
    tensorOut,
    prepared: backend.prepare(roots, params),
  };
}
