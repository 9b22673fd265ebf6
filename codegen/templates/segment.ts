/**
 * Segment sums: out[s] = Σ x[order[p]] over the positions p of segment s (offsets[s] ≤ p <
 * offsets[s+1], clipped to a row range), summed in position order by one invocation per output
 * element (four columns per invocation when the rows allow vec4 reads). With `order` sorted
 * stably by target this is a scatter-add whose result does not depend on thread timing. The
 * legalizer bounds each range's length to respect the per-invocation loop cap.
 */
import {
  type Binding,
  bindingDecls,
  foldGrid,
  invocationIndex,
  type KernelProgram,
  uniqueBindings,
  WORKGROUP,
} from "../kernel.ts";

export interface SegmentSumSpec {
  label: string;
  /** Segments and row length. */
  S: number;
  L: number;
  rows: [number, number];
  x: number;
  order: number;
  offsets: number;
  out: number;
}

export function segmentSumShader(s: SegmentSumSpec): KernelProgram {
  const vec = s.L % 4 === 0 && s.L > 0;
  const W = vec ? s.L / 4 : s.L;
  const T = vec ? "vec4<f32>" : "f32";
  const bindings: Binding[] = uniqueBindings([
    { slot: s.x, type: "f32", write: false, vec4: vec },
    { slot: s.order, type: "i32", write: false },
    { slot: s.offsets, type: "i32", write: false },
    { slot: s.out, type: "f32", write: true, vec4: vec },
  ]);
  const total = s.S * W;
  const grid = foldGrid(Math.ceil(total / WORKGROUP));
  const code = `${bindingDecls(bindings)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = ${invocationIndex(grid)};
  if (t >= ${total}i) { return; }
  let seg = t / ${W}i;
  let col = t % ${W}i;
  let first = max(buf${s.offsets}[seg], ${s.rows[0]}i);
  let last = min(buf${s.offsets}[seg + 1], ${s.rows[1]}i);
  var acc = ${T}(0.0);
  for (var p = first; p < last; p++) {
    acc += buf${s.x}[buf${s.order}[p] * ${W}i + col];
  }
  buf${s.out}[t] = acc;
}
`;
  return { label: s.label, code, bindings, grid };
}
