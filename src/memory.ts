/**
 * Sizes checked before anything is allocated: a host array past the memory that is available,
 * or a device buffer past the adapter's limits, is a named error (op, shape, limit) instead of
 * a RangeError, a swapping machine or a raw driver message.
 */
import { envVar } from "./env.ts";
import { fail } from "./errors.ts";
import { fmtShape, type Shape } from "./shape.ts";

/** Below this size an allocation is not worth a system call. */
const CHECK_FROM = 16 * 2 ** 20;

/**
 * Bytes of host memory one array may take now: what the system has available, capped by
 * `MOEJIT_MAX_HOST_BYTES` when set (a budget for shared machines); undefined where the runtime
 * cannot tell and no budget is set.
 */
export function availableHostBytes(): number | undefined {
  const deno = (globalThis as { Deno?: { systemMemoryInfo?(): { available: number } } }).Deno;
  let available: number | undefined;
  try {
    available = deno?.systemMemoryInfo?.().available;
  } catch {
    available = undefined; // no --allow-sys: nothing to check against
  }
  const budget = Number(envVar("MOEJIT_MAX_HOST_BYTES"));
  if (Number.isFinite(budget) && budget > 0) available = Math.min(available ?? budget, budget);
  return available;
}

/** Bytes as "1,234,567,890 bytes (1.15 GiB)". */
export function formatBytes(bytes: number): string {
  return `${bytes.toLocaleString("en-US")} bytes (${(bytes / 2 ** 30).toFixed(2)} GiB)`;
}

/**
 * Refuses a host allocation of `bytes` for a value `dtype[shape]` that cannot fit; `what` says
 * which value and for what (e.g. "the intermediate const f32[…] of add f32[…]").
 */
export function checkHostAllocation(op: string, what: string, bytes: number): void {
  if (bytes < CHECK_FROM) return;
  const available = availableHostBytes();
  if (available !== undefined && bytes > available) {
    fail(
      op,
      `${what} needs ${formatBytes(bytes)} of host memory, more than the ` +
        `${formatBytes(available)} available`,
    );
  }
}

/** "f32[2,3]". */
export function describeValue(dtype: string, shape: Shape): string {
  return `${dtype}${fmtShape(shape)}`;
}
