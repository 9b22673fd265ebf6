/**
 * The native backend: the same compiled step programs as WebGPU (lowering, scheduling, fusion
 * and the memory plan are shared), written as C by the C target, compiled by the system
 * compiler, loaded with Deno.dlopen and run as one FFI call per step. Values
 * are host arrays: inputs and outputs are handed over as pointers, never copied.
 */
import type { Backend, BackendProbe, Prepared } from "../../backend.ts";
import { checkNoParams, registerBackend } from "../../backend.ts";
import { C_TARGET } from "../../../codegen/c/target.ts";
import { allocHost, type DType, type TypedArray } from "../../dtype.ts";
import { envVar } from "../../env.ts";
import { toposort } from "../../ir/graph.ts";
import { makeNode, type Node } from "../../ir/node.ts";
import { rewriteGraph } from "../../ir/rewrite.ts";
import { ensureHost, newBufferNode } from "../../ir/values.ts";
import { numericsChecked } from "../../numerics.ts";
import { compileStep } from "../../passes/compile.ts";
import { HOST_LIMITS } from "../../passes/device_limits.ts";
import type { StepProgram } from "../../passes/step_program.ts";
import { raiseFirst } from "../index_errors.ts";
import { profiling, record } from "../profile.ts";
import { stats } from "../../stats.ts";
import { fusionEnabled } from "../../backend.ts";
import { compileShared, toolchain } from "./compiler.ts";
import { stepSource } from "./step_source.ts";
import { WORKER_THREAD_C } from "./worker_thread.ts";
import { debugDump } from "../debug_dump.ts";

/**
 * `mj_step` hands the step to the process's one native worker thread and waits for it
 * (src/runtime/native/worker_thread.ts); it is called on Deno's FFI pool so that JavaScript
 * keeps running (progress, Ctrl-C) meanwhile.
 */
const SYMBOLS = {
  mj_init: { parameters: ["buffer", "buffer"], result: "i32" },
  mj_step: { parameters: ["buffer", "buffer"], result: "void", nonblocking: true },
} as const;

/** A profiling build's step also takes the per-launch times (mj.debug.profile). */
const PROFILE_SYMBOLS = {
  mj_init: SYMBOLS.mj_init,
  mj_step: { parameters: ["buffer", "buffer", "buffer"], result: "void", nonblocking: true },
} as const;

/**
 * OpenMP's threads spin between parallel regions before they sleep (GOMP_SPINCOUNT, 300,000 by
 * default). A step runs hundreds of short regions; on a machine whose cores are shared, spinning
 * threads take the cores from the thread that has the work, and a step took 3–7× longer (1.1 s
 * instead of 0.15–0.34 s for the default model's training step on 2 busy cores). A short spin
 * keeps the latency of back-to-back regions on an idle machine. Set before libgomp loads; a
 * value the user set wins.
 */
function tameOpenMpSpinning(): void {
  try {
    if (Deno.env.get("GOMP_SPINCOUNT") === undefined) Deno.env.set("GOMP_SPINCOUNT", "10000");
  } catch {
    // no env permission: OpenMP keeps its default
  }
}

let workerLibrary: Promise<string> | null = null;

/** The shared library of the native worker thread (compiled once, cached like steps). */
function workerThread(): Promise<string> {
  workerLibrary ??= compileShared(WORKER_THREAD_C);
  return workerLibrary;
}

type StepLibrary = Deno.DynamicLibrary<typeof SYMBOLS | typeof PROFILE_SYMBOLS>;

/** A step program with its library and the buffers its runs reuse. */
interface NativeStep {
  prog: StepProgram;
  lib: StepLibrary;
  /** Per-launch milliseconds of a profiling build (null otherwise). */
  times: Float64Array | null;
  temps: Uint8Array[];
  errors: Uint32Array;
  /** Runs of one step are serialized (they share temporaries). */
  queue: Promise<unknown>;
  /** Buffers carry checked guards (MOEJIT_NATIVE_GUARD=1 when the step was built). */
  guard: boolean;
}

interface NativePrepared extends Prepared {
  readonly step: Promise<NativeStep>;
}

/**
 * OpenBLAS builds to look for, best first. The OpenMP build shares the kernels' OpenMP threads
 * (no oversubscription); the pthreads build (Debian's default) is used when it is the only one,
 * though with Mesa's lavapipe in the same process its exit handlers can corrupt the heap when
 * worker threads end (seen under `deno test`).
 */
