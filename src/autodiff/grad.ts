/**
 * Reverse-mode autodiff on the lazy graph: a reverse sweep that applies the VJP rule table, calls
 * custom backward rules, and accumulates. The result is more graph, so forward and backward are
 * scheduled and fused together.
 */
import { isFloat } from "../dtype.ts";
import { fail, formatValue } from "../errors.ts";
import { toposort } from "../ir/graph.ts";
import { makeNode, type Node } from "../ir/node.ts";
import { indexCheckLabel, labelIndexCheck } from "../ir/checks.ts";
import { copySite } from "../numerics.ts";
import type { OpArgs, OpName } from "../ir/ops.ts";
import { add } from "../ops/elementwise.ts";
import { constant, describe } from "../ops/prim.ts";
import { fmtShape, shapeEq } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { callRecord } from "./custom.ts";
import { flatten, mapTensors, treeTensors } from "./tree.ts";
import { VJP_RULES, type VjpRule } from "./vjp.ts";

/**
 * Gradients of `root` (any shape) with respect to `wrt`, seeded with `seed` (same shape as
 * root). Entries are null where `root` does not depend on the node.
 */
export function backward(root: Node, seed: Tensor, wrt: readonly Node[]): (Tensor | null)[] {
  const order = toposort([root]);
  const targets = new Set(wrt);
  // Only nodes on a path to a target need gradients.
  const relevant = new Set<Node>();
  for (const n of order) {
    if (targets.has(n) || n.src.some((s) => relevant.has(s))) relevant.add(n);
  }
  const grads = new Map<Node, Tensor>();
  const accumulate = (n: Node, g: Tensor | null) => {
    if (!g || !relevant.has(n)) return;
    if (!shapeEq(g.shape, n.shape)) {
      throw new Error(
        `internal: gradient ${fmtShape(g.shape)} for node ${n.op}${fmtShape(n.shape)}`,
      );
    }
    const prev = grads.get(n);
    grads.set(n, prev ? add(prev, g) : g);
  };
  accumulate(root, seed);

  // Custom calls: their backward runs once, when the last of their outputs has its gradient.
  const pending = new Map<string, { left: number; g: (Tensor | null)[] }>();
  for (const n of order) {
    if (n.op !== "custom" || !relevant.has(n)) continue;
    const call = callKey(n);
    const p = pending.get(call) ??
      { left: 0, g: new Array((n.arg as OpArgs["custom"]).nOut).fill(null) };
    p.left++;
    pending.set(call, p);
  }

  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    if (!relevant.has(n)) continue;
    const g = grads.get(n);
    if (n.op === "custom") {
      const a = n.arg as OpArgs["custom"];
      const p = pending.get(callKey(n))!;
      // Two nodes can stand for one output: a rewrite of the forward body alone keeps the key.
      if (g) p.g[a.index] = p.g[a.index] ? add(p.g[a.index]!, g) : g;
      if (--p.left === 0) runCustomBackward(n, p.g, accumulate);
      continue;
    }
    if (!g) continue;
    const rule = VJP_RULES[n.op] as VjpRule<OpName>;
    const srcGrads = rule(g, n, n.src.map((s) => new Tensor(s)), new Tensor(n));
    n.src.forEach((s, j) => accumulate(s, srcGrads[j] ?? null));
  }
  return wrt.map((w) => grads.get(w) ?? null);
}

/**
 * The outputs of one custom call: same group (name, statics, forward) and same inputs and
 * residuals. A rewritten copy of a call keeps its group but not its sources, and is another call.
 */
function callKey(n: Node): string {
  return `${(n.arg as OpArgs["custom"]).group}|${n.src.slice(1).map((s) => s.key).join(",")}`;
}

