/**
 * The reference interpreter: evaluates a graph op by op on typed arrays. It is the `cpu`
 * backend and the oracle every WGSL kernel is tested against.
 */
import type { TypedArray } from "../dtype.ts";
import { toposort } from "../ir/graph.ts";
import type { Node } from "../ir/node.ts";
import type { OpName } from "../ir/ops.ts";
import { type EvalContext, type Kernel, KERNELS } from "./kernels.ts";
import { checkHostAllocation, describeValue } from "../memory.ts";
import { NumericsTracker, scanHost } from "../numerics.ts";

export interface EvaluateOptions {
  /** Hold f32 values in float64 (for finite-difference checks). */
  wide?: boolean;
  /** Values known before evaluation (params of a step, cached results); evaluation stops there. */
  bound?: (n: Node) => TypedArray | undefined;
  /** Raise the first op that produces NaN or an infinity (mj.debug.checkNumerics). */
  checkNumerics?: boolean;
}

function widen(v: TypedArray, n: Node, wide: boolean): TypedArray {
  if (wide && n.dtype === "f32" && !(v instanceof Float64Array)) return Float64Array.from(v);
  if (!wide && v instanceof Float64Array) return Float32Array.from(v);
  return v;
}

/**
 * Evaluates `roots` and returns their values (row-major; do not mutate them, they may be shared
 * with the caller's bindings).
 *
 * @example
 * ```ts
 * const [v] = evaluate([mj.tensor([1, 2]).mul(3).node]); // Float32Array [3, 6]
 * ```
 */
export function evaluate(roots: readonly Node[], opts: EvaluateOptions = {}): TypedArray[] {
  const wide = !!opts.wide;
  const ctx: EvalContext = { wide };
  const bound = (n: Node): TypedArray | undefined => {
    const b = opts.bound?.(n);
    if (b) return b;
    if (n.op === "buffer" && n.host) return n.host;
    return undefined;
  };
  const known = new Map<Node, TypedArray>();
  const order = toposort(roots, (n) => {
    if (known.has(n)) return true;
    const b = bound(n);
    if (b) known.set(n, b);
    return b !== undefined;
  });
  const uses = new Map<Node, number>();
  for (const n of order) {
    if (known.has(n)) continue;
    for (const s of n.src) uses.set(s, (uses.get(s) ?? 0) + 1);
  }
  const rootSet = new Set(roots);
  const values = new Map<Node, TypedArray>();
  const numerics = opts.checkNumerics ? new NumericsTracker() : null;
  const track = (n: Node, v: TypedArray) => {
    if (!numerics || n.dtype !== "f32") return;
    const { flags, first } = scanHost(v);
    numerics.seen(n, flags, first);
  };
  for (const n of order) {
    const pre = known.get(n);
    if (pre) {
      values.set(n, widen(pre, n, wide));
      track(n, pre);
      continue;
    }
    const inputs = n.src.map((s) => values.get(s)!);
    const itemBytes = wide && n.dtype === "f32" ? 8 : n.dtype === "bool" ? 1 : 4;
    if (n.size * itemBytes > 2 ** 24) {
      const root = roots[0];
      const value = `${n.op} ${describeValue(n.dtype, n.shape)}`;
      checkHostAllocation(
        root.op,
        rootSet.has(n)
          ? `the result ${value}`
          : `the intermediate ${value} of ${root.op} ${describeValue(root.dtype, root.shape)}`,
        n.size * itemBytes,
      );
    }
    const kernel = KERNELS[n.op] as Kernel<OpName>;
    const value = kernel(n, inputs, ctx);
    values.set(n, value);
    // Constants are non-finite on purpose (masks); what they lead to is judged downstream.
    if (n.op !== "const") track(n, value);
    for (const s of n.src) {
      const left = uses.get(s)! - 1;
      uses.set(s, left);
      if (left === 0 && !rootSet.has(s)) values.delete(s);
    }
  }
  return roots.map((r) => values.get(r)!);
}
