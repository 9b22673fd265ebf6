/**
 * Device buffers: a size-class pool (buffers of released tensors and temporaries are reused),
 * host ↔ device conversion (bool is stored as u32), and residency of realized nodes.
 */
import { allocHost, type DType, type TypedArray } from "../dtype.ts";
import type { Node } from "../ir/node.ts";
import { stats } from "../stats.ts";

const USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  return Math.ceil(b / (1 << 20)) * (1 << 20);
}

export class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  constructor(readonly device: GPUDevice) {}

  acquire(bytes: number): GPUBuffer {
    const c = sizeClass(bytes);
    const b = this.#free.get(c)?.pop();
    if (b) return b;
    const buf = this.device.createBuffer({ size: c, usage: USAGE() });
    stats.bytesAllocated += c;
    stats.peakBytes = Math.max(stats.peakBytes, stats.bytesAllocated);
    return buf;
  }

  release(b: GPUBuffer): void {
    const list = this.#free.get(b.size) ?? [];
    list.push(b);
    this.#free.set(b.size, list);
  }

  /** Destroys every pooled buffer (memory held by live tensors stays). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        stats.bytesAllocated -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
  }
}

/** Host data in the layout the device stores for `dtype`. */
export function toDeviceLayout(data: TypedArray, dtype: DType): ArrayBufferView {
  if (dtype === "bool") return Uint32Array.from(data as Uint8Array);
  if (dtype === "f32" && data instanceof Float64Array) return Float32Array.from(data);
  return data;
}

/** Host typed array for `n` elements read back from device bytes. */
export function fromDeviceBytes(bytes: ArrayBuffer, n: number, dtype: DType): TypedArray {
  if (dtype === "bool") return Uint8Array.from(new Uint32Array(bytes, 0, n));
  const out = allocHost(dtype, n);
  const view = dtype === "f32"
    ? new Float32Array(bytes, 0, n)
    : dtype === "i32"
    ? new Int32Array(bytes, 0, n)
    : new Uint32Array(bytes, 0, n);
  out.set(view as never);
  return out;
}

/**
 * Which device buffer holds a realized node's value. Several nodes may share one buffer (a
 * lazy node and the value leaf `mj.realize` returns for it); the buffer goes back to the pool
 * only when the last of them is garbage-collected.
 */
export class Residency {
  #map = new WeakMap<Node, GPUBuffer>();
  #owners = new Map<GPUBuffer, number>();
  #registry: FinalizationRegistry<GPUBuffer>;
  constructor(readonly pool: BufferPool) {
    this.#registry = new FinalizationRegistry((b) => {
      const left = (this.#owners.get(b) ?? 1) - 1;
      if (left > 0) {
        this.#owners.set(b, left);
      } else {
        this.#owners.delete(b);
        pool.release(b);
      }
    });
  }
  get(n: Node): GPUBuffer | undefined {
    return this.#map.get(n);
  }
  has(n: Node): boolean {
    return this.#map.has(n);
  }
  set(n: Node, b: GPUBuffer): void {
    if (this.#map.has(n)) return;
    this.#map.set(n, b);
    this.#owners.set(b, (this.#owners.get(b) ?? 0) + 1);
    this.#registry.register(n, b);
  }
  /** Uploads a host buffer leaf on first use. */
  ensure(n: Node): GPUBuffer {
    const have = this.#map.get(n);
    if (have) return have;
    if (!n.host) {
      throw new Error(
        `internal: ${n.op} ${n.dtype}[${n.shape}] has no value on the device or the host`,
      );
    }
    const b = this.pool.acquire(Math.max(4, n.size * 4));
    if (n.size) {
      this.pool.device.queue.writeBuffer(b, 0, toDeviceLayout(n.host, n.dtype) as BufferSource);
    }
    this.set(n, b);
    return b;
  }
}
