/**
 * Runs a compiled step: one command encoder, one compute pass, every kernel dispatched in order,
 * one submit; outputs that must reach the host are copied to staging buffers in the same
 * submission and mapped together (one host round trip).
 */
import type { TypedArray } from "../dtype.ts";
import { errorWords, type StepProgram } from "../passes/step_program.ts";
import type { Node } from "../ir/node.ts";
import type { BufferPool } from "./buffers.ts";
import type { IndexErrorLog } from "./index_errors.ts";
import { submitAndRead } from "./readback.ts";
import { checkDeviceHealth } from "./device.ts";
import { pipelineFor } from "./pipelines.ts";
import { stats } from "../stats.ts";
import { profiling, record, roundTripMs } from "./profile.ts";

interface StepState {
  pipelines: GPUComputePipeline[];
  temps: GPUBuffer[];
  /** Where the step's index checks record failures (null: it has none). */
  errors: GPUBuffer | null;
  bindGroups: ({ bufs: GPUBuffer[]; group: GPUBindGroup } | undefined)[];
}

const states = new WeakMap<StepProgram, Promise<StepState>>();

function stateOf(device: GPUDevice, pool: BufferPool, prog: StepProgram): Promise<StepState> {
  let s = states.get(prog);
  if (!s) {
    s = (async () => {
      const pipelines = await Promise.all(prog.launches.map((l) => pipelineFor(device, l.program)));
      const temps = prog.temps.map((b) => pool.acquire(b));
      const errors = prog.errorBytes
        ? device.createBuffer({
          size: prog.errorBytes,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        })
        : null;
      return { pipelines, temps, errors, bindGroups: [] };
    })();
    states.set(prog, s);
    s.catch(() => states.delete(prog));
  }
  return s;
}

export interface RunResult {
  /** The device buffer of each requested output (aligned with `prog.outputSlots`). */
  buffers: GPUBuffer[];
  /** Host copies of the outputs whose `readback` flag was set. */
  host: (TypedArray | null)[];
}

/**
 * Executes `prog` with `inputs` (aligned with prog.inputs). Output buffers are fresh from the
 * pool; the caller owns them.
 */
export async function runStep(
  device: GPUDevice,
  pool: BufferPool,
  prog: StepProgram,
  inputs: GPUBuffer[],
  outputNodes: readonly Node[],
  readback: readonly boolean[],
  errors: IndexErrorLog,
): Promise<RunResult> {
  checkDeviceHealth();
  const st = await stateOf(device, pool, prog);
  const bySlot: GPUBuffer[] = new Array(prog.slots.length);
  prog.slots.forEach((s, i) => {
    if (s.kind === "input") bySlot[i] = inputs[s.index];
    else if (s.kind === "temp") bySlot[i] = st.temps[s.index];
    else bySlot[i] = pool.acquire(s.bytes);
  });
  device.pushErrorScope("validation");
  const profile = profiling();
  const overhead = profile ? await roundTripMs(device) : 0;
  let enc = device.createCommandEncoder();
  let pass = enc.beginComputePass();
  for (let i = 0; i < prog.launches.length; i++) {
    const l = prog.launches[i];
    if (l.work === 0) continue;
    const bufs = l.slots.map((s) => bySlot[s]);
    let cached = st.bindGroups[i];
    if (!cached || cached.bufs.some((b, j) => b !== bufs[j])) {
      const entries: GPUBindGroupEntry[] = bufs.map((buffer, binding) => ({
        binding,
        resource: { buffer },
      }));
      const words = errorWords(l);
      if (words) {
        // The launch's own region of the step's error buffer.
        entries.push({
          binding: entries.length,
          resource: { buffer: st.errors!, offset: l.errorOffset ?? 0, size: 4 * words },
        });
      }
      const group = device.createBindGroup({
        layout: st.pipelines[i].getBindGroupLayout(0),
        entries,
      });
      cached = { bufs, group };
      st.bindGroups[i] = cached;
    }
    pass.setPipeline(st.pipelines[i]);
    pass.setBindGroup(0, cached.group);
    pass.dispatchWorkgroups(...l.program.grid);
    stats.kernelsDispatched++;
    if (profile) {
      // One kernel per submission, timed from submit to completion.
      pass.end();
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      record(l.program.label, performance.now() - t0 - overhead);
      enc = device.createCommandEncoder();
      pass = enc.beginComputePass();
    }
  }
  pass.end();
  const buffers = prog.outputSlots.map((s) => bySlot[s]);
  if (st.errors) errors.ran(prog, st.errors);
  const popScope = async () => {
    const err = await device.popErrorScope();
    if (err) throw new Error(`WebGPU rejected a step: ${err.message}`);
  };
  // Outputs that are not the caller's (temporaries of eager steps) could alias; none are here.
  let host: (TypedArray | null)[] = buffers.map(() => null);
  if (readback.some((r) => r)) {
    const reads = buffers.map((buffer, i) =>
      readback[i] ? { buffer, size: outputNodes[i].size, dtype: outputNodes[i].dtype } : null
    );
    host = await submitAndRead(device, enc, reads, errors, popScope);
    checkDeviceHealth();
  } else {
    device.queue.submit([enc.finish()]);
    stats.submits++;
    await popScope();
  }
  return { buffers, host };
}
