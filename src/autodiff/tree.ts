/**
 * Parameter trees: nested arrays and plain objects whose leaves are tensors (or anything else).
 * Flattening is deterministic (arrays in order, object keys in insertion order).
 */
import { Tensor } from "../tensor.ts";

export interface Flat {
  leaves: unknown[];
  /** Dotted paths of the leaves, e.g. "layers.0.w". */
  paths: string[];
  rebuild(leaves: readonly unknown[]): unknown;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== "object") return false;
  const p = Object.getPrototypeOf(x);
  return p === Object.prototype || p === null;
}

/** Splits a tree into its leaves and a function that rebuilds the same structure. */
export function flatten(tree: unknown): Flat {
  const leaves: unknown[] = [];
  const paths: string[] = [];
  type Skel = { kind: "leaf" } | { kind: "array"; items: Skel[] } | {
    kind: "object";
    keys: string[];
    items: Skel[];
  };
  const walk = (x: unknown, path: string): Skel => {
    if (Array.isArray(x)) {
      return { kind: "array", items: x.map((v, i) => walk(v, path ? `${path}.${i}` : `${i}`)) };
    }
    if (isPlainObject(x) && !(x instanceof Tensor)) {
      const keys = Object.keys(x);
      return {
        kind: "object",
        keys,
        items: keys.map((k) => walk(x[k], path ? `${path}.${k}` : k)),
      };
    }
    leaves.push(x);
    paths.push(path);
    return { kind: "leaf" };
  };
  const skel = walk(tree, "");
  const rebuild = (vals: readonly unknown[]): unknown => {
    let i = 0;
    const build = (s: Skel): unknown => {
      if (s.kind === "leaf") return vals[i++];
      if (s.kind === "array") return s.items.map(build);
      const o: Record<string, unknown> = {};
      s.keys.forEach((k, j) => (o[k] = build(s.items[j])));
      return o;
    };
    return build(skel);
  };
  return { leaves, paths, rebuild };
}

/** The tensors of a tree, in flatten order. */
export function treeTensors(tree: unknown): Tensor[] {
  return flatten(tree).leaves.filter((l): l is Tensor => l instanceof Tensor);
}

/** Applies `f` to every tensor leaf of a tree. */
export function mapTensors(tree: unknown, f: (t: Tensor, path: string) => unknown): unknown {
  const { leaves, paths, rebuild } = flatten(tree);
  return rebuild(leaves.map((l, i) => (l instanceof Tensor ? f(l, paths[i]) : l)));
}