const BLAS_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-openmp/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
];

/** Whether a file exists (probing by loading would start, then unload, BLAS's threads). */
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

let foundBlas: string | null = null;

/**
 * The BLAS the C kernels load: MOEJIT_NATIVE_BLAS=0 for moejit's own sgemm, a library path to
 * choose one, or (unset) the first OpenBLAS found.
 */
export function blasLibrary(): string {
  const v = envVar("MOEJIT_NATIVE_BLAS");
  if (v === "0" || v === "off" || v === "none") return "";
  if (v && v !== "1") return v;
  foundBlas ??= BLAS_CANDIDATES.find(exists) ?? "";
  return foundBlas;
}

const loadedBlas = new Map<string, boolean>();

/** Whether the last step loaded the system BLAS (for backendInfo-like reports). */
export function nativeBlasLoaded(): boolean | undefined {
  return loadedBlas.get(blasLibrary());
}

/**
 * MOEJIT_NATIVE_GUARD=1: every output and temporary gets GUARD_BYTES of a known pattern past its
 * end, checked after each step, so that a kernel writing out of bounds is an error naming the
 * buffer instead of silent heap corruption (a debugging switch; it costs a scan per step).
 */
const GUARD_BYTES = 256;
const GUARD_BYTE = 0xa5;

function guarded(): boolean {
  return envVar("MOEJIT_NATIVE_GUARD") === "1";
}

/** A zeroed array of `n` elements of `dtype` with a guard pattern after it (see GUARD_BYTES). */
function allocGuarded(dtype: DType, n: number): TypedArray {
  const proto = allocHost(dtype, 0);
  const bytes = n * proto.BYTES_PER_ELEMENT;
  const raw = new Uint8Array(bytes + GUARD_BYTES);
  raw.fill(GUARD_BYTE, bytes);
  const Ctor = proto.constructor as new (b: ArrayBuffer, o: number, n: number) => TypedArray;
  return new Ctor(raw.buffer, 0, n);
}

/** Whether the guard after `a` (allocated by allocGuarded) is intact. */
function guardIntact(a: ArrayBufferView): boolean {
  const tail = new Uint8Array(a.buffer, a.byteOffset + a.byteLength, GUARD_BYTES);
  return tail.every((b) => b === GUARD_BYTE);
}

/** What an empty input's pointer points at (16 zero bytes; never written). */
const EMPTY_INPUT = new Uint8Array(16);

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

function pointerOf(a: ArrayBufferView): bigint {
  const p = Deno.UnsafePointer.of(a as unknown as BufferSource);
  return p === null ? 0n : BigInt(Deno.UnsafePointer.value(p));
}

/** Host data in the layout the kernels read (f32 values held as Float64Array are narrowed). */
function hostLayout(data: TypedArray, dtype: DType): TypedArray {
  return dtype === "f32" && data instanceof Float64Array ? Float32Array.from(data) : data;
}

export class NativeBackend implements Backend {
  readonly name = "native" as const;
  #steps = new Map<string, Promise<NativeStep>>();

