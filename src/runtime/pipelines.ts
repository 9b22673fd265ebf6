/**
 * The pipeline cache (WGSL text → compute pipeline; compilations in flight are shared) and the
 * shader error report: every compilation runs inside an error scope, and a failure throws with
 * the WGSL, numbered, and the op that produced it.
 */
import type { KernelProgram } from "../../codegen/kernel.ts";
import { stats } from "../stats.ts";

export class ShaderError extends Error {
  override name = "ShaderError";
  constructor(readonly label: string, readonly wgsl: string, detail: string) {
    super(
      `WGSL compilation failed for kernel "${label}":\n${detail}\n--- WGSL ---\n${numbered(wgsl)}`,
    );
  }
}

function numbered(code: string): string {
  return code.split("\n").map((l, i) => `${String(i + 1).padStart(4)} | ${l}`).join("\n");
}

const cache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** Compiles (or finds) the pipeline for a program's WGSL. */
export function pipelineFor(device: GPUDevice, p: KernelProgram): Promise<GPUComputePipeline> {
  let m = cache.get(device);
  if (!m) cache.set(device, m = new Map());
  let pending = m.get(p.code);
  if (!pending) {
    pending = compile(device, p.code, p.label);
    m.set(p.code, pending);
    // A failed compilation is not cached: the next attempt reports the error again.
    pending.catch(() => m!.delete(p.code));
  }
  return pending;
}

/** Compiles WGSL inside validation error scopes, reporting messages with line numbers. */
export async function compile(
  device: GPUDevice,
  code: string,
  label: string,
): Promise<GPUComputePipeline> {
  // Scopes are a stack shared by every compilation in flight: push and pop with no await in
  // between, or one kernel's error is reported as another's.
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code, label });
  const moduleScope = device.popErrorScope();
  const info = await module.getCompilationInfo();
  const moduleErr = await moduleScope;
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length || moduleErr) {
    const detail = errors.length
      ? errors.map((m) => `line ${m.lineNum}:${m.linePos}: ${m.message}`).join("\n")
      : moduleErr!.message;
    throw new ShaderError(label, code, detail);
  }
  device.pushErrorScope("validation");
  const pending = device.createComputePipelineAsync({
    label,
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const pipelineScope = device.popErrorScope();
  let pipeline: GPUComputePipeline;
  try {
    pipeline = await pending;
  } catch (e) {
    await pipelineScope;
    throw new ShaderError(label, code, (e as Error).message);
  }
  const err = await pipelineScope;
  if (err) throw new ShaderError(label, code, err.message);
  stats.pipelinesCompiled++;
  return pipeline;
}
