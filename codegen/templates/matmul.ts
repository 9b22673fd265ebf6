/**
 * Batched matmul C[b] = A[b] · B[b] over row-major operands, with an epilogue hook (a fused
 * elementwise consumer of each output element).
 *
 * Fast path (N and K multiples of 4): each invocation owns one vec4 column group over R rows
 * and streams K in steps of 4 with vec4 loads of B; every invocation of a workgroup reads the same
 * A rows, so they are uniform loads. No workgroup memory and no barriers: on llvmpipe that beats
 * shared-memory tiling several times (research/perf-peers.md). The k-loop runs K/4 times, well
 * under the 65,535-iteration cap because the legalizer splits K > 32,768 first.
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

const ROWS = 8;
const WG = 64;
const SCALAR_ROWS = 4;

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
  const rows = vec ? ROWS : SCALAR_ROWS;
  const rowBlocks = Math.max(1, Math.ceil(s.M / rows));
  const cols = vec ? s.N / 4 : s.N;
  const { y, z } = blockGrid(rowBlocks, s.batch);
  const grid: [number, number, number] = [Math.max(1, Math.ceil(cols / WG)), y, z];
  const head = `${bindingDecls(bindings)}
${epi}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = i32(gid.x);
  let block = i32(gid.y + gid.z * ${y}u);
  if (col >= ${cols}i || block >= ${rowBlocks * s.batch}i) { return; }
  let bt = block / ${rowBlocks}i;
  let m0 = (block % ${rowBlocks}i) * ${rows}i;
  let aBase = bt * ${s.strideA}i;
  let bBase = bt * ${s.strideB}i;
  let oBase = bt * ${s.M * s.N}i;`;
  const rowIdx = Array.from({ length: rows }, (_, i) => i);
  let body: string;
  if (vec) {
    const K4 = s.K / 4, N4 = s.N / 4;
    body = `
${
      rowIdx.map((i) => `  let ra${i} = aBase / 4i + min(m0 + ${i}i, ${s.M - 1}i) * ${K4}i;`).join(
        "\n",
      )
    }
${rowIdx.map((i) => `  var acc${i} = vec4<f32>(0.0);`).join("\n")}
  var bi = bBase / 4i + col;
  for (var k = 0i; k < ${K4}i; k++) {
    let b0 = buf${s.b}[bi];
    let b1 = buf${s.b}[bi + ${N4}i];
    let b2 = buf${s.b}[bi + ${2 * N4}i];
    let b3 = buf${s.b}[bi + ${3 * N4}i];
    bi += ${4 * N4}i;
${
      rowIdx.map((i) =>
        `    let a${i} = buf${s.a}[ra${i} + k];
    acc${i} = fma(vec4<f32>(a${i}.x), b0, fma(vec4<f32>(a${i}.y), b1, fma(vec4<f32>(a${i}.z), b2, fma(vec4<f32>(a${i}.w), b3, acc${i}))));`
      ).join("\n")
    }
  }
  let n0 = col * 4i;
${
      rowIdx.map((i) =>
        `  if (m0 + ${i}i < ${s.M}i) {
    let m = m0 + ${i}i;
    buf${s.out}[(oBase + m * ${s.N}i) / 4i + col] = vec4<f32>(mm_epilogue(acc${i}.x, bt, m, n0), mm_epilogue(acc${i}.y, bt, m, n0 + 1i), mm_epilogue(acc${i}.z, bt, m, n0 + 2i), mm_epilogue(acc${i}.w, bt, m, n0 + 3i));
  }`
      ).join("\n")
    }
}
`;
  } else {
    body = `
${
      rowIdx.map((i) =>
        `  let ra${i} = aBase + min(m0 + ${i}i, ${Math.max(0, s.M - 1)}i) * ${s.K}i;`
      ).join("\n")
    }
${rowIdx.map((i) => `  var acc${i} = 0.0;`).join("\n")}
  for (var k = 0i; k < ${s.K}i; k++) {
    let bv = buf${s.b}[bBase + k * ${s.N}i + col];
${rowIdx.map((i) => `    acc${i} = fma(buf${s.a}[ra${i} + k], bv, acc${i});`).join("\n")}
  }
${
      rowIdx.map((i) =>
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
