/**
 * Backend selection and realization. A backend turns graph nodes into host values; the `cpu`
 * backend is the reference interpreter, `webgpu` compiles kernels.
 */
import type { TypedArray } from "./dtype.ts";
import { fail } from "./errors.ts";
import type { Node } from "./ir/node.ts";
import { evaluate } from "./interp/interpreter.ts";

export type BackendName = "cpu" | "webgpu";

export interface Backend {
  readonly name: BackendName;
  /** Computes the nodes' values; the returned arrays are the caller's to keep. */
  realize(nodes: readonly Node[]): Promise<TypedArray[]>;
}

/** The interpreter as a backend, caching realized values per node. */
export class CpuBackend implements Backend {
  readonly name = "cpu" as const;
  #cache = new WeakMap<Node, TypedArray>();

  realize(nodes: readonly Node[]): Promise<TypedArray[]> {
    const missing = nodes.filter((n) => !this.#cache.has(n));
    if (missing.length) {
      const vals = evaluate(missing, { bound: (n) => this.#cache.get(n) });
      missing.forEach((n, i) => this.#cache.set(n, vals[i]));
    }
    return Promise.resolve(nodes.map((n) => this.#cache.get(n)!.slice()));
  }
}

const factories = new Map<BackendName, () => Backend>([["cpu", () => new CpuBackend()]]);
const instances = new Map<BackendName, Backend>();
let current: BackendName = "cpu";

/** Makes a backend available to `setBackend` (the WebGPU runtime registers itself). */
export function registerBackend(name: BackendName, factory: () => Backend): void {
  factories.set(name, factory);
  instances.delete(name);
}

/**
 * Chooses where tensors are computed: `"webgpu"` (generated WGSL kernels) or `"cpu"` (the
 * reference interpreter).
 *
 * @example
 * ```ts
 * mj.setBackend("cpu");
 * ```
 */
export function setBackend(name: BackendName): void {
  if (!factories.has(name)) {
    fail(
      "setBackend",
      `unknown backend ${JSON.stringify(name)}; expected one of ${
        [...factories.keys()].join(", ")
      }`,
    );
  }
  current = name;
}

/** The active backend. */
export function getBackend(): Backend {
  let b = instances.get(current);
  if (!b) {
    b = factories.get(current)!();
    instances.set(current, b);
  }
  return b;
}

/** Realizes nodes on the active backend. */
export function realizeNodes(nodes: readonly Node[]): Promise<TypedArray[]> {
  return getBackend().realize(nodes);
}
