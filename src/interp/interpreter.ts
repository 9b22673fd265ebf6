/**
 * The reference interpreter: evaluates a graph op by op on typed arrays. It is the `cpu`
 * backend and the oracle every WGSL kernel is tested against.
 */
import type { TypedArray } from "../dtype.ts";
import { toposort } from "../ir/graph.ts";
import type { Node } from "../ir/node.ts";
import type { OpName } from "../ir/ops.ts";
import { type EvalContext, type Kernel, KERNELS } from "./kernels.ts";

export interface EvaluateOptions {
  /** Hold f32 values in float64 (for finite-difference checks). */
  wide?: boolean;
  /** Values known before evaluation (params of a step, cached results); evaluation stops there. */
  bound?: (n: Node) => TypedArray | undefined;
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
  for (const n of order) {
    const pre = known.get(n);
    if (pre) {
      values.set(n, widen(pre, n, wide));
      continue;
    }
    const inputs = n.src.map((s) => values.get(s)!);
    const kernel = KERNELS[n.op] as Kernel<OpName>;
    values.set(n, kernel(n, inputs, ctx));
    for (const s of n.src) {
      const left = uses.get(s)! - 1;
      uses.set(s, left);
      if (left === 0 && !rootSet.has(s)) values.delete(s);
    }
  }
  return roots.map((r) => values.get(r)!);
}
