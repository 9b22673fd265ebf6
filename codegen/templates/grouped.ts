/**
 * Grouped (per-expert) matmuls over expert-contiguous rows, with the segment offsets on the
 * device: no host readback decides the work. The grid is sized for the worst case
 * (ceil(R / TR) + E row tiles); each tile finds its expert by walking the offsets, so tiles
 * never straddle two experts and unused tiles exit at once.
 *
 *  - groupedMatmulShader: out[r] = A[r] · B[e] (B stored [E, K, N]), A rows optionally gathered
 *    through a row index (dispatch fused into the read), with an epilogue hook.
 *  - groupedWgradShader: out[e] = Σ_{r ∈ segment e ∩ [r0, r1)} A[r]ᵀ ⊗ G[r] (rank-1 updates),
 *    A rows optionally gathered.
 *
 * Register blocking as in matmul.ts (uniform A loads, vec4 B loads, no barriers).
 */
import { epilogueFn } from "./matmul.ts";
import type { Exp } from "../exp.ts";
import {
  type Binding,
  bindingDecls,
  type KernelProgram,
  MAX_GRID,
  uniqueBindings,
} from "../kernel.ts";

export interface GroupedSpec {
  label: string;
  R: number;
  K: number;
  N: number;
  E: number;
  /** Slots: A rows (or the gathered-from matrix X), B [E, K, N], offsets [E+1], output. */
  a: number;
  b: number;
  offsets: number;
  out: number;
  /** When set, A row r is X[rowIndex[r]] and `a` is X ([T, K]). */
  rowIndex?: number;
  /** B is stored [E, N, K] (each expert's matrix transposed); C target only. */
  transB?: boolean;
  /** f32 epilogue over mm_v, mm_b (expert), mm_m (row), mm_n (column). */
  epilogue: Exp | null;
}

export interface WgradSpec {
  label: string;
  R: number;
  K: number;
  N: number;
  E: number;
  rows: [number, number];
  a: number;
  g: number;
  offsets: number;
  out: number;
  rowIndex?: number;
  /** The output is stored [E, N, K] (each expert's gradient transposed); C target only. */
  transOut?: boolean;
}

type Config = [rows: number, colGroups: number, workgroup: number];
const CONFIGS: Config[] = [[16, 4, 8], [16, 2, 8], [8, 2, 8], [8, 1, 8], [4, 1, 8]];
const MIN_WORKGROUPS = 32;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function grid2(total: number): { y: number; z: number } {
  if (total <= MAX_GRID) return { y: Math.max(1, total), z: 1 };
  const z = Math.ceil(total / MAX_GRID);
  return { y: Math.ceil(total / z), z };
}

