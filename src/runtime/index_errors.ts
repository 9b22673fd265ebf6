/**
 * Index-check failures that kernels record on the device. Every compiled step that checks
 * indices owns a small error buffer; after the step runs, its buffer is pending until the next
 * readback, which copies it to the host in the same submission (no extra round trip), clears it,
 * and raises the first failure — in run order, then launch order — as the same error the
 * interpreter raises: the op the user called, the index, the axis size, the call site.
 */
import { MoejitError } from "../errors.ts";
import { indexCheckLabel, indexErrorText } from "../ir/checks.ts";
import type { OpArgs } from "../ir/ops.ts";
import type { StepProgram } from "../passes/step_program.ts";
import { NumericsTracker } from "../numerics.ts";

/** Error buffers staged for a readback: call `raise` once they are mapped. */
export interface StagedErrors {
  staging: GPUBuffer[];
  raise(): void;
}

export class IndexErrorLog {
  /** Buffers of steps run since the last readback, in the order they first ran. */
  #pending = new Map<GPUBuffer, StepProgram>();

  /** Records that `prog` ran with its error buffer `buf`. */
  ran(prog: StepProgram, buf: GPUBuffer): void {
    if (!this.#pending.has(buf)) this.#pending.set(buf, prog);
  }

  /** Copies every pending error buffer to a staging buffer in `enc`, then clears it. */
  stage(device: GPUDevice, enc: GPUCommandEncoder): StagedErrors {
    const entries = [...this.#pending];
    this.#pending.clear();
    const staging = entries.map(([buf, prog]) => {
      const s = device.createBuffer({
        size: prog.errorBytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      enc.copyBufferToBuffer(buf, 0, s, 0, prog.errorBytes);
      enc.clearBuffer(buf, 0, prog.errorBytes);
      return s;
    });
    return {
      staging,
      raise: () => {
        const words = staging.map((s) => new Uint32Array(s.getMappedRange().slice(0)));
        staging.forEach((s) => {
          s.unmap();
          s.destroy();
        });
        entries.forEach(([, prog], i) => raiseFirst(prog, words[i]));
      },
    };
  }
}

/**
 * Throws the first failure recorded in a step's error buffer `words`, in launch order: an
 * out-of-range index, or (under mj.debug.checkNumerics) the first op that produced NaN or an
 * infinity.
 */
export function raiseFirst(prog: StepProgram, words: Uint32Array): void {
  const numerics = new NumericsTracker();
  for (const l of prog.launches) {
    const base = (l.errorOffset ?? 0) / 4;
    if (l.finite) {
      numerics.seen(l.finite, words[base], words[base] ? ~words[base + 1] >>> 0 : -1);
      continue;
    }
    if (!l.checks) continue;
    for (let id = 0; id < l.checks.length; id++) {
      if (!words[base + 2 * id]) continue;
      const node = l.checks[id];
      const index = ~words[base + 2 * id + 1] | 0;
      const label = indexCheckLabel(node);
      const size = (node.arg as OpArgs["checkIndex"]).size;
      throw new MoejitError(label.op, indexErrorText(label, index, size), label.site);
    }
  }
}