function runCustomBackward(
  n: Node,
  outGrads: (Tensor | null)[],
  accumulate: (n: Node, g: Tensor | null) => void,
): void {
  const a = n.arg as OpArgs["custom"];
  const rec = callRecord(n);
  const spec = rec.spec;
  const gOut = rec.rebuildOut(
    outGrads.map((g, i) => g ?? constant(0, rec.outs[i].shape, rec.outs[i].dtype)),
  );
  const saved = rec.saved.map((s) => new Tensor(s));
  const res = spec.bwd(saved, gOut, rec.xs);
  if (!Array.isArray(res) || res.length !== rec.xs.length) {
    fail(
      "customVjp",
      `${a.name}: bwd must return an array with one gradient per argument (${rec.xs.length}), ` +
        `got ${Array.isArray(res) ? `${res.length} entries` : typeof res}`,
    );
  }
  // Align the returned per-argument trees with the tensor inputs (sources 1..nIn).
  const inputs = n.src.slice(1, 1 + a.nIn);
  let k = 0;
  rec.xs.forEach((x, argIndex) => {
    const xf = flatten(x);
    const r = res[argIndex];
    const rf = r === null || r === undefined ? null : flatten(r);
    xf.leaves.forEach((leaf, j) => {
      if (!(leaf instanceof Tensor)) return;
      const input = inputs[k++];
      const gi = rf ? rf.leaves[j] : null;
      if (gi === null || gi === undefined) return;
      if (!(gi instanceof Tensor) || !shapeEq(gi.shape, leaf.shape) || gi.dtype !== leaf.dtype) {
        fail(
          "customVjp",
          `${a.name}: bwd returned ${
            gi instanceof Tensor ? describe(gi) : typeof gi
          } for argument ` +
            `${argIndex}${xf.paths[j] ? `.${xf.paths[j]}` : ""}, expected ${describe(leaf)}`,
        );
      }
      accumulate(input, gi);
    });
  });
}

/**
 * Rewrites the graphs of `roots` with `map` applied to their nodes (sources first), returning
 * the lookup from old to new nodes. Nodes that reach no mapped node are kept as they are. What
 * lives beside the graph follows each rebuilt node (an index check's op name, axis and call
 * site; the call site the numerics check reports), so that errors raised by the unwrapped graph
 * still name the op the user called and where. The mapped nodes' own targets keep theirs.
 */
function substitute(roots: readonly Node[], map: ReadonlyMap<Node, Node>): (n: Node) => Node {
  const out = new Map<Node, Node>(map);
  for (const n of toposort(roots)) {
    if (out.has(n)) continue;
    const src = n.src.map((s) => out.get(s) ?? s);
    if (src.every((s, i) => s === n.src[i])) {
      out.set(n, n);
      continue;
    }
    const m = makeNode(n.op, src, n.arg as never);
    if (n.op === "checkIndex") labelIndexCheck(m, indexCheckLabel(n), true);
    copySite(n, m);
    out.set(n, m);
  }
  return (n) => out.get(n) ?? n;
}

let level = 0;

export interface GradOptions {
  /** f returns `[loss, aux]`; aux is returned alongside and not differentiated. */
  hasAux?: boolean;
}

/** The gradient of a value of type T: tensors map to tensors, other leaves to null. */
export type GradOf<T> = T extends Tensor ? Tensor
  : T extends readonly unknown[] ? { [K in keyof T]: GradOf<T[K]> }
  : T extends (...a: never[]) => unknown ? null
  : T extends object ? { [K in keyof T]: GradOf<T[K]> }
  : null;

/** Gradients for an argument list: one entry per argument, of the same structure. */
export type Grads<A extends unknown[]> = { [K in keyof A]: GradOf<A[K]> };

/**
 * Returns a function computing `[value, grads]` of `f`: `value` is f's scalar result and `grads`
 * has the structure of the arguments, with a gradient in place of every float tensor (null for
 * everything else). Arguments may be nested arrays/objects of tensors (parameter trees). With
 * `{ hasAux: true }`, f returns `[loss, aux]` and the function returns `[loss, grads, aux]`.
 *
 * @example
 * ```ts
 * const f = (p: { w: mj.Tensor }, x: mj.Tensor) => x.matmul(p.w).square().mean();
 * const [loss, [gp]] = mj.valueAndGrad(f)({ w }, x);
 * await gp.w.data();
 * ```
 */
