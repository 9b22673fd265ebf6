/**
 * Cumulative sums along one axis: one invocation per line (outer × inner), a sequential loop over
 * the axis. The legalizer keeps the axis short (blocked scans above that), so the loop stays far
 * below llvmpipe's 65,535-iteration cap.
 */
import type { ScalarType } from "../exp.ts";
import { literal, storageType } from "../emit.ts";
import {
  type Binding,
  bindingDecls,
  foldGrid,
  invocationIndex,
  type KernelProgram,
  WORKGROUP,
} from "../kernel.ts";

export interface ScanSpec {
  label: string;
  outer: number;
  length: number;
  inner: number;
  reverse: boolean;
  exclusive: boolean;
  type: ScalarType;
  x: number;
  out: number;
}

export function scanShader(s: ScanSpec): KernelProgram {
  const bindings: Binding[] = [
    { slot: s.x, type: s.type, write: false },
    { slot: s.out, type: s.type, write: true },
  ];
  const lines = s.outer * s.inner;
  const grid = foldGrid(Math.ceil(lines / WORKGROUP));
  const t = storageType(s.type);
  const step = s.reverse ? `${s.length - 1}i - j` : "j";
  const update = s.exclusive
    ? `let v = buf${s.x}[p]; buf${s.out}[p] = acc; acc = acc + v;`
    : `acc = acc + buf${s.x}[p]; buf${s.out}[p] = acc;`;
  const code = `${bindingDecls(bindings)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let line = ${invocationIndex(grid)};
  if (line >= ${lines}i) { return; }
  let o = line / ${s.inner}i;
  let i = line % ${s.inner}i;
  var acc: ${t} = ${literal(0, s.type === "bool" ? "u32" : s.type)};
  for (var j = 0i; j < ${s.length}i; j++) {
    let p = (o * ${s.length}i + ${step}) * ${s.inner}i + i;
    ${update}
  }
}
`;
  return { label: s.label, code, bindings, grid };
}
