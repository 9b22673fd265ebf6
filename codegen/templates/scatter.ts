/**
 * Integer scatter-add along one axis: out[o, idx[p], i] += upd[p] with atomicAdd, whose result
 * is exact in any order. (f32 scatter-adds are sorted by target and summed per segment instead,
 * src/passes/scatter.ts: float atomics would make results depend on thread timing.) The target
 * is zeroed by a separate fill kernel first.
 */
import { storageType } from "../emit.ts";
import type { ScalarType } from "../exp.ts";
import {
  type Binding,
  bindingDecls,
  foldGrid,
  invocationIndex,
  type KernelProgram,
  WORKGROUP,
} from "../kernel.ts";

export interface ScatterSpec {
  label: string;
  /** Update elements: outer × m × inner. */
  outer: number;
  m: number;
  inner: number;
  /** Size of the target axis. */
  n: number;
  type: ScalarType;
  upd: number;
  idx: number;
  out: number;
}

export function fillShader(
  label: string,
  n: number,
  slot: number,
  type: ScalarType,
): KernelProgram {
  const bindings: Binding[] = [{ slot, type, write: true }];
  const grid = foldGrid(Math.ceil(n / WORKGROUP));
  const code = `${bindingDecls(bindings)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${invocationIndex(grid)};
  if (i >= ${n}i) { return; }
  buf${slot}[i] = ${storageType(type)}(0);
}
`;
  return { label, code, bindings, grid };
}

export function scatterAddShader(s: ScatterSpec): KernelProgram {
  if (s.type !== "i32" && s.type !== "u32") {
    throw new Error(`internal: a ${s.type} scatter-add reached the atomic template`);
  }
  const total = s.outer * s.m * s.inner;
  const bindings: Binding[] = [
    { slot: s.upd, type: s.type, write: false },
    { slot: s.idx, type: "i32", write: false },
    { slot: s.out, type: s.type, write: true, atomic: true },
  ];
  const grid = foldGrid(Math.ceil(total / WORKGROUP));
  const add = `atomicAdd(&buf${s.out}[t], ${storageType(s.type)}(v));`;
  const code = `${bindingDecls(bindings)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let p = ${invocationIndex(grid)};
  if (p >= ${total}i) { return; }
  let i = p % ${s.inner}i;
  let o = p / ${s.m * s.inner}i;
  let j = buf${s.idx}[p];
  if (j < 0i || j >= ${s.n}i) { return; }
  let t = (o * ${s.n}i + j) * ${s.inner}i + i;
  let v = buf${s.upd}[p];
  ${add}
}
`;
  return { label: s.label, code, bindings, grid };
}
