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
  type ShaderProgram,
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

export function topkShader(s: TopkSpec): ShaderProgram {
  const bindings: Binding[] = [
    { slot: s.x, type: s.type, write: false },
    { slot: s.out, type: "i32", write: true },
  ];
  const grid = foldGrid(Math.ceil(s.rows / WORKGROUP));
  // Values are compared as f32 keys; NaN ranks below everything, like the interpreter.
  const key = s.type === "f32"
    ? `select(v0, bitcast<f32>(0xff800000u), (bitcast<u32>(v0) & 0x7fffffffu) > 0x7f800000u)`
    : "v0";
  const t = storageType(s.type);
  const code = `${bindingDecls(bindings)}
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
      let v0 = buf${s.x}[base + i];
      let v = ${key};
      let after = prevIdx < 0i || v < prevVal || (v == prevVal && i > prevIdx);
      if (after && (bestIdx < 0i || v > bestVal)) {
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
