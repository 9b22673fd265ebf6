/**
 * The step's memory: temporaries share physical buffers once their last use is past (liveness),
 * every launch that reports errors gets its own region of the error buffer, and a value larger
 * than one buffer binding is refused before anything is allocated.
 */
import { fail } from "../errors.ts";
import { formatBytes } from "../memory.ts";
import { fmtShape } from "../shape.ts";
import { errorWords, type Launch, type SlotInfo } from "./step_program.ts";
import type { DeviceLimits } from "./device_limits.ts";

/** Liveness: temporaries share physical buffers of equal size once their last use is past. */
export function planMemory(
  slots: SlotInfo[],
  launches: Launch[],
  lastUse: Map<number, number>,
): number[] {
  const temps: number[] = [];
  const free = new Map<number, number[]>();
  const firstWrite = new Map<number, number>();
  launches.forEach((l, i) => {
    const out = l.slots[l.slots.length - 1];
    if (!firstWrite.has(out)) firstWrite.set(out, i);
  });
  const releaseAt = new Map<number, number[]>();
  slots.forEach((s, slot) => {
    if (s.kind !== "temp") return;
    const end = lastUse.get(slot) ?? firstWrite.get(slot) ?? 0;
    const list = releaseAt.get(end) ?? [];
    list.push(slot);
    releaseAt.set(end, list);
  });
  const assign = (slot: number) => {
    const s = slots[slot];
    const pool = free.get(s.bytes);
    if (pool?.length) s.index = pool.pop()!;
    else {
      s.index = temps.length;
      temps.push(s.bytes);
    }
  };
  launches.forEach((_, i) => {
    for (const [slot, w] of firstWrite) if (w === i && slots[slot].kind === "temp") assign(slot);
    for (const slot of releaseAt.get(i) ?? []) {
      const list = free.get(slots[slot].bytes) ?? [];
      list.push(slots[slot].index);
      free.set(slots[slot].bytes, list);
    }
  });
  return temps;
}

export function describeStep(launches: Launch[], slots: SlotInfo[], temps: number[]): string {
  const name = (s: number) => {
    const i = slots[s];
    return i.kind === "temp"
      ? `t${s}(buf${i.index})`
      : `${i.kind === "input" ? "in" : "out"}${i.index}`;
  };
  const lines = launches.map((l, i) => {
    const reads = l.slots.slice(0, -1).map(name).join(", ");
    return `  k${i} ${l.program.label}: ${name(l.slots[l.slots.length - 1])} <- ${
      reads || "-"
    }  grid ${l.program.grid.join("x")}`;
  });
  const tempBytes = temps.reduce((a, b) => a + b, 0);
  return `${launches.length} kernels, ${temps.length} temporary buffers (${tempBytes} bytes)\n${
    lines.join("\n")
  }`;
}

/** Refuses, before anything is allocated, a value larger than one buffer binding may be. */
export function checkBufferSizes(slots: SlotInfo[], device: DeviceLimits): void {
  const limit = { bytes: device.maxBindingBytes, name: device.maxBindingBytesName };
  for (const s of slots) {
    if (s.bytes <= limit.bytes) continue;
    const n = s.node;
    const what = s.kind === "input" ? "the input" : "the result";
    fail(
      n.op,
      `${what} ${n.dtype}${fmtShape(n.shape)} takes ${formatBytes(s.bytes)}, more than this ` +
        `device binds in one buffer (${limit.name} = ${formatBytes(limit.bytes)}); ` +
        `use smaller tensors, or the native or cpu backend`,
    );
  }
}

/**
 * Gives every launch that checks indices its own region of the step's error buffer (two words
 * per check, at an offset the device can bind), so kernels stay independent of the step they
 * are part of (and cacheable); returns the buffer's size.
 */
export function placeErrorRegions(launches: Launch[], align: number): number {
  let bytes = 0;
  for (const l of launches) {
    const words = errorWords(l);
    if (!words) continue;
    l.errorOffset = bytes;
    bytes += Math.ceil((4 * words) / align) * align;
  }
  return bytes;
}