  #isValue(n: Node): boolean {
    return n.op === "buffer";
  }

  /** Compiles (or finds) the step for roots over `param` inputs and captured values. */
  #step(roots: readonly Node[]): Promise<NativeStep> {
    const checked = numericsChecked();
    const profile = profiling();
    const key = `${fusionEnabled() ? "F" : "U"}${checked ? "N" : ""}${
      profile ? "P" : ""
    }|${blasLibrary()}|${roots.map((r) => r.key).join(",")}`;
    let s = this.#steps.get(key);
    if (!s) {
      s = this.#build(roots, checked, profile);
      this.#steps.set(key, s);
      s.catch(() => this.#steps.delete(key));
    }
    return s;
  }

  async #build(roots: readonly Node[], checked: boolean, profile: boolean): Promise<NativeStep> {
    const tc = await toolchain();
    if ("error" in tc) throw new Error(`native backend: ${tc.error}`);
    tameOpenMpSpinning();
    const prog = compileStep(roots, (n) => n.op === "param" || this.#isValue(n), {
      fuse: fusionEnabled(),
      target: C_TARGET,
      device: HOST_LIMITS,
      checkNumerics: checked,
    });
    stats.stepsCompiled++;
    const source = stepSource(prog, profile);
    if (envVar("MOEJIT_DEBUG")) debugDump(prog, stats.stepsCompiled, { ext: "c", source });
    const path = await compileShared(source);
    const lib: StepLibrary = Deno.dlopen(path, profile ? PROFILE_SYMBOLS : SYMBOLS);
    const blas = blasLibrary();
    const init = lib.symbols.mj_init(cString(blas), cString(await workerThread()));
    loadedBlas.set(blas, (init & 1) === 1);
    if (!(init & 2)) throw new Error("internal: the native worker thread did not load");
    const guard = guarded();
    return {
      prog,
      lib,
      times: profile ? new Float64Array(Math.max(1, prog.launches.length)) : null,
      temps: prog.temps.map((bytes) =>
        guard ? allocGuarded("bool", bytes) as Uint8Array : new Uint8Array(bytes)
      ),
      errors: new Uint32Array(Math.max(1, prog.errorBytes / 4)),
      queue: Promise.resolve(),
      guard,
    };
  }

  /** Runs a step with `inputs` (aligned with prog.inputs); returns each output's host array. */
  #execute(step: NativeStep, inputs: readonly Node[]): Promise<TypedArray[]> {
    const run = step.queue.then(async () => {
      const { prog } = step;
      await Promise.all(inputs.map(ensureHost));
      const arrays: ArrayBufferView[] = new Array(prog.slots.length);
      const outputs = new Map<number, TypedArray>();
      prog.slots.forEach((s, i) => {
        if (s.kind === "input") {
          arrays[i] = hostLayout(inputs[s.index].host!, inputs[s.index].dtype);
        } else if (s.kind === "temp") arrays[i] = step.temps[s.index];
        else {
          const n = Math.max(1, s.node.size);
          const a = step.guard ? allocGuarded(s.node.dtype, n) : allocHost(s.node.dtype, n);
          outputs.set(i, a);
          arrays[i] = a;
        }
      });
      const table = new BigUint64Array(Math.max(1, arrays.length));
      // An empty input still points at readable memory: kernels evaluate both arms of a select,
      // and a clamped index into an empty buffer reads its element 0 (discarded).
      arrays.forEach((a, i) => (table[i] = pointerOf(a.byteLength ? a : EMPTY_INPUT)));
      if (step.times) {
        step.times.fill(0);
        await (step.lib as Deno.DynamicLibrary<typeof PROFILE_SYMBOLS>).symbols.mj_step(
          table,
          step.errors,
          step.times,
        );
        prog.launches.forEach((l, i) => l.work && record(l.program.label, step.times![i]));
      } else {
        await (step.lib as Deno.DynamicLibrary<typeof SYMBOLS>).symbols.mj_step(
          table,
          step.errors,
        );
      }
      if (step.guard) {
        prog.slots.forEach((s, i) => {
          if (s.kind !== "input" && !guardIntact(arrays[i])) {
            const writers = prog.launches.filter((l) => l.slots.includes(i)).map((l) =>
              l.program.label
            );
            throw new Error(
              `native backend: a kernel wrote past the end of ${s.kind} slot ${i} (${s.label}, ` +
                `${arrays[i].byteLength} bytes); kernels bound to it: ${writers.join("; ")}`,
            );
          }
        });
      }
      stats.kernelsDispatched += prog.launches.length;
      stats.submits++;
      if (prog.errorBytes && step.errors.some((w) => w !== 0)) {
        const words = step.errors.slice();
        step.errors.fill(0);
        raiseFirst(prog, words);
      }
      // Keep every array alive until the call has returned.
      void arrays;
      return prog.outputSlots.map((s) => {
        const info = prog.slots[s];
        if (info.kind === "input") return inputs[info.index].host!;
        const a = outputs.get(s)!;
        return info.node.size === 0 ? a.subarray(0, 0) : a;
      });
    });
    step.queue = run.catch(() => {});
    return run;
  }

  /**
   * Runs roots whose inputs are values: they are renamed to numbered params first, so equal
   * computations on different data share one compiled step.
   */
  async #runValues(roots: readonly Node[]): Promise<TypedArray[]> {
    const isValue = (n: Node) => this.#isValue(n);
    checkNoParams(roots, isValue);
    const values: Node[] = [];
    for (const n of toposort(roots, isValue)) if (isValue(n)) values.push(n);
    const slot = new Map(values.map((v, i) => [v, i]));
    const { roots: normalized } = rewriteGraph(
      roots,
      (n) =>
        slot.has(n)
          ? makeNode("param", [], { slot: slot.get(n)!, shape: n.shape, dtype: n.dtype })
          : undefined,
      isValue,
    );
    const step = await this.#step(normalized);
    const bySlot = new Map<number, Node>(values.map((v, i) => [i, v]));
    const inputs = step.prog.inputs.map((n) =>
      n.op === "param" ? bySlot.get((n.arg as { slot: number }).slot)! : n
    );
    return await this.#execute(step, inputs);
  }

  async realize(nodes: readonly Node[]): Promise<TypedArray[]> {
    const todo = [...new Set(nodes.filter((n) => !(n.op === "buffer" && n.host)))];
    const computed = new Map<Node, TypedArray>();
    const direct = todo.filter((n) => n.op === "buffer");
    await Promise.all(direct.map(ensureHost));
    const rest = todo.filter((n) => n.op !== "buffer");
    if (rest.length) {
      const vals = await this.#runValues(rest);
      rest.forEach((n, i) => computed.set(n, vals[i]));
    }
    return nodes.map((n) => (n.op === "buffer" ? n.host! : computed.get(n)!).slice());
  }

  async materialize(nodes: readonly Node[]): Promise<Node[]> {
    const todo = [...new Set(nodes.filter((n) => n.op !== "buffer"))];
    const vals = todo.length ? await this.#runValues(todo) : [];
    return nodes.map((n) => {
      if (n.op === "buffer") return n;
      return newBufferNode(n.shape, n.dtype, vals[todo.indexOf(n)]);
    });
  }

  prepare(roots: readonly Node[], params: readonly Node[]): Promise<Prepared> {
    const p: NativePrepared = { backend: "native", roots, params, step: this.#step(roots) };
    return p.step.then(() => p);
  }

  async run(p: Prepared, args: readonly Node[]): Promise<Node[]> {
    // Profiling runs a build of the same step that times its launches.
    const step = profiling() ? await this.#step(p.roots) : await (p as NativePrepared).step;
    const byParam = new Map(p.params.map((q, i) => [q, args[i]]));
    const inputs = step.prog.inputs.map((n) => {
      if (n.op !== "param") return n;
      const v = byParam.get(n);
      if (!v) throw new Error(`internal: param ${n.key} is not bound`);
      return v;
    });
    const vals = await this.#execute(step, inputs);
    return p.roots.map((r, i) => {
      if (r.op === "param") return byParam.get(r)!;
      if (r.op === "buffer") return r;
      return newBufferNode(r.shape, r.dtype, vals[i]);
    });
  }
}

