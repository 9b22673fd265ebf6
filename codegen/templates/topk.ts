/**
 * Top-k indices along the last axis: one invocation per row makes k selection passes, each
 * picking the best element strictly after the previous pick in the order (value descending,
 * index ascending). That order is exactly "sorted descending, ties to the lower index". The
 * legalizer bounds k·n per row (chunked top-k above that) to respect the loop cap.
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

export interface TopkSpec {
  label: string;
  rows: number;
  n: number;
  k: number;
  type: ScalarType;
  x: number;
  out: number;
}

export function topkShader(s: TopkSpec): KernelProgram {
  const bindings: Binding[] = [
    { slot: s.x, type: s.type, write: false },
    { slot: s.out, type: "i32", write: true },
  ];
  const grid = foldGrid(Math.ceil(s.rows / WORKGROUP));
  const t = storageType(s.type);
  // The order: NaN first (the largest, as max and argmax treat it), larger values first, then
  // the lower index.
  const nan = (v: string) =>
    s.type === "f32" ? `((bitcast<u32>(${v}) & 0x7fffffffu) > 0x7f800000u)` : "false";
  const code = `${bindingDecls(bindings)}
fn before(v: ${t}, i: i32, w: ${t}, j: i32) -> bool {
  let nv = ${nan("v")};
  let nw = ${nan("w")};
  if (nv != nw) { return nv; }
  if (!nv && v != w) { return v > w; }
  return i < j;
}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = ${invocationIndex(grid)};
  if (row >= ${s.rows}i) { return; }
  let base = row * ${s.n}i;
  var prevIdx = -1i;
  var prevVal: ${t};
  for (var j = 0i; j < ${s.k}i; j++) {
    var bestIdx = -1i;
    var bestVal: ${t};
    for (var i = 0i; i < ${s.n}i; i++) {
      let v = buf${s.x}[base + i];
      let after = prevIdx < 0i || before(prevVal, prevIdx, v, i);
      if (after && (bestIdx < 0i || before(v, i, bestVal, bestIdx))) {
        bestIdx = i;
        bestVal = v;
      }
    }
    buf${s.out}[row * ${s.k}i + j] = bestIdx;
    prevIdx = bestIdx;
    prevVal = bestVal;
  }
}
`;
  return { label: s.label, code, bindings, grid };
}
