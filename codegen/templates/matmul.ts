/**
 * Batched matmul C[b] = A[b] · B[b], with read hooks (prologues: a fused elementwise producer
 * applied to each element read from A or B) and a write hook (an epilogue: a fused elementwise
 * consumer of each output element). Operands are row-major buffers, each possibly stored
 * transposed (so the transposes of a backward pass cost nothing) and possibly broadcast over the
 * batch.
 *
 * Register blocking without workgroup memory or barriers, which is what llvmpipe runs fastest
 * (measured on llvmpipe; see the template's notes): each invocation owns R output rows × C vec4 column groups; A values
 * are identical across a workgroup (uniform loads), B values are vec4 loads. Measured on this
 * machine at 1024³ (NN): R=8,C=1,WG=64 ≈ 10 GFLOP/s; R=16,C=4,WG=16 ≈ 27; R=32,C=4,WG=8 ≈ 31–36
 * (8 is llvmpipe's SIMD width). Smaller tiles are chosen when a big one would leave too few
 * workgroups. Layouts:
 *  - NN: A[m,k], B[k,n] — k advances by 4 (vec4 of A along k, four vec4 rows of B);
 *  - TN: A stored [k,m], B[k,n] — k advances by 1 (vec4 of A along m: a rank-1 update);
 *  - NT: A[m,k], B stored [n,k] — k advances by 4, vec4 products summed at the end;
 *  - anything else (odd sizes, TT): a strided scalar kernel.
 * Loops run at most K iterations; the legalizer splits K > 32,768 first (loop cap 65,535).
 */
import { Emitter, helperText } from "../emit.ts";
import { type Exp, walk } from "../exp.ts";
import {
  type Binding,
  bindingDecls,
  type KernelProgram,
  MAX_GRID,
  uniqueBindings,
} from "../kernel.ts";

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
  /** A is stored as [K, M] / B is stored as [N, K] (row-major). */
  transA?: boolean;
  transB?: boolean;
  /**
   * Prologues of A and B: f32 over vars mm_v (the element read), mm_b, mm_r, mm_c (its batch and
   * logical row and column in that operand) and loads of other slots; absent or null for none.
   */
  readA?: Exp | null;
  readB?: Exp | null;
  /** f32 over vars mm_v, mm_b, mm_m, mm_n (and loads of other slots); null for none. */
  epilogue: Exp | null;
}

type Config = [rows: number, colGroups: number, workgroup: number];

/** Register-block configurations, largest first. */
const NN_CONFIGS: Config[] = [[32, 4, 8], [16, 4, 8], [16, 2, 8], [8, 2, 8], [8, 1, 8], [4, 1, 8]];
const TN_CONFIGS: Config[] = [[32, 4, 8], [16, 4, 8], [16, 2, 8], [8, 2, 8], [8, 1, 8], [4, 1, 8]];
/** NT keeps one vec4 accumulator per output element, so its tiles are smaller. */
const NT_CONFIGS: Config[] = [[8, 4, 8], [8, 2, 8], [4, 2, 8], [4, 1, 8]];
const SCALAR: Config = [8, 1, 8];
/** Enough workgroups to keep every CPU thread (or GPU core group) busy. */
const MIN_WORKGROUPS = 32;

function pick(configs: Config[], M: number, N4: number, batch: number): Config {
  for (const c of configs) {
    const [R, C, WG] = c;
    if (Math.ceil(N4 / (C * WG)) * Math.ceil(M / R) * batch >= MIN_WORKGROUPS) return c;
  }
  return configs[configs.length - 1];
}

const NO_EPILOGUE =
  `fn mm_epilogue(mm_v: f32, mm_b: i32, mm_m: i32, mm_n: i32) -> f32 { return mm_v; }`;

/**
 * A hook as a WGSL function `name(mm_v: f32, <int vars>) -> f32`; the buffers it reads are added
 * to `extra` and the helper functions it calls to `helpers`.
 */
function hookFn(
  name: string,
  vars: readonly string[],
  e: Exp,
  extra: Map<number, Binding>,
  helpers: Set<string>,
): string {
  walk([e], (x) => {
    if (x.op === "load") {
      extra.set(x.attr as number, { slot: x.attr as number, type: x.type, write: false });
    }
  });
  const em = new Emitter((s) => `buf${s}`);
  const seg = em.segment(false, ["mm_v", ...vars]);
  em.count([e]);
  const v = em.render(e, seg);
  em.helpers.forEach((h) => helpers.add(h));
  return `fn ${name}(mm_v: f32, ${vars.map((x) => `${x}: i32`).join(", ")}) -> f32 {
${em.lines(seg).map((l) => "  " + l).join("\n")}
  return ${v};
}`;
}

