/**
 * Batched matmul C[b] = A[b] · B[b] over row-major operands, with an epilogue hook (a fused
 * elementwise consumer of each output element).
 *
 * Fast path (N and K multiples of 4): each invocation owns a block of R rows × C vec4 column
 * groups and streams K in steps of 4 with vec4 loads of B; every invocation of a workgroup reads
 * the same A rows, so they are uniform loads. No workgroup memory and no barriers: on llvmpipe
 * that beats shared-memory tiling several times (research/perf-peers.md). Measured here on
 * 1024³: R=8,C=1,WG=64 ≈ 10 GFLOP/s; R=16,C=4,WG=16 ≈ 27; R=32,C=4,WG=8 ≈ 31–36 (WG = 8 is
 * llvmpipe's SIMD width). Smaller tiles are chosen when the big one would leave too few
 * workgroups. The k-loop runs K/4 times, under the 65,535-iteration cap because the legalizer
 * splits K > 32,768 first.
 */
import { Emitter } from "../emit.ts";
import { type Exp, walk } from "../exp.ts";
import { type Binding, bindingDecls, MAX_GRID, type ShaderProgram } from "../kernel.ts";

export interface MatmulSpec {
  label: string;
  batch: number;
  M: number;
  K: number;
  N: number;
  /** Local binding slots of A, B and the output. */
  a: number;
  b: number;
  out: number;
  /** Elements between consecutive batches of A and B (0 when broadcast). */
  strideA: number;
  strideB: number;
  /** f32 over vars mm_v, mm_b, mm_m, mm_n (and loads of other slots); null for none. */
  epilogue: Exp | null;
}

/** Register-block configurations, largest first: rows, vec4 column groups, workgroup size. */
const VEC_CONFIGS: [number, number, number][] = [[32, 4, 8], [16, 4, 8], [16, 2, 8], [8, 2, 8], [
  8,
  1,
  8,
], [4, 1, 8]];
const SCALAR_ROWS = 8;
const SCALAR_WG = 8;
/** Enough workgroups to keep every CPU thread (or GPU core group) busy. */
const MIN_WORKGROUPS = 32;

function pickConfig(M: number, N4: number, batch: number): [number, number, number] {
  for (const c of VEC_CONFIGS) {
    const [R, C, WG] = c;
    const groups = Math.ceil(N4 / (C * WG)) * Math.ceil(M / R) * batch;
    if (groups >= MIN_WORKGROUPS) return c;
  }
  return VEC_CONFIGS[VEC_CONFIGS.length - 1];
}

function epilogueFn(epi: Exp | null, extra: Map<number, Binding>): string {
  if (!epi) {
    return `fn mm_epilogue(mm_v: f32, mm_b: i32, mm_m: i32, mm_n: i32) -> f32 { return mm_v; }`;
  }
  walk([epi], (e) => {
    if (e.op === "load") {
      extra.set(e.attr as number, { slot: e.attr as number, type: e.type, write: false });
    }
  });
  const em = new Emitter((s) => `buf${s}`);
  const seg = em.segment(false, ["mm_v", "mm_b", "mm_m", "mm_n"]);
  em.count([epi]);
  const v = em.render(epi, seg);
  return `${em.helperText()}
fn mm_epilogue(mm_v: f32, mm_b: i32, mm_m: i32, mm_n: i32) -> f32 {
${em.lines(seg).map((l) => "  " + l).join("\n")}
  return ${v};
}`;
}

/** Splits a 2-D count of blocks (rows × batch) over grid y and z within the limits. */
function blockGrid(rowBlocks: number, batch: number): { y: number; z: number } {
  const total = rowBlocks * batch;
  if (total <= MAX_GRID) return { y: total, z: 1 };
  const z = Math.ceil(total / MAX_GRID);
  return { y: Math.ceil(total / z), z };
}

