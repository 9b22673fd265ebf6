/**
 * Backends and their selection. A backend turns graph nodes into values: host arrays
 * (`realize`), value leaves that stay where they were computed (`materialize`), or the outputs
 * of a prepared (compiled) graph over parameter placeholders (`prepare` + `run`, used by jit).
 * `cpu` is the reference interpreter; `webgpu` compiles WGSL kernels; `native` compiles C for
 * the host's CPU.
 */
import type { TypedArray } from "./dtype.ts";
import { envVar } from "./env.ts";
import { fail } from "./errors.ts";
import { toposort } from "./ir/graph.ts";
import type { Node } from "./ir/node.ts";
import { ensureHost, newBufferNode } from "./ir/values.ts";
import { evaluate } from "./interp/interpreter.ts";
import { numericsChecked } from "./numerics.ts";

export type BackendName = "cpu" | "webgpu" | "native";

const NAMES: readonly BackendName[] = ["native", "webgpu", "cpu"];

/** Whether graphs are fused into few kernels (the default) or run one op per kernel. */
let fusion = envVar("MOEJIT_FUSION") !== "0";

/**
 * Turns kernel fusion on (default) or off for the compiled backends. Unfused execution runs
 * every op as its own kernel: slower, but a reference for checking the fuser.
 *
 * @example
 * ```ts
 * mj.setFusion(false); // one kernel per op from now on
 * ```
 */
export function setFusion(on: boolean): void {
  fusion = !!on;
}

/** Whether fusion is on (see setFusion). */
export function fusionEnabled(): boolean {
  return fusion;
}

/** A graph compiled for repeated runs with new parameter values. */
export interface Prepared {
  readonly backend: BackendName;
  readonly roots: readonly Node[];
  readonly params: readonly Node[];
}

export interface Backend {
  readonly name: BackendName;
  /** Computes the nodes' values; the returned arrays are the caller's to keep. */
  realize(nodes: readonly Node[]): Promise<TypedArray[]>;
  /** Computes the nodes and returns value leaves holding the results (no graph history). */
  materialize(nodes: readonly Node[]): Promise<Node[]>;
  /** Compiles `roots` as a function of the `param` nodes `params`. */
  prepare(roots: readonly Node[], params: readonly Node[]): Promise<Prepared>;
  /** Runs a prepared graph; `args` are value leaves aligned with the params. */
  run(p: Prepared, args: readonly Node[]): Promise<Node[]>;
}

/** Host values of the buffer leaves under `roots` are fetched before synchronous evaluation. */
async function fetchLeaves(roots: readonly Node[], bound: (n: Node) => boolean): Promise<void> {
  const leaves = toposort(roots, bound).filter((n) => n.op === "buffer" && !n.host);
  await Promise.all(leaves.map(ensureHost));
}

/** The interpreter as a backend, caching realized values per node. */
export class CpuBackend implements Backend {
  readonly name = "cpu" as const;
  #cache = new WeakMap<Node, TypedArray>();

