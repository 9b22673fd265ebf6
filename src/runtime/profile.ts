/**
 * Kernel profiling: while on, every kernel of a step is submitted on its own and waited for, and
 * its wall time (minus the measured cost of an empty submit-and-wait) is added to its label's
 * row. Slow — one host round trip per kernel — but it tells where a step's time goes on devices
 * without timestamp queries (llvmpipe has none).
 */

export interface KernelProfile {
  /** The kernel's label (its ops and output shape). */
  label: string;
  calls: number;
  /** Total milliseconds, round-trip overhead subtracted. */
  ms: number;
}

let enabled = false;
let overheadMs: number | null = null;
const rows = new Map<string, KernelProfile>();

/** Whether kernels are being profiled. */
export function profiling(): boolean {
  return enabled;
}

/** Turns profiling on (clearing earlier rows) or off. */
export function setProfiling(on: boolean): void {
  enabled = on;
  if (on) rows.clear();
}

/** Measures one empty submit-and-wait once (the median of five). */
export async function roundTripMs(device: GPUDevice): Promise<number> {
  if (overheadMs === null) {
    const t: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      device.queue.submit([device.createCommandEncoder().finish()]);
      await device.queue.onSubmittedWorkDone();
      t.push(performance.now() - t0);
    }
    overheadMs = t.sort((a, b) => a - b)[2];
  }
  return overheadMs;
}

/** Adds one kernel's time. */
export function record(label: string, ms: number): void {
  const r = rows.get(label) ?? { label, calls: 0, ms: 0 };
  r.calls++;
  r.ms += Math.max(0, ms);
  rows.set(label, r);
}

/** The rows so far, most expensive first. */
export function profileRows(): KernelProfile[] {
  return [...rows.values()].sort((a, b) => b.ms - a.ms);
}