export function groupedMatmulShader(s: GroupedSpec): KernelProgram {
  if (s.transB) throw new Error("internal: the WGSL grouped matmul reads B as [E, K, N] only");
  const vec = s.N % 4 === 0 && s.K % 4 === 0 && s.N > 0;
  const extra = new Map<number, Binding>();
  const epi = epilogueFn(s.epilogue, extra);
  for (const slot of [s.a, s.b, s.offsets, s.out, s.rowIndex]) {
    if (slot !== undefined) extra.delete(slot);
  }
  const bindings: Binding[] = uniqueBindings([
    { slot: s.a, type: "f32", write: false, vec4: vec },
    { slot: s.b, type: "f32", write: false, vec4: vec },
    { slot: s.offsets, type: "i32", write: false },
    ...(s.rowIndex !== undefined ? [{ slot: s.rowIndex, type: "i32" as const, write: false }] : []),
    ...[...extra.values()].sort((x, y) => x.slot - y.slot),
    { slot: s.out, type: "f32", write: true, vec4: vec },
  ]);
  const N4 = s.N / 4;
  let [TR, C, WG]: Config = [8, 1, 8];
  if (vec) {
    const per = Math.max(1, s.R / s.E);
    for (const c of CONFIGS) {
      const tiles = Math.ceil(s.R / c[0]) + s.E;
      if (c[0] <= Math.max(4, per) && Math.ceil(N4 / (c[1] * c[2])) * tiles >= MIN_WORKGROUPS) {
        [TR, C, WG] = c;
        break;
      }
      [TR, C, WG] = c;
    }
  }
  // Σ_e ceil(count_e / TR) + ceil(tail / TR) ≤ ceil(R / TR) + E + 1: the worst case.
  const tiles = Math.ceil(s.R / TR) + s.E + 1;
  const colGroups = vec ? Math.ceil(N4 / C) : s.N;
  const { y, z } = grid2(tiles);
  const grid: [number, number, number] = [Math.max(1, Math.ceil(colGroups / WG)), y, z];
  const rs = range(TR), cs = range(C);
  const rowOf = (r: string) => (s.rowIndex !== undefined ? `buf${s.rowIndex}[${r}]` : r);
  const head = `${bindingDecls(bindings)}
${epi}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let cg = i32(gid.x);
  let tile = i32(gid.y + gid.z * ${y}u);
  if (cg >= ${colGroups}i || tile >= ${tiles}i) { return; }
  // Which expert owns this tile: walk the per-expert tile counts.
  var e = -1i;
  var lt = 0i;
  var seen = 0i;
  for (var i = 0i; i < ${s.E}i; i++) {
    let cnt = buf${s.offsets}[i + 1] - buf${s.offsets}[i];
    let nt = (cnt + ${TR - 1}i) / ${TR}i;
    if (e < 0i && tile < seen + nt) {
      e = i;
      lt = tile - seen;
    }
    seen += nt;
  }
  if (e < 0i) {
    // Rows past the last segment belong to no expert: they are zeros.
    let tail = buf${s.offsets}[${s.E}i];
    let z0 = tail + (tile - seen) * ${TR}i;
    if (z0 >= ${s.R}i || z0 < tail) { return; }
    for (var i = 0i; i < ${TR}i; i++) {
      if (z0 + i >= ${s.R}i) { break; }
      ${
    vec
      ? `for (var j = 0i; j < ${C}i; j++) { if (cg * ${C}i + j < ${N4}i) { buf${s.out}[(z0 + i) * ${N4}i + cg * ${C}i + j] = vec4<f32>(0.0); } }`
      : `buf${s.out}[(z0 + i) * ${s.N}i + cg] = 0.0;`
  }
    }
    return;
  }
  let m0 = buf${s.offsets}[e] + lt * ${TR}i;
  let mEnd = buf${s.offsets}[e + 1];`;
  let body: string;
  if (vec) {
    const K4 = s.K / 4;
    body = `
  let col = cg * ${C}i;
${cs.map((j) => `  let c${j} = min(col + ${j}i, ${N4 - 1}i);`).join("\n")}
${rs.map((i) => `  let ra${i} = ${rowOf(`min(m0 + ${i}i, mEnd - 1i)`)} * ${K4}i;`).join("\n")}
${rs.map((i) => cs.map((j) => `  var acc${i}_${j} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  var bk = e * ${s.K * N4}i;
  for (var k = 0i; k < ${K4}i; k++) {
${
      cs.map((j) =>
        range(4).map((q) => `    let b${q}_${j} = buf${s.b}[bk + ${q * N4}i + c${j}];`).join("\n")
      ).join("\n")
    }
    bk += ${4 * N4}i;
${
      rs.map((i) =>
        `    let a${i} = buf${s.a}[ra${i} + k];
${
          cs.map((j) =>
            `    acc${i}_${j} = fma(vec4<f32>(a${i}.x), b0_${j}, fma(vec4<f32>(a${i}.y), b1_${j}, fma(vec4<f32>(a${i}.z), b2_${j}, fma(vec4<f32>(a${i}.w), b3_${j}, acc${i}_${j}))));`
          ).join("\n")
        }`
      ).join("\n")
    }
  }
${
      rs.map((i) =>
        `  if (m0 + ${i}i < mEnd) {
    let m = m0 + ${i}i;
${
          cs.map((j) =>
            `    if (col + ${j}i < ${N4}i) {
      let n = (col + ${j}i) * 4i;
      let v = acc${i}_${j};
      buf${s.out}[m * ${N4}i + col + ${j}i] = vec4<f32>(mm_epilogue(v.x, e, m, n), mm_epilogue(v.y, e, m, n + 1i), mm_epilogue(v.z, e, m, n + 2i), mm_epilogue(v.w, e, m, n + 3i));
    }`
          ).join("\n")
        }
  }`
      ).join("\n")
    }
}
`;
  } else {
    body = `
  let col = cg;
${rs.map((i) => `  let ra${i} = ${rowOf(`min(m0 + ${i}i, mEnd - 1i)`)} * ${s.K}i;`).join("\n")}
${rs.map((i) => `  var acc${i} = 0.0;`).join("\n")}
  for (var k = 0i; k < ${s.K}i; k++) {
    let bv = buf${s.b}[(e * ${s.K}i + k) * ${s.N}i + col];
${rs.map((i) => `    acc${i} = fma(buf${s.a}[ra${i} + k], bv, acc${i});`).join("\n")}
  }
${
      rs.map((i) =>
        `  if (m0 + ${i}i < mEnd) {
    let m = m0 + ${i}i;
    buf${s.out}[m * ${s.N}i + col] = mm_epilogue(acc${i}, e, m, col);
  }`
      ).join("\n")
    }
}
`;
  }
  return {
    label: `${s.label} (grouped ${vec ? "vec" : "scalar"} ${TR}x${vec ? 4 * C : 1})`,
    code: head + body,
    bindings,
    grid,
  };
}

export function groupedWgradShader(s: WgradSpec): KernelProgram {
  if (s.transOut) throw new Error("internal: the WGSL weight gradient writes [E, K, N] only");
  const vec = s.N % 4 === 0 && s.K % 4 === 0 && s.N > 0;
  const bindings: Binding[] = uniqueBindings([
    { slot: s.a, type: "f32", write: false, vec4: vec },
    { slot: s.g, type: "f32", write: false, vec4: vec },
    { slot: s.offsets, type: "i32", write: false },
    ...(s.rowIndex !== undefined ? [{ slot: s.rowIndex, type: "i32" as const, write: false }] : []),
    { slot: s.out, type: "f32", write: true, vec4: vec },
  ]);
  const N4 = s.N / 4, K4 = s.K / 4;
  // Rows of the output are the K dimension; tiles of TM (multiple of 4) × C vec4 columns.
  const configs: Config[] = [[16, 4, 8], [16, 2, 8], [8, 2, 8], [8, 1, 8], [4, 1, 8]];
  let [TM, C, WG]: Config = [8, 1, 8];
  if (vec) {
    for (const c of configs) {
      [TM, C, WG] = c;
      if (Math.ceil(N4 / (c[1] * c[2])) * Math.ceil(s.K / c[0]) * s.E >= MIN_WORKGROUPS) break;
    }
  }
  const mBlocks = Math.ceil(s.K / TM);
  const colGroups = vec ? Math.ceil(N4 / C) : s.N;
  const { y, z } = grid2(mBlocks * s.E);
  const grid: [number, number, number] = [Math.max(1, Math.ceil(colGroups / WG)), y, z];
  const rowOf = (r: string) => (s.rowIndex !== undefined ? `buf${s.rowIndex}[${r}]` : r);
  const head = `${bindingDecls(bindings)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let cg = i32(gid.x);
  let block = i32(gid.y + gid.z * ${y}u);
  if (cg >= ${colGroups}i || block >= ${mBlocks * s.E}i) { return; }
  let e = block / ${mBlocks}i;
  let m0 = (block % ${mBlocks}i) * ${TM}i;
  let rStart = max(buf${s.offsets}[e], ${s.rows[0]}i);
  let rEnd = min(buf${s.offsets}[e + 1], ${s.rows[1]}i);
  let oBase = e * ${s.K * s.N}i;`;
  let body: string;
  if (vec) {
    const qs = range(TM / 4), cs = range(C), lane = ["x", "y", "z", "w"];
    body = `
  let col = cg * ${C}i;
${cs.map((j) => `  let c${j} = min(col + ${j}i, ${N4 - 1}i);`).join("\n")}
${qs.map((q) => `  let am${q} = min(m0 / 4i + ${q}i, ${K4 - 1}i);`).join("\n")}
${range(TM).map((i) => cs.map((j) => `  var acc${i}_${j} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  for (var r = rStart; r < rEnd; r++) {
    let ar = ${rowOf("r")} * ${K4}i;
${cs.map((j) => `    let b${j} = buf${s.g}[r * ${N4}i + c${j}];`).join("\n")}
${
      qs.map((q) =>
        `    let a${q} = buf${s.a}[ar + am${q}];
${
          range(4).map((l) =>
            cs.map((j) =>
              `    acc${4 * q + l}_${j} = fma(vec4<f32>(a${q}.${lane[l]}), b${j}, acc${
                4 * q + l
              }_${j});`
            ).join("\n")
          ).join("\n")
        }`
      ).join("\n")
    }
  }
${
      range(TM).map((i) =>
        `  if (m0 + ${i}i < ${s.K}i) {
${
          cs.map((j) =>
            `    if (col + ${j}i < ${N4}i) { buf${s.out}[(oBase + (m0 + ${i}i) * ${s.N}i) / 4i + col + ${j}i] = acc${i}_${j}; }`
          ).join("\n")
        }
  }`
      ).join("\n")
    }
}
`;
  } else {
    body = `
  let col = cg;
${range(TM).map((i) => `  var acc${i} = 0.0;`).join("\n")}
  for (var r = rStart; r < rEnd; r++) {
    let ar = ${rowOf("r")} * ${s.K}i;
    let gv = buf${s.g}[r * ${s.N}i + col];
${
      range(TM).map((i) =>
        `    acc${i} = fma(buf${s.a}[ar + min(m0 + ${i}i, ${s.K - 1}i)], gv, acc${i});`
      ).join("\n")
    }
  }
${
      range(TM).map((i) =>
        `  if (m0 + ${i}i < ${s.K}i) { buf${s.out}[oBase + (m0 + ${i}i) * ${s.N}i + col] = acc${i}; }`
      ).join("\n")
    }
}
`;
  }
  return {
    label: `${s.label} (wgrad ${vec ? "vec" : "scalar"} ${TM}x${vec ? 4 * C : 1})`,
    code: head + body,
    bindings,
    grid,
  };
}