/**
 * The epilogue hook as a WGSL function `mm_epilogue(mm_v, mm_b, mm_m, mm_n)`; the buffers it
 * reads are added to `extra`. Shared by the matmul and grouped-matmul templates.
 */
export function epilogueFn(epi: Exp | null, extra: Map<number, Binding>): string {
  if (!epi) return NO_EPILOGUE;
  const helpers = new Set<string>();
  const fn = hookFn("mm_epilogue", ["mm_b", "mm_m", "mm_n"], epi, extra, helpers);
  return `${helperText(helpers)}\n${fn}`;
}

/**
 * A prologue as `name(mm_v, mm_b, mm_r, mm_c)` plus, for the vec4 kernels, `name4(v, b, r, c)`
 * over four consecutive elements along a row (`step` "c") or down a column ("r").
 */
function readFns(
  name: string,
  e: Exp,
  step: "r" | "c" | null,
  extra: Map<number, Binding>,
  helpers: Set<string>,
): string {
  const fn = hookFn(name, ["mm_b", "mm_r", "mm_c"], e, extra, helpers);
  if (!step) return fn;
  const lanes = ["x", "y", "z", "w"].map((l, q) => {
    const [r, c] = step === "r" ? [`r + ${q}i`, "c"] : ["r", `c + ${q}i`];
    return `${name}(v.${l}, b, ${r}, ${c})`;
  });
  return `${fn}
fn ${name}4(v: vec4<f32>, b: i32, r: i32, c: i32) -> vec4<f32> {
  return vec4<f32>(${lanes.join(", ")});
}`;
}

/** The hook functions; without prologues exactly the epilogue's text as before they existed. */
function hooksText(s: MatmulSpec, variant: Variant, extra: Map<number, Binding>): string {
  if (!s.readA && !s.readB) return epilogueFn(s.epilogue, extra);
  const helpers = new Set<string>();
  const vec = variant !== "scalar";
  const fns = [
    s.epilogue
      ? hookFn("mm_epilogue", ["mm_b", "mm_m", "mm_n"], s.epilogue, extra, helpers)
      : NO_EPILOGUE,
  ];
  // A vec4 of A runs along k (a row), except in TN where A is stored [K, M]; one of B runs
  // along n (a row), except in NT where B is stored [N, K].
  if (s.readA) {
    fns.push(
      readFns("mm_readA", s.readA, vec ? (variant === "TN" ? "r" : "c") : null, extra, helpers),
    );
  }
  if (s.readB) {
    fns.push(
      readFns("mm_readB", s.readB, vec ? (variant === "NT" ? "r" : "c") : null, extra, helpers),
    );
  }
  return `${helperText(helpers)}\n${fns.join("\n")}`;
}

/** `load` (an element or vec4 of A or B) through the prologue `fn` when there is one. */
function via(e: Exp | null | undefined, fn: string, load: string, r: string, c: string): string {
  return e ? `${fn}(${load}, bt, ${r}, ${c})` : load;
}

