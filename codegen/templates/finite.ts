/**
 * The numerics check of one f32 value (mj.debug.checkNumerics): its elements are read as bits —
 * WGSL lets a compiler assume floats are finite, so only a bit test is sure to see NaN and ±Inf —
 * and the kernel's error region records which kinds it found (word 0: 1 NaN, 2 Inf) and the
 * complement of the first such element's index (word 1, one atomic max).
 */
import {
  bindingDecls,
  ERROR_BINDING,
  foldGrid,
  invocationIndex,
  type KernelProgram,
  WORKGROUP,
} from "../kernel.ts";

export function finiteCheckShader(label: string, n: number, slot: number): KernelProgram {
  const bindings = [{ slot, type: "u32" as const, write: false }, ERROR_BINDING];
  const grid = foldGrid(Math.ceil(n / WORKGROUP));
  const code = `${bindingDecls(bindings)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${invocationIndex(grid)};
  if (i >= ${n}i) { return; }
  let b = buf${slot}[i];
  if ((b & 0x7f800000u) != 0x7f800000u) { return; }
  atomicOr(&mj_err[0], select(2u, 1u, (b & 0x007fffffu) != 0u));
  atomicMax(&mj_err[1], ~u32(i));
}
`;
  return { label: `check numerics of ${label}`, code, bindings, grid };
}