/** The native backend's compiler, flags and matrix library. */
/** The threads OpenMP starts: OMP_NUM_THREADS's first entry when set, else every core. */
function ompThreads(): number {
  const n = Number.parseInt(envVar("OMP_NUM_THREADS")?.split(",")[0] ?? "", 10);
  return Number.isFinite(n) && n > 0 ? n : (navigator.hardwareConcurrency ?? 1);
}

export interface NativeInfo {
  compiler: string;
  flags: string[];
  /** Kernels run on every core (OpenMP); otherwise on one. */
  openmp: boolean;
  threads: number;
  /** The system BLAS the matrix products use, or null for moejit's own sgemm. */
  blas: string | null;
  /** Where compiled steps are cached. */
  cacheDir: string;
}

/**
 * The native backend's toolchain (null when no C compiler works).
 *
 * @example
 * ```ts
 * console.log(await mj.nativeInfo()); // { compiler: "cc (Debian 12.2.0-14) 12.2.0", … }
 * ```
 */
export async function nativeInfo(): Promise<NativeInfo | null> {
  const tc = await toolchain();
  if ("error" in tc) return null;
  const blas = blasLibrary();
  return {
    compiler: `${tc.cc}: ${tc.version}`,
    flags: tc.flags,
    openmp: tc.openmp,
    threads: tc.openmp ? ompThreads() : 1,
    blas: blas && loadedBlas.get(blas) !== false ? blas : null,
    cacheDir: tc.cacheDir,
  };
}

async function probe(): Promise<BackendProbe> {
  const tc = await toolchain();
  if ("error" in tc) return { available: false, detail: tc.error };
  const info = (await nativeInfo())!;
  return {
    available: true,
    detail: `${tc.version}, ${info.openmp ? `${info.threads} threads` : "one thread"}, ${
      info.blas ? `BLAS ${info.blas}` : "moejit's own sgemm"
    }`,
  };
}

let instance: NativeBackend | null = null;

registerBackend("native", () => (instance ??= new NativeBackend()), probe);
