/**
 * A compiled step against the device's limits, read from the device (SwiftShader in Chromium
 * allows 10 storage buffers per stage and 256 invocations per workgroup; llvmpipe in Deno
 * more): workgroup sizes, workgroup memory, storage buffers per stage, grid sizes. Fusion keeps
 * bindings within maxStorageBuffersPerShaderStage and compileStep refuses values past the
 * binding size; anything else past a limit is an error naming the kernel and the limit here,
 * instead of a device validation error at dispatch.
 */
import { fail } from "../errors.ts";
import type { StepProgram } from "../passes/compile.ts";

/** Bytes of one element of a workgroup array's element type. */
function elementBytes(type: string): number {
  const vec = /^vec([234])</.exec(type);
  return vec ? 4 * Number(vec[1]) : 4;
}

/** The workgroup size and workgroup memory a WGSL compute shader declares. */
export function shaderFootprint(code: string): { size: [number, number, number]; shared: number } {
  const m = /@workgroup_size\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?(?:,\s*(\d+)\s*)?\)/.exec(code);
  const size: [number, number, number] = m
    ? [Number(m[1]), Number(m[2] ?? 1), Number(m[3] ?? 1)]
    : [1, 1, 1];
  let shared = 0;
  for (
    const w of code.matchAll(/var<workgroup>\s+\w+\s*:\s*array<\s*(.+?)\s*,\s*(\d+)u?\s*>\s*;/g)
  ) {
    shared += elementBytes(w[1]) * Number(w[2]);
  }
  return { size, shared };
}

/**
 * Throws if a step needs more than the device allows.
 *
 * @example
 * ```ts
 * checkDeviceLimits(program, gpu.info.limits); // e.g. throws 'webgpu: kernel "matmul → f32[4096,4096]" …'
 * ```
 */
export function checkDeviceLimits(prog: StepProgram, limits: Record<string, number>): void {
  const limit = (k: string) => limits[k] ?? Infinity;
  const over = (what: string, need: number, k: string) => {
    if (need > limit(k)) {
      fail("webgpu", `${what} needs ${need} but this device allows ${limit(k)} (${k})`);
    }
  };
  for (const l of prog.launches) {
    const kernel = `kernel "${l.program.label}"`;
    const { size, shared } = shaderFootprint(l.program.code);
    over(
      `${kernel}: a workgroup of ${size.join("×")}`,
      size[0] * size[1] * size[2],
      "maxComputeInvocationsPerWorkgroup",
    );
    size.forEach((v, i) =>
      over(`${kernel}: workgroup size ${"XYZ"[i]}`, v, `maxComputeWorkgroupSize${"XYZ"[i]}`)
    );
    over(`${kernel}: workgroup memory`, shared, "maxComputeWorkgroupStorageSize");
    over(
      `${kernel}: storage buffers`,
      l.program.bindings.length,
      "maxStorageBuffersPerShaderStage",
    );
    if (l.work > 0) {
      for (const g of l.program.grid) {
        over(`${kernel}: a grid dimension`, g, "maxComputeWorkgroupsPerDimension");
      }
    }
  }
}