export function matmulShader(s: MatmulSpec): ShaderProgram {
  const vec = s.N % 4 === 0 && s.K % 4 === 0 && s.N > 0;
  const extra = new Map<number, Binding>();
  const epi = epilogueFn(s.epilogue, extra);
  extra.delete(s.a);
  extra.delete(s.b);
  extra.delete(s.out);
  const bindings: Binding[] = [
    { slot: s.a, type: "f32", write: false, vec4: vec },
    { slot: s.b, type: "f32", write: false, vec4: vec },
    ...[...extra.values()].sort((x, y) => x.slot - y.slot),
    { slot: s.out, type: "f32", write: true, vec4: vec },
  ];
  const [rows, C, WG] = vec ? pickConfig(s.M, s.N / 4, s.batch) : [SCALAR_ROWS, 1, SCALAR_WG];
  const rowBlocks = Math.max(1, Math.ceil(s.M / rows));
  const colGroups = vec ? Math.ceil(s.N / 4 / C) : s.N;
  const { y, z } = blockGrid(rowBlocks, s.batch);
  const grid: [number, number, number] = [Math.max(1, Math.ceil(colGroups / WG)), y, z];
  const head = `${bindingDecls(bindings)}
${epi}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let cg = i32(gid.x);
  let block = i32(gid.y + gid.z * ${y}u);
  if (cg >= ${colGroups}i || block >= ${rowBlocks * s.batch}i) { return; }
  let bt = block / ${rowBlocks}i;
  let m0 = (block % ${rowBlocks}i) * ${rows}i;
  let aBase = bt * ${s.strideA}i;
  let bBase = bt * ${s.strideB}i;
  let oBase = bt * ${s.M * s.N}i;`;
  const R = Array.from({ length: rows }, (_, i) => i);
  const Cs = Array.from({ length: C }, (_, j) => j);
  let body: string;
  if (vec) {
    const K4 = s.K / 4, N4 = s.N / 4;
    // Column groups past N (when C does not divide N/4) read a clamped column and skip stores.
    body = `
  let col = cg * ${C}i;
${Cs.map((j) => `  let c${j} = min(col + ${j}i, ${N4 - 1}i);`).join("\n")}
${R.map((i) => `  let ra${i} = aBase / 4i + min(m0 + ${i}i, ${s.M - 1}i) * ${K4}i;`).join("\n")}
${R.map((i) => Cs.map((j) => `  var acc${i}_${j} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  var bk = bBase / 4i;
  for (var k = 0i; k < ${K4}i; k++) {
${
      Cs.map((j) =>
        [0, 1, 2, 3].map((q) => `    let b${q}_${j} = buf${s.b}[bk + ${q * N4}i + c${j}];`).join(
          "\n",
        )
      ).join("\n")
    }
    bk += ${4 * N4}i;
${
      R.map((i) =>
        `    let a${i} = buf${s.a}[ra${i} + k];
${
          Cs.map((j) =>
            `    acc${i}_${j} = fma(vec4<f32>(a${i}.x), b0_${j}, fma(vec4<f32>(a${i}.y), b1_${j}, fma(vec4<f32>(a${i}.z), b2_${j}, fma(vec4<f32>(a${i}.w), b3_${j}, acc${i}_${j}))));`
          ).join("\n")
        }`
      ).join("\n")
    }
  }
${
      R.map((i) =>
        `  if (m0 + ${i}i < ${s.M}i) {
    let m = m0 + ${i}i;
    let ro = (oBase + m * ${s.N}i) / 4i;
${
          Cs.map((j) =>
            `    if (col + ${j}i < ${N4}i) {
      let n = (col + ${j}i) * 4i;
      let v = acc${i}_${j};
      buf${s.out}[ro + col + ${j}i] = vec4<f32>(mm_epilogue(v.x, bt, m, n), mm_epilogue(v.y, bt, m, n + 1i), mm_epilogue(v.z, bt, m, n + 2i), mm_epilogue(v.w, bt, m, n + 3i));
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
${
      R.map((i) => `  let ra${i} = aBase + min(m0 + ${i}i, ${Math.max(0, s.M - 1)}i) * ${s.K}i;`)
        .join("\n")
    }
${R.map((i) => `  var acc${i} = 0.0;`).join("\n")}
  for (var k = 0i; k < ${s.K}i; k++) {
    let bv = buf${s.b}[bBase + k * ${s.N}i + col];
${R.map((i) => `    acc${i} = fma(buf${s.a}[ra${i} + k], bv, acc${i});`).join("\n")}
  }
${
      R.map((i) =>
        `  if (m0 + ${i}i < ${s.M}i) {
    let m = m0 + ${i}i;
    buf${s.out}[oBase + m * ${s.N}i + col] = mm_epilogue(acc${i}, bt, m, col);
  }`
      ).join("\n")
    }
}
`;
  }
  return { label: s.label, code: head + body, bindings, grid };
}
