/**
 * The WebGPU backend: compiles graphs to step programs (cached by signature), keeps values on
 * the device, and reads back only what the host asks for.
 */
import type { Backend, BackendProbe, Prepared } from "../backend.ts";
import { checkNoParams, fusionEnabled, registerBackend } from "../backend.ts";
import type { TypedArray } from "../dtype.ts";
import { envVar } from "../env.ts";
import { fail } from "../errors.ts";
import { toposort } from "../ir/graph.ts";
import { makeNode, type Node } from "../ir/node.ts";
import { rewriteGraph } from "../ir/rewrite.ts";
import { newBufferNode, registerHostFetcher } from "../ir/values.ts";
import { compileStep, type StepProgram } from "../passes/compile.ts";
import { webgpuLimits } from "../passes/device_limits.ts";
import { BufferPool, Residency } from "./buffers.ts";
import { IndexErrorLog } from "./index_errors.ts";
import { numericsChecked } from "../numerics.ts";
import { submitAndRead } from "./readback.ts";
import { acquireGpu, type DeviceInfo, type Gpu, NO_ADAPTER_HELP } from "./device.ts";
import { runStep } from "./executor.ts";
import { stats } from "../stats.ts";
import { debugDump } from "./debug_dump.ts";
import { checkDeviceLimits } from "./limits.ts";

interface WebGpuPrepared extends Prepared {
  readonly program: StepProgram;
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  #gpu: Promise<Gpu>;
  #pool?: BufferPool;
  #resident?: Residency;
  #steps = new Map<string, StepProgram>();
  #errors = new IndexErrorLog();

