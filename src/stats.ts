/** Runtime counters: what a step cost in kernels, compilations, memory and host syncs. */

export interface Stats {
  /** Kernels dispatched (all time). */
  kernelsDispatched: number;
  /** Kernels lowered to WGSL (cache misses of the kernel-signature → WGSL cache). */
  kernelsGenerated: number;
  /** Pipelines compiled (cache misses of the WGSL → pipeline cache). */
  pipelinesCompiled: number;
  /** Compiled steps built (cache misses of the step cache). */
  stepsCompiled: number;
  /** Queue submissions. */
  submits: number;
  /** Host readbacks (mapAsync rounds). */
  readbacks: number;
  /** Bytes of device memory currently allocated, and the peak. */
  bytesAllocated: number;
  peakBytes: number;
}

export const stats: Stats = {
  kernelsDispatched: 0,
  kernelsGenerated: 0,
  pipelinesCompiled: 0,
  stepsCompiled: 0,
  submits: 0,
  readbacks: 0,
  bytesAllocated: 0,
  peakBytes: 0,
};

/**
 * A snapshot of the runtime counters. Compare two snapshots to see what one step cost.
 *
 * @example
 * ```ts
 * const before = mj.stats();
 * await step(params, batch);
 * const after = mj.stats();
 * console.log(after.pipelinesCompiled - before.pipelinesCompiled); // 0 after the first call
 * ```
 */
export function snapshot(): Stats {
  return { ...stats };
}
