/**
 * The one way values reach the host from the device: copies into staging buffers at the end of
 * a command encoder, one submission, every staging buffer mapped together (one round trip), and
 * the index checks of every step run since the last readback raised in the same round trip.
 */
import type { DType, TypedArray } from "../dtype.ts";
import { fromDeviceBytes } from "./buffers.ts";
import type { IndexErrorLog } from "./index_errors.ts";
import { stats } from "../stats.ts";

/** A device buffer holding `size` elements of `dtype` to read. */
export interface ReadRequest {
  buffer: GPUBuffer;
  size: number;
  dtype: DType;
}

/**
 * Finishes `enc` with copies of `reads` (null entries are skipped) and of the pending error
 * buffers, submits it, and returns the host values (null for skipped entries). Throws the first
 * recorded index error instead, if any.
 */
export async function submitAndRead(
  device: GPUDevice,
  enc: GPUCommandEncoder,
  reads: readonly (ReadRequest | null)[],
  errors: IndexErrorLog,
  afterSubmit?: () => Promise<void>,
): Promise<(TypedArray | null)[]> {
  const staging = reads.map((r) => {
    if (!r) return null;
    const bytes = Math.max(4, r.size * 4);
    const s = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    enc.copyBufferToBuffer(r.buffer, 0, s, 0, bytes);
    return s;
  });
  const staged = errors.stage(device, enc);
  device.queue.submit([enc.finish()]);
  stats.submits++;
  await afterSubmit?.();
  await Promise.all([
    ...staging.map((s) => s?.mapAsync(GPUMapMode.READ)),
    ...staged.staging.map((s) => s.mapAsync(GPUMapMode.READ)),
  ]);
  stats.readbacks++;
  const host = staging.map((s, i) => {
    if (!s) return null;
    const r = reads[i]!;
    const data = fromDeviceBytes(s.getMappedRange().slice(0), r.size, r.dtype);
    s.unmap();
    s.destroy();
    return data;
  });
  staged.raise();
  return host;
}