/** Splits a 2-D count of blocks (rows × batch) over grid y and z within the limits. */
function blockGrid(rowBlocks: number, batch: number): { y: number; z: number } {
  const total = rowBlocks * batch;
  if (total <= MAX_GRID) return { y: total, z: 1 };
  const z = Math.ceil(total / MAX_GRID);
  return { y: Math.ceil(total / z), z };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

type Variant = "NN" | "TN" | "NT" | "scalar";

function variantOf(s: MatmulSpec): Variant {
  const n4 = s.N % 4 === 0 && s.N > 0;
  if (!s.transA && !s.transB && n4 && s.K % 4 === 0) return "NN";
  if (s.transA && !s.transB && n4 && s.M % 4 === 0) return "TN";
  if (!s.transA && s.transB && n4 && s.K % 4 === 0) return "NT";
  return "scalar";
}

/** Stores one vec4 of outputs (row m, columns n..n+3) through the epilogue. */
function storeVec4(out: number, N: number, value: string, m: string, nExp: string): string {
  return `buf${out}[(oBase + ${m} * ${N}i + ${nExp}) / 4i] = vec4<f32>(mm_epilogue(${value}.x, bt, ${m}, ${nExp}), mm_epilogue(${value}.y, bt, ${m}, ${nExp} + 1i), mm_epilogue(${value}.z, bt, ${m}, ${nExp} + 2i), mm_epilogue(${value}.w, bt, ${m}, ${nExp} + 3i));`;
}

function nnBody(s: MatmulSpec, R: number, C: number): string {
  const K4 = s.K / 4, N4 = s.N / 4, rs = range(R), cs = range(C);
  return `
  let col = cg * ${C}i;
${cs.map((j) => `  let c${j} = min(col + ${j}i, ${N4 - 1}i);`).join("\n")}
${rs.map((i) => `  let ra${i} = aBase / 4i + min(m0 + ${i}i, ${s.M - 1}i) * ${K4}i;`).join("\n")}
${rs.map((i) => cs.map((j) => `  var acc${i}_${j} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  var bk = bBase / 4i;
  for (var k = 0i; k < ${K4}i; k++) {
${
    cs.map((j) =>
      range(4).map((q) =>
        `    let b${q}_${j} = ${
          via(
            s.readB,
            "mm_readB4",
            `buf${s.b}[bk + ${q * N4}i + c${j}]`,
            `k * 4i + ${q}i`,
            `c${j} * 4i`,
          )
        };`
      ).join("\n")
    ).join("\n")
  }
    bk += ${4 * N4}i;
${
    rs.map((i) =>
      `    let a${i} = ${
        via(s.readA, "mm_readA4", `buf${s.a}[ra${i} + k]`, `min(m0 + ${i}i, ${s.M - 1}i)`, "k * 4i")
      };
${
        cs.map((j) =>
          `    acc${i}_${j} = fma(vec4<f32>(a${i}.x), b0_${j}, fma(vec4<f32>(a${i}.y), b1_${j}, fma(vec4<f32>(a${i}.z), b2_${j}, fma(vec4<f32>(a${i}.w), b3_${j}, acc${i}_${j}))));`
        ).join("\n")
      }`
    ).join("\n")
  }
  }
${storeBlock(s, rs, cs, (i, j) => `acc${i}_${j}`)}
}
`;
}

function tnBody(s: MatmulSpec, R: number, C: number): string {
  const M4 = s.M / 4, N4 = s.N / 4, rs = range(R), cs = range(C), qs = range(R / 4);
  const lane = ["x", "y", "z", "w"];
  return `
  let col = cg * ${C}i;
${cs.map((j) => `  let c${j} = min(col + ${j}i, ${N4 - 1}i);`).join("\n")}
${qs.map((q) => `  let am${q} = min(m0 / 4i + ${q}i, ${M4 - 1}i);`).join("\n")}
${rs.map((i) => cs.map((j) => `  var acc${i}_${j} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  var ak = aBase / 4i;
  var bk = bBase / 4i;
  for (var k = 0i; k < ${s.K}i; k++) {
${
    cs.map((j) =>
      `    let b${j} = ${via(s.readB, "mm_readB4", `buf${s.b}[bk + c${j}]`, "k", `c${j} * 4i`)};`
    ).join("\n")
  }
${
    qs.map((q) =>
      `    let a${q} = ${via(s.readA, "mm_readA4", `buf${s.a}[ak + am${q}]`, `am${q} * 4i`, "k")};
${
        range(4).map((e) =>
          cs.map((j) =>
            `    acc${4 * q + e}_${j} = fma(vec4<f32>(a${q}.${lane[e]}), b${j}, acc${
              4 * q + e
            }_${j});`
          ).join("\n")
        ).join("\n")
      }`
    ).join("\n")
  }
    ak += ${M4}i;
    bk += ${N4}i;
  }
${storeBlock(s, rs, cs, (i, j) => `acc${i}_${j}`)}
}
`;
}

function ntBody(s: MatmulSpec, R: number, C: number): string {
  // C vec4 column groups = 4C output columns, each with a vec4 accumulator per row.
  const K4 = s.K / 4, rs = range(R), ns = range(4 * C);
  return `
  let col = cg * ${C}i;
${
    ns.map((c) => `  let rb${c} = bBase / 4i + min(col * 4i + ${c}i, ${s.N - 1}i) * ${K4}i;`).join(
      "\n",
    )
  }
${rs.map((i) => `  let ra${i} = aBase / 4i + min(m0 + ${i}i, ${s.M - 1}i) * ${K4}i;`).join("\n")}
${rs.map((i) => ns.map((c) => `  var acc${i}_${c} = vec4<f32>(0.0);`).join("\n")).join("\n")}
  for (var k = 0i; k < ${K4}i; k++) {
${
    ns.map((c) =>
      `    let b${c} = ${
        via(
          s.readB,
          "mm_readB4",
          `buf${s.b}[rb${c} + k]`,
          "k * 4i",
          `min(col * 4i + ${c}i, ${s.N - 1}i)`,
        )
      };`
    ).join("\n")
  }
${
    rs.map((i) =>
      `    let a${i} = ${
        via(s.readA, "mm_readA4", `buf${s.a}[ra${i} + k]`, `min(m0 + ${i}i, ${s.M - 1}i)`, "k * 4i")
      };
${ns.map((c) => `    acc${i}_${c} = fma(a${i}, b${c}, acc${i}_${c});`).join("\n")}`
    ).join("\n")
  }
  }
${
    storeBlock(s, rs, range(C), (i, j) => {
      const h = (c: number) => `dot(acc${i}_${c}, vec4<f32>(1.0))`;
      return `vec4<f32>(${h(4 * j)}, ${h(4 * j + 1)}, ${h(4 * j + 2)}, ${h(4 * j + 3)})`;
    })
  }
}
`;
}

/** Stores the R × C vec4 block of outputs, skipping rows and columns past the edges. */
function storeBlock(
  s: MatmulSpec,
  rs: number[],
  cs: number[],
  acc: (i: number, j: number) => string,
): string {
  const N4 = s.N / 4;
  return rs.map((i) =>
    `  if (m0 + ${i}i < ${s.M}i) {
    let m = m0 + ${i}i;
${
      cs.map((j) =>
        `    if (col + ${j}i < ${N4}i) {
      let v = ${acc(i, j)};
      ${storeVec4(s.out, s.N, "v", "m", `(col + ${j}i) * 4i`)}
    }`
      ).join("\n")
    }
  }`
  ).join("\n");
}

function scalarBody(s: MatmulSpec, R: number): string {
  const rs = range(R);
  // Element strides of A[m, k] and B[k, n] in their stored layouts.
  const [aM, aK] = s.transA ? [1, s.M] : [s.K, 1];
  const [bK, bN] = s.transB ? [1, s.K] : [s.N, 1];
  return `
  let col = cg;
${
    rs.map((i) => `  let ra${i} = aBase + min(m0 + ${i}i, ${Math.max(0, s.M - 1)}i) * ${aM}i;`)
      .join("\n")
  }
${rs.map((i) => `  var acc${i} = 0.0;`).join("\n")}
  for (var k = 0i; k < ${s.K}i; k++) {
    let bv = ${
    via(s.readB, "mm_readB", `buf${s.b}[bBase + k * ${bK}i + col * ${bN}i]`, "k", "col")
  };
${
    rs.map((i) =>
      `    acc${i} = fma(${
        via(
          s.readA,
          "mm_readA",
          `buf${s.a}[ra${i} + k * ${aK}i]`,
          `min(m0 + ${i}i, ${Math.max(0, s.M - 1)}i)`,
          "k",
        )
      }, bv, acc${i});`
    ).join("\n")
  }
  }
${
    rs.map((i) =>
      `  if (m0 + ${i}i < ${s.M}i) {
    let m = m0 + ${i}i;
    buf${s.out}[oBase + m * ${s.N}i + col] = mm_epilogue(acc${i}, bt, m, col);
  }`
    ).join("\n")
  }
}
`;
}

export function matmulShader(s: MatmulSpec): KernelProgram {
  const variant = variantOf(s);
  const vec = variant !== "scalar";
  const extra = new Map<number, Binding>();
  const epi = hooksText(s, variant, extra);
  extra.delete(s.a);
  extra.delete(s.b);
  extra.delete(s.out);
  const bindings: Binding[] = uniqueBindings([
    { slot: s.a, type: "f32", write: false, vec4: vec },
    { slot: s.b, type: "f32", write: false, vec4: vec },
    ...[...extra.values()].sort((x, y) => x.slot - y.slot),
    { slot: s.out, type: "f32", write: true, vec4: vec },
  ]);
  const N4 = s.N / 4;
  const [R, C, WG] = variant === "NN"
    ? pick(NN_CONFIGS, s.M, N4, s.batch)
    : variant === "TN"
    ? pick(TN_CONFIGS, s.M, N4, s.batch)
    : variant === "NT"
    ? pick(NT_CONFIGS, s.M, N4, s.batch)
    : SCALAR;
  const rowBlocks = Math.max(1, Math.ceil(s.M / R));
  const colGroups = vec ? Math.ceil(N4 / C) : s.N;
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
  let m0 = (block % ${rowBlocks}i) * ${R}i;
  let aBase = bt * ${s.strideA}i;
  let bBase = bt * ${s.strideB}i;
  let oBase = bt * ${s.M * s.N}i;`;
  const body = variant === "NN"
    ? nnBody(s, R, C)
    : variant === "TN"
    ? tnBody(s, R, C)
    : variant === "NT"
    ? ntBody(s, R, C)
    : scalarBody(s, R);
  return {
    label: `${s.label} (${variant} ${R}x${vec ? 4 * C : 1})`,
    code: head + body,
    bindings,
    grid,
  };
}
