/**
 * What compiling a graph produces: a step program. It is independent of any buffers: inputs,
 * outputs and temporaries are slots, bound at run time by the backend that runs it (WebGPU
 * buffers, or host arrays for the native backend).
 */
import type { KernelProgram } from "../../codegen/kernel.ts";
import type { Target } from "../../codegen/target.ts";
import type { Node } from "../ir/node.ts";
import type { LegalizeLimits } from "./legalize.ts";
import type { DeviceLimits } from "./device_limits.ts";

export interface CompileOptions {
  fuse: boolean;
  /** What the kernels are written in (default WGSL). */
  target?: Target;
  /** What the device allows (default: WebGPU's defaults). */
  device?: DeviceLimits;
  /** Shorthand for a device with this many storage buffers per kernel (tests, inspection). */
  maxBindings?: number;
  limits?: LegalizeLimits;
  /**
   * Run one op per kernel and test every f32 value for NaN/Inf by its bits
   * (mj.debug.checkNumerics): a finite-check launch follows each value's producer.
   */
  checkNumerics?: boolean;
}

export interface Launch {
  program: KernelProgram;
  /** Step slot bound at each binding index of the program (negative: the kernel's scratch). */
  slots: number[];
  /** Total invocations (0 means the launch is skipped). */
  work: number;
  /** Byte sizes of the kernel's scratch buffers (slots −1, −2, …), if it uses any. */
  scratch?: number[];
  /**
   * The `checkIndex` nodes this launch checks, by kernel-local id (its program's last binding is
   * then the error buffer), and where its region of the step's error buffer starts (bytes).
   */
  checks?: Node[];
  /** The value a numerics-check launch tests (its error region holds two words). */
  finite?: Node;
  errorOffset?: number;
}

export interface SlotInfo {
  bytes: number;
  /** The value the slot holds. */
  node: Node;
  kind: "input" | "output" | "temp";
  /** Index into the step's inputs / outputs, or the physical temp buffer. */
  index: number;
  label: string;
}

export interface StepProgram {
  /** The target its kernels were written for. */
  target: Target["name"];
  inputs: Node[];
  /** For each requested root, the slot holding its value (an input slot when it is an input). */
  outputSlots: number[];
  slots: SlotInfo[];
  launches: Launch[];
  /** Byte sizes of the physical temporary buffers (shared between slots by liveness). */
  temps: number[];
  /** Bytes of the error buffer the launches' index checks write (0: no checks). */
  errorBytes: number;
  /** Human-readable schedule (for MOEJIT_DEBUG). */
  describe(): string;
}

/** The u32 words of the error buffer a launch writes: two per index check, two for a value test. */
export function errorWords(l: Launch): number {
  return l.checks ? 2 * l.checks.length : l.finite ? 2 : 0;
}
