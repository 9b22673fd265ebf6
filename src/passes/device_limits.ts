/**
 * What a device allows a compiled step, in one object: read from the WebGPU adapter (Deno's
 * llvmpipe, Chromium's SwiftShader and real GPUs differ), or the host's for the native backend.
 * The compiler, the memory plan and the runtimes take their limits from it; nothing else assumes
 * a number.
 */
import { MAX_LOOP_ITERATIONS } from "../../codegen/lower.ts";

export interface DeviceLimits {
  /** Storage buffers one kernel may bind (the scheduler realizes values to stay within it). */
  maxBindings: number;
  /** Bytes one buffer binding may cover, and the device limit that says so. */
  maxBindingBytes: number;
  maxBindingBytesName: string;
  /** Alignment of a binding's offset into a buffer (the error buffer's regions). */
  bindingOffsetAlignment: number;
  /** Iterations one invocation's loops may run in total (llvmpipe stops them at 65,535). */
  maxLoopIterations: number;
}

/** The limits of a WebGPU device, from its `limits` (as DeviceInfo reports them). */
export function webgpuLimits(limits: Readonly<Record<string, number>>): DeviceLimits {
  const binding = limits.maxStorageBufferBindingSize ?? 134217728;
  const buffer = limits.maxBufferSize ?? 268435456;
  return {
    maxBindings: limits.maxStorageBuffersPerShaderStage ?? 8,
    maxBindingBytes: Math.min(binding, buffer),
    maxBindingBytesName: binding <= buffer ? "maxStorageBufferBindingSize" : "maxBufferSize",
    bindingOffsetAlignment: limits.minStorageBufferOffsetAlignment ?? 256,
    // Every WebGPU implementation may cap loops; llvmpipe does, silently.
    maxLoopIterations: MAX_LOOP_ITERATIONS,
  };
}

/** The native backend's: host memory, pointers, and loops of any length. */
export const HOST_LIMITS: DeviceLimits = {
  maxBindings: Infinity,
  maxBindingBytes: Infinity,
  maxBindingBytesName: "host memory",
  bindingOffsetAlignment: 8,
  maxLoopIterations: Infinity,
};

/** Limits for compiling without a device (tests, inspection): WebGPU's defaults. */
export const DEFAULT_DEVICE_LIMITS: DeviceLimits = webgpuLimits({});