export function valueAndGrad<A extends unknown[]>(
  f: (...args: A) => Tensor,
  opts?: { hasAux?: false },
): (...args: A) => [Tensor, Grads<A>];
export function valueAndGrad<A extends unknown[], X>(
  f: (...args: A) => readonly [Tensor, X],
  opts: { hasAux: true },
): (...args: A) => [Tensor, Grads<A>, X];
export function valueAndGrad<A extends unknown[]>(
  f: (...args: A) => unknown,
  opts: GradOptions = {},
): (...args: A) => unknown {
  if (typeof f !== "function") fail("valueAndGrad", `expected a function, got ${typeof f}`);
  for (const k of Object.keys(opts)) {
    if (k !== "hasAux") {
      fail("valueAndGrad", `unknown option ${formatValue(k)}; expected hasAux`);
    }
  }
  return (...args: A) => {
    const lvl = level++;
    try {
      const flat = flatten(args);
      const markers: (Node | null)[] = [];
      const wrapped = flat.leaves.map((leaf, i) => {
        if (!(leaf instanceof Tensor) || !isFloat(leaf.dtype)) {
          markers.push(null);
          return leaf;
        }
        // A distinct identity node per argument position: gradients are per argument even if
        // two arguments are the same tensor, and unaffected by equal constants inside f.
        const m = makeNode("arg", [leaf.node], { level: lvl, path: flat.paths[i] });
        markers.push(m);
        return new Tensor(m);
      });
      const result = f(...(flat.rebuild(wrapped) as A));
      let loss: unknown = result, aux: unknown = undefined;
      if (opts.hasAux) {
        if (!Array.isArray(result) || result.length !== 2) {
          fail("valueAndGrad", `with hasAux, f must return [loss, aux], got ${typeof result}`);
        }
        [loss, aux] = result;
      }
      if (!(loss instanceof Tensor)) {
        fail("grad", `f must return a scalar Tensor, got ${loss === null ? "null" : typeof loss}`);
      }
      if (loss.size !== 1 || !isFloat(loss.dtype)) {
        fail(
          "grad",
          `f must return a scalar float Tensor (shape [] or one element), got ${describe(loss)}; ` +
            `reduce it first, e.g. .sum() or .mean()`,
        );
      }
      const seed = constant(1, loss.shape, loss.dtype);
      const live = markers.filter((m): m is Node => m !== null);
      const gs = backward(loss.node, seed, live);
      const byMarker = new Map<Node, Tensor | null>(live.map((m, i) => [m, gs[i]]));
      const gradLeaves = markers.map((m) =>
        m === null ? null : byMarker.get(m) ?? constant(0, m.shape, m.dtype)
      );
      // Markers are keyed by (level, path) so that retracing a step gives the same graph; a
      // later call over the same tensor therefore gets the very same marker nodes. Whatever is
      // handed back must not contain them, or a gradient kept from this call and used inside
      // the next one would be differentiated as a function of the next call's arguments.
      const unwrap = substitute(
        [
          loss.node,
          ...gs.filter((g): g is Tensor => g !== null).map((g) => g.node),
          ...(opts.hasAux ? treeTensors(aux).map((t) => t.node) : []),
        ],
        new Map(live.map((m) => [m, m.src[0]])),
      );
      const out = (t: Tensor) => {
        const n = unwrap(t.node);
        return n === t.node ? t : new Tensor(n);
      };
      const grads = flat.rebuild(gradLeaves.map((g) => g && out(g))) as unknown[];
      const value = out(loss);
      return opts.hasAux ? [value, grads, mapTensors(aux, out)] : [value, grads];
    } finally {
      level--;
    }
  };
}

/**
 * Returns a function computing the gradients of scalar-valued `f` with respect to each argument
 * (an array with one entry per argument, of the same structure).
 *
 * @example
 * ```ts
 * const [dx] = mj.grad((x: mj.Tensor) => x.square().sum())(mj.tensor([1, 2, 3]));
 * await dx.data(); // [2, 4, 6]
 * ```
 */
export function grad<A extends unknown[]>(f: (...args: A) => Tensor): (...args: A) => Grads<A> {
  const vg = valueAndGrad(f);
  return (...args: A) => vg(...args)[1];
}