  async realize(nodes: readonly Node[]): Promise<TypedArray[]> {
    const missing = nodes.filter((n) => !this.#cache.has(n));
    if (missing.length) {
      await fetchLeaves(missing, (n) => this.#cache.has(n));
      checkNoParams(missing, (n) => this.#cache.has(n));
      const vals = evaluate(missing, {
        bound: (n) => this.#cache.get(n),
        checkNumerics: numericsChecked(),
      });
      missing.forEach((n, i) => this.#cache.set(n, vals[i]));
    }
    return nodes.map((n) => this.#cache.get(n)!.slice());
  }

  async materialize(nodes: readonly Node[]): Promise<Node[]> {
    const vals = await this.realize(nodes);
    return nodes.map((
      n,
      i,
    ) => (n.op === "buffer" && n.host ? n : newBufferNode(n.shape, n.dtype, vals[i])));
  }

  prepare(roots: readonly Node[], params: readonly Node[]): Promise<Prepared> {
    return Promise.resolve({ backend: "cpu", roots, params });
  }

  async run(p: Prepared, args: readonly Node[]): Promise<Node[]> {
    await Promise.all(args.map(ensureHost));
    const byParam = new Map(p.params.map((q, i) => [q, args[i].host!]));
    await fetchLeaves(p.roots, (n) => byParam.has(n));
    const vals = evaluate(p.roots, {
      bound: (n) => byParam.get(n),
      checkNumerics: numericsChecked(),
    });
    return p.roots.map((r, i) => newBufferNode(r.shape, r.dtype, vals[i]));
  }
}

/** A `param` placeholder outside of a jitted function has no value: say so clearly. */
export function checkNoParams(roots: readonly Node[], bound: (n: Node) => boolean): void {
  for (const n of toposort(roots, bound)) {
    if (n.op === "param") {
      fail(
        "realize",
        `a tensor inside mj.jit's traced function cannot be read while tracing ` +
          `(${n.dtype}[${n.shape}]); return it from the function instead`,
      );
    }
  }
}

/** What a backend can say about itself before it is chosen. */
export interface BackendProbe {
  available: boolean;
  /** WebGPU only: the adapter is a software rasterizer (llvmpipe, SwiftShader, a fallback). */
  software?: boolean;
  /** One line: the adapter or compiler found, or why there is none. */
  detail: string;
}

const factories = new Map<BackendName, () => Backend>([["cpu", () => new CpuBackend()]]);
const probes = new Map<BackendName, () => Promise<BackendProbe>>();
const instances = new Map<BackendName, Backend>();
let chosen: BackendName | null = null;

/** Makes a backend available, with a probe the automatic choice asks. */
export function registerBackend(
  name: BackendName,
  factory: () => Backend,
  probe?: () => Promise<BackendProbe>,
): void {
  factories.set(name, factory);
  instances.delete(name);
  if (probe) probes.set(name, probe);
}

/**
 * Chooses where tensors are computed: `"native"` (generated C, compiled by the system compiler,
 * for the CPU), `"webgpu"` (generated WGSL kernels) or `"cpu"` (the reference interpreter).
 * Without a call (or `MOEJIT_BACKEND`), moejit picks WebGPU on a hardware GPU adapter; on a
 * software adapter (llvmpipe, SwiftShader) or none, the native backend when a C compiler works,
 * else WebGPU, else the interpreter — and says which once on stderr.
 *
 * @example
 * ```ts
 * mj.setBackend("native");
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
  chosen = name;
}

async function probe(name: BackendName): Promise<BackendProbe> {
  const p = probes.get(name);
  if (!p) return { available: name === "cpu", detail: `${name} is not available in this build` };
  try {
    return await p();
  } catch (e) {
    return { available: false, detail: (e as Error).message };
  }
}

/** The automatic choice (see setBackend), said once on stderr unless a GPU is used. */
async function chooseAutomatically(): Promise<BackendName> {
  const gpu = await probe("webgpu");
  if (gpu.available && !gpu.software) return "webgpu";
  const native = await probe("native");
  const why = gpu.available ? `the WebGPU adapter is software: ${gpu.detail}` : gpu.detail;
  let name: BackendName, line: string;
  if (native.available) {
    name = "native";
    line = `using the native CPU backend (${native.detail}); ${why}`;
  } else if (gpu.available) {
    name = "webgpu";
    line = `using WebGPU on a software adapter (${gpu.detail}); the faster native backend ` +
      `needs a C compiler: ${native.detail}`;
  } else {
    name = "cpu";
    line = `using the CPU interpreter, which is slow: ${why}; and ${native.detail}`;
  }
  console.warn(`moejit: ${line}. Set MOEJIT_BACKEND (native, webgpu, cpu) to choose.`);
  return name;
}

/** The name of the backend in use (resolving the automatic choice on first use). */
export async function backendName(): Promise<BackendName> {
  if (chosen) return chosen;
  const env = envVar("MOEJIT_BACKEND");
  if (env && (NAMES as readonly string[]).includes(env)) {
    chosen = env as BackendName;
  } else if (env) {
    fail("backend", `MOEJIT_BACKEND=${env} is not a backend; expected ${NAMES.join(", ")}`);
  } else {
    chosen = await chooseAutomatically();
  }
  return chosen;
}

/** The active backend. */
export async function getBackend(): Promise<Backend> {
  const name = await backendName();
  let b = instances.get(name);
  if (!b) {
    const f = factories.get(name);
    if (!f) fail("backend", `backend ${name} is not available in this build`);
    b = f();
    instances.set(name, b);
  }
  return b;
}

/** Realizes nodes on the active backend. */
export async function realizeNodes(nodes: readonly Node[]): Promise<TypedArray[]> {
  return (await getBackend()).realize(nodes);
}