  constructor() {
    this.#gpu = acquireGpu().then((g) => {
      if (!g) fail("webgpu", NO_ADAPTER_HELP);
      this.#pool = new BufferPool(g.device);
      this.#resident = new Residency(this.#pool);
      return g;
    });
  }

  async info(): Promise<DeviceInfo> {
    return (await this.#gpu).info;
  }

  /** Reads a device-resident buffer leaf to the host (for other backends and `data()`). */
  fetch(n: Node): Promise<TypedArray> | undefined {
    const b = this.#resident?.get(n);
    if (!b) return undefined;
    return this.#read([n], [b]).then((r) => r[0]);
  }

  async #read(nodes: readonly Node[], bufs: readonly GPUBuffer[]): Promise<TypedArray[]> {
    const { device } = await this.#gpu;
    const reads = nodes.map((n, i) => ({ buffer: bufs[i], size: n.size, dtype: n.dtype }));
    const host = await submitAndRead(device, device.createCommandEncoder(), reads, this.#errors);
    return host as TypedArray[];
  }

  #isValue(n: Node): boolean {
    return this.#resident!.has(n) || (n.op === "buffer" && !!n.host);
  }

  /** Compiles (or finds) the program for roots over `param` inputs and captured values. */
  async #program(roots: readonly Node[]): Promise<StepProgram> {
    const g = await this.#gpu;
    const checked = numericsChecked();
    const key = `${fusionEnabled() ? "F" : "U"}${checked ? "N" : ""}|${
      roots.map((r) => r.key).join(",")
    }`;
    let prog = this.#steps.get(key);
    if (!prog) {
      prog = compileStep(roots, (n) => n.op === "param" || this.#isValue(n), {
        fuse: fusionEnabled(),
        device: webgpuLimits(g.info.limits),
        checkNumerics: checked,
      });
      checkDeviceLimits(prog, g.info.limits);
      this.#steps.set(key, prog);
      stats.stepsCompiled++;
      if (envVar("MOEJIT_DEBUG")) debugDump(prog, stats.stepsCompiled);
    }
    return prog;
  }

  /**
   * Runs roots whose inputs are values (resident or host leaves): they are renamed to numbered
   * params first, so equal computations on different data share one compiled step.
   */
  async #runValues(
    roots: readonly Node[],
    readback: boolean,
  ): Promise<{ bufs: GPUBuffer[]; host: (TypedArray | null)[] }> {
    await this.#gpu;
    const isValue = (n: Node) => this.#isValue(n);
    checkNoParams(roots, isValue);
    const values: Node[] = [];
    for (const n of toposort(roots, isValue)) if (isValue(n)) values.push(n);
    const slot = new Map(values.map((v, i) => [v, i]));
    const { roots: normalized } = rewriteGraph(
      roots,
      (
        n,
      ) => (slot.has(n)
        ? makeNode("param", [], { slot: slot.get(n)!, shape: n.shape, dtype: n.dtype })
        : undefined),
      isValue,
    );
    const prog = await this.#program(normalized);
    const bySlot = new Map<number, Node>(values.map((v, i) => [i, v]));
    return await this.#execute(
      prog,
      (p) => bySlot.get((p.arg as { slot: number }).slot)!,
      roots,
      readback,
    );
  }

  async #execute(
    prog: StepProgram,
    valueOfParam: (p: Node) => Node,
    outNodes: readonly Node[],
    readback: boolean,
  ): Promise<{ bufs: GPUBuffer[]; host: (TypedArray | null)[] }> {
    const { device } = await this.#gpu;
    const inputs = prog.inputs.map((n) =>
      this.#resident!.ensure(n.op === "param" ? valueOfParam(n) : n)
    );
    const r = await runStep(
      device,
      this.#pool!,
      prog,
      inputs,
      outNodes,
      outNodes.map(() => readback),
      this.#errors,
    );
    return { bufs: r.buffers, host: r.host };
  }

  async realize(nodes: readonly Node[]): Promise<TypedArray[]> {
    await this.#gpu;
    const out: TypedArray[] = new Array(nodes.length);
    const todo: Node[] = [];
    const cachedBufs: [number, GPUBuffer][] = [];
    nodes.forEach((n, i) => {
      if (n.op === "buffer" && n.host) out[i] = n.host.slice();
      else if (this.#resident!.has(n)) cachedBufs.push([i, this.#resident!.get(n)!]);
      else todo.push(n);
    });
    const unique = [...new Set(todo)];
    if (unique.length) {
      const { bufs, host } = await this.#runValues(unique, true);
      unique.forEach((n, i) => this.#adopt(n, bufs[i]));
      nodes.forEach((n, i) => {
        const j = unique.indexOf(n);
        if (j >= 0) out[i] = host[j]!.slice();
      });
    }
    if (cachedBufs.length) {
      const read = await this.#read(
        cachedBufs.map(([i]) => nodes[i]),
        cachedBufs.map(([, b]) => b),
      );
      cachedBufs.forEach(([i], j) => (out[i] = read[j]));
    }
    return out;
  }

  /** Records that `n`'s value lives in `b` (unless `b` is already some input's buffer). */
  #adopt(n: Node, b: GPUBuffer): void {
    if (!this.#resident!.has(n)) this.#resident!.set(n, b);
  }

  async materialize(nodes: readonly Node[]): Promise<Node[]> {
    await this.#gpu;
    const todo = [...new Set(nodes.filter((n) => !this.#isValue(n)))];
    if (todo.length) {
      const { bufs } = await this.#runValues(todo, false);
      todo.forEach((n, i) => this.#adopt(n, bufs[i]));
    }
    return nodes.map((n) => {
      if (n.op === "buffer") return n;
      const b = this.#resident!.get(n);
      if (!b) return n; // a host value leaf
      const leaf = newBufferNode(n.shape, n.dtype);
      this.#resident!.set(leaf, b);
      return leaf;
    });
  }

  async prepare(roots: readonly Node[], params: readonly Node[]): Promise<Prepared> {
    const program = await this.#program(roots);
    const p: WebGpuPrepared = { backend: "webgpu", roots, params, program };
    return p;
  }

  async run(p: Prepared, args: readonly Node[]): Promise<Node[]> {
    const prog = (p as WebGpuPrepared).program;
    const byParam = new Map(p.params.map((q, i) => [q, args[i]]));
    const { bufs } = await this.#execute(
      prog,
      (q) => {
        const v = byParam.get(q);
        if (!v) throw new Error(`internal: param ${q.key} is not bound`);
        return v;
      },
      p.roots,
      false,
    );
    return p.roots.map((r, i) => {
      if (r.op === "param") return byParam.get(r)!;
      if (this.#isValue(r)) return r;
      const leaf = newBufferNode(r.shape, r.dtype);
      this.#resident!.set(leaf, bufs[i]);
      return leaf;
    });
  }
}

let instance: WebGpuBackend | null = null;

function webgpu(): WebGpuBackend {
  instance ??= new WebGpuBackend();
  return instance;
}

/** Software rasterizers: WebGPU runs there, but slower than native code on the same CPU. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|softpipe|warp|basic render/i;

async function probe(): Promise<BackendProbe> {
  const g = await acquireGpu();
  if (!g) return { available: false, detail: "no WebGPU adapter" };
  const a = g.info.adapter;
  const description = a.description || a.device || a.vendor || "unnamed adapter";
  return {
    available: true,
    software: a.fallback || SOFTWARE_ADAPTER.test(`${a.description} ${a.device} ${a.vendor}`),
    detail: description,
  };
}

registerBackend("webgpu", webgpu, probe);
registerHostFetcher((n) => instance?.fetch(n));

/**
 * Adapter, limits and features of the WebGPU device (null when there is none).
 *
 * @example
 * ```ts
 * console.log((await mj.backendInfo())?.adapter.description); // e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
 * ```
 */
export async function backendInfo(): Promise<DeviceInfo | null> {
  const g = await acquireGpu();
  return g ? g.info : null;
}
