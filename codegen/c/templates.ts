/**
 * The routine templates as C functions for the native backend. Buffers are host memory, so the
 * routing offsets a grouped matmul needs are read directly; matrix products go through mj_gemm
 * (the system BLAS, or our own sgemm); hooks (epilogues) are the same expressions the WGSL
 * templates take, rendered as C. Every reduction runs in a fixed order within one thread.
 */
import { type Exp, walk } from "../exp.ts";
import { type Binding, ERROR_BINDING, type KernelProgram, uniqueBindings } from "../kernel.ts";
import type { MatmulSpec } from "../templates/matmul.ts";
import type { GroupedSpec, WgradSpec } from "../templates/grouped.ts";
import type { TopkSpec } from "../templates/topk.ts";
import type { AttentionBackwardSpec, AttentionForwardSpec } from "../templates/attention.ts";
import type { SelectSpec } from "../templates/select.ts";
import type { ScanSpec } from "../templates/scan.ts";
import type { ScatterSpec } from "../templates/scatter.ts";
import type { SegmentSumSpec } from "../templates/segment.ts";
import type { ScalarType } from "../exp.ts";
import { CEmitter, cLiteral, cStorageType, cValueType } from "./emit.ts";
import { cFunction, parallelFor } from "./kernels.ts";

function program(label: string, bindings: Binding[], body: string): KernelProgram {
  return { label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}

/** The buffers a hook expression reads, as read-only bindings. */
function hookReads(e: Exp | null | undefined): Binding[] {
  const out = new Map<number, Binding>();
  if (e) {
    walk([e], (x) => {
      if (x.op === "load") {
        out.set(x.attr as number, { slot: x.attr as number, type: x.type, write: false });
      }
    });
  }
  return [...out.values()].sort((a, b) => a.slot - b.slot);
}

/**
 * Loops applying the epilogue `e` (over mm_v and the variables `vars`) in place to `rows` rows of
 * `cols` elements of `buf<out>`; `rowCoords` sets the row variables from the row number `row`,
 * and mm_n is the column. Coordinates are `long` and the columns an inner loop of their own: with
 * -fwrapv, GCC cannot prove that int32 index arithmetic (or a flat index split by / and %) does
 * not wrap, and then leaves the loop scalar.
 */
function epilogueLoop(
  e: Exp,
  out: number,
  rows: number,
  cols: number,
  rowCoords: string,
  vars: readonly string[],
  perElement: number,
): string {
  const em = new CEmitter((s) => `buf${s}`);
  const seg = em.segment(false, ["mm_v", ...vars]);
  em.count([e]);
  const v = em.render(e, seg);
  const body = em.lines(seg).map((l) => `        ${l}`).join("\n");
  return `  {
    #pragma omp parallel for schedule(static) if (${rows * cols * perElement}L >= MJ_PAR_MIN)
    for (long row = 0; row < ${rows}L; row++) {
      ${rowCoords}
      float* restrict mm_row = buf${out} + row * ${cols}L;
      for (long mm_n = 0; mm_n < ${cols}L; mm_n++) {
        const float mm_v = mm_row[mm_n];
${body}
        mm_row[mm_n] = ${v};
      }
    }
  }
`;
}

export function matmulC(s: MatmulSpec): KernelProgram {
  if (s.readA || s.readB) throw new Error("internal: the C target takes no matmul prologues");
  const bindings = uniqueBindings([
    { slot: s.a, type: "f32", write: false },
    { slot: s.b, type: "f32", write: false },
    ...hookReads(s.epilogue),
    { slot: s.out, type: "f32", write: true },
  ]);
  const lda = s.transA ? s.M : s.K, ldb = s.transB ? s.K : s.N;
  const MN = s.M * s.N;
  const args = (b: string) =>
    `${s.transA ? 1 : 0}, ${
      s.transB ? 1 : 0
    }, ${s.M}, ${s.N}, ${s.K}, buf${s.a} + (size_t)${b} * ${s.strideA}, ${lda}, buf${s.b} + (size_t)${b} * ${s.strideB}, ${ldb}, buf${s.out} + (size_t)${b} * ${MN}, ${s.N}, 0`;
  // Many small products: one per thread, each single-threaded; otherwise each product uses every
  // thread (BLAS, or our sgemm's own loop over rows).
  const small = s.batch > 1 && s.M * s.N * s.K <= 1 << 18;
  let body = small
    ? `  #pragma omp parallel for schedule(static)
  for (int b = 0; b < ${s.batch}; b++) mj_gemm(${args("b")});
`
    : `  for (int b = 0; b < ${s.batch}; b++) mj_gemm(${args("b")});
`;
  if (s.epilogue) {
    body += epilogueLoop(
      s.epilogue,
      s.out,
      s.batch * s.M,
      s.N,
      `const long mm_b = row / ${s.M}, mm_m = row % ${s.M}; (void)mm_b; (void)mm_m;`,
      ["mm_b", "mm_m", "mm_n"],
      4,
    );
  }
  return program(s.label, bindings, body);
}

/** Gathers `rows` rows of `K` floats from `src` through `idx` into a new buffer. */
const GATHER_ROWS = (src: string, idx: string, first: string, K: number) =>
  `float* packed = (float*)malloc((size_t)(rows > 0 ? rows : 1) * ${K} * 4);
      for (int i = 0; i < rows; i++) memcpy(packed + (size_t)i * ${K}, ${src} + (size_t)${idx}[${first} + i] * ${K}, ${K} * 4);`;

export function groupedC(s: GroupedSpec): KernelProgram {
  const bindings = uniqueBindings([
    { slot: s.a, type: "f32", write: false },
    { slot: s.b, type: "f32", write: false },
    { slot: s.offsets, type: "i32", write: false },
    ...(s.rowIndex !== undefined ? [{ slot: s.rowIndex, type: "i32" as const, write: false }] : []),
    ...hookReads(s.epilogue),
    { slot: s.out, type: "f32", write: true },
  ]);
  const off = `buf${s.offsets}`;
  const a = s.rowIndex !== undefined
    ? `${GATHER_ROWS(`buf${s.a}`, `buf${s.rowIndex}`, "r0", s.K)}
      const float* A = packed;`
    : `float* packed = 0;
      const float* A = buf${s.a} + (size_t)r0 * ${s.K};`;
  // Small segments: one expert per thread (single-threaded products); big ones: experts in turn,
  // each product using every thread.
  const perExpert = s.E > 0 ? s.R / s.E : 0;
  const par = perExpert < 256 && s.E > 1 ? "#pragma omp parallel for schedule(dynamic)\n  " : "";
  let body = `  ${par}for (int e = 0; e < ${s.E}; e++) {
    int r0 = ${off}[e], r1 = ${off}[e + 1];
    if (r0 < 0) r0 = 0;
    if (r1 > ${s.R}) r1 = ${s.R};
    const int rows = r1 - r0;
    if (rows > 0) {
      ${a}
      mj_gemm(0, ${s.transB ? 1 : 0}, rows, ${s.N}, ${s.K}, A, ${s.K}, buf${s.b} + (size_t)e * ${
    s.K * s.N
  }, ${s.transB ? s.K : s.N}, buf${s.out} + (size_t)r0 * ${s.N}, ${s.N}, 0);
      free(packed);
    }
  }
  {
    /* Rows past the last segment belong to no expert. */
    int end = ${off}[${s.E}];
    if (end < 0) end = 0;
    if (end < ${s.R}) memset(buf${s.out} + (size_t)end * ${s.N}, 0, (size_t)(${s.R} - end) * ${s.N} * 4);
  }
`;
  if (s.epilogue) {
    body += epilogueLoop(
      s.epilogue,
      s.out,
      s.R,
      s.N,
      "const long mm_m = row; (void)mm_m;",
      ["mm_m", "mm_n"],
      4,
    );
  }
  return program(s.label, bindings, body);
}

export function wgradC(s: WgradSpec): KernelProgram {
  const bindings = uniqueBindings([
    { slot: s.a, type: "f32", write: false },
    { slot: s.g, type: "f32", write: false },
    { slot: s.offsets, type: "i32", write: false },
    ...(s.rowIndex !== undefined ? [{ slot: s.rowIndex, type: "i32" as const, write: false }] : []),
    { slot: s.out, type: "f32", write: true },
  ]);
  const off = `buf${s.offsets}`;
  const a = s.rowIndex !== undefined
    ? `${GATHER_ROWS(`buf${s.a}`, `buf${s.rowIndex}`, "r0", s.K)}
      const float* A = packed;`
    : `float* packed = 0;
      const float* A = buf${s.a} + (size_t)r0 * ${s.K};`;
  const perExpert = s.E > 0 ? s.R / s.E : 0;
  const par = perExpert < 256 && s.E > 1 ? "#pragma omp parallel for schedule(dynamic)\n  " : "";
  const body = `  ${par}for (int e = 0; e < ${s.E}; e++) {
    int r0 = ${off}[e] > ${s.rows[0]} ? ${off}[e] : ${s.rows[0]};
    int r1 = ${off}[e + 1] < ${s.rows[1]} ? ${off}[e + 1] : ${s.rows[1]};
    const int rows = r1 > r0 ? r1 - r0 : 0;
    float* o = buf${s.out} + (size_t)e * ${s.K * s.N};
    if (rows == 0) {
      memset(o, 0, (size_t)${s.K * s.N} * 4);
    } else {
      ${a}
      ${
    s.transOut
      ? `mj_gemm(1, 0, ${s.N}, ${s.K}, rows, buf${s.g} + (size_t)r0 * ${s.N}, ${s.N}, A, ${s.K}, o, ${s.K}, 0);`
      : `mj_gemm(1, 0, ${s.K}, ${s.N}, rows, A, ${s.K}, buf${s.g} + (size_t)r0 * ${s.N}, ${s.N}, o, ${s.N}, 0);`
  }
      free(packed);
    }
  }
`;
  return program(s.label, bindings, body);
}

export function topkC(s: TopkSpec): KernelProgram {
  const bindings: Binding[] = [
    { slot: s.x, type: s.type, write: false },
    { slot: s.out, type: "i32", write: true },
  ];
  const v = cValueType(s.type);
  const before = `mj_before_${s.type}`;
  // Insertion into a sorted list of the k best so far: O(n·k) per row, in index order.
  const body = `  ${parallelFor(s.rows, s.n * 4)}for (int row = 0; row < ${s.rows}; row++) {
    const ${cStorageType(s.type)}* x = buf${s.x} + (size_t)row * ${s.n};
    int32_t* idx = buf${s.out} + (size_t)row * ${s.k};
    ${v} val[${Math.max(1, s.k)}];
    int have = 0;
    for (int i = 0; i < ${s.n}; i++) {
      const ${v} xi = x[i];
      if (have == ${s.k} && !${before}(xi, i, val[have - 1], idx[have - 1])) continue;
      int p = have < ${s.k} ? have++ : ${s.k} - 1;
      while (p > 0 && ${before}(xi, i, val[p - 1], idx[p - 1])) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
      }
      val[p] = xi;
      idx[p] = i;
    }
  }
`;
  return program(s.label, bindings, body);
}

function attentionCall(
  fn: string,
  s: AttentionForwardSpec | AttentionBackwardSpec,
  slots: number[],
  out: number,
): KernelProgram {
  const bindings = uniqueBindings([
    ...slots.map((slot) => ({ slot, type: "f32" as const, write: false })),
    { slot: out, type: "f32", write: true },
  ]);
  const args = slots.map((x) => `buf${x}`).join(", ");
  const body = `  ${fn}(${s.batch}, ${s.S}, ${s.Sk}, ${s.Dh}, ${s.causal ? 1 : 0}, ${
    cLiteral(s.scale, "f32")
  }, ${args}, buf${out});
`;
  return program(s.label, bindings, body);
}

export function attentionC(s: AttentionForwardSpec): KernelProgram {
  return attentionCall("mj_attention_fwd", s, [s.q, s.k, s.v], s.out);
}
export function attentionBwdQC(s: AttentionBackwardSpec): KernelProgram {
  return attentionCall("mj_attention_bwd_q", s, [s.q, s.k, s.v, s.dO, s.lse, s.delta], s.out);
}
export function attentionBwdKVC(s: AttentionBackwardSpec): KernelProgram {
  return attentionCall("mj_attention_bwd_kv", s, [s.q, s.k, s.v, s.dO, s.lse, s.delta], s.out);
}

/** kthLargest: each column's keys (floats ordered as u32, NaN largest), then a quickselect. */
export function kthLargestC(s: Omit<SelectSpec, "state" | "hist">): KernelProgram[] {
  const bindings: Binding[] = [
    { slot: s.x, type: "f32", write: false },
    { slot: s.out, type: "f32", write: true },
  ];
  const body = `  ${parallelFor(s.cols, s.n * 8)}for (int col = 0; col < ${s.cols}; col++) {
    uint32_t* key = (uint32_t*)malloc((size_t)${Math.max(1, s.n)} * 4);
    for (int i = 0; i < ${s.n}; i++) key[i] = mj_okey(buf${s.x}[(size_t)i * ${s.cols} + col]);
    /* The rank-th largest is the (n - rank)-th smallest: Hoare's selection. */
    int lo = 0, hi = ${s.n} - 1;
    const int want = ${s.n - s.rank};
    while (lo < hi) {
      const uint32_t pivot = key[lo + (hi - lo) / 2];
      int i = lo, j = hi;
      while (i <= j) {
        while (key[i] < pivot) i++;
        while (key[j] > pivot) j--;
        if (i <= j) { uint32_t t = key[i]; key[i] = key[j]; key[j] = t; i++; j--; }
      }
      if (want <= j) hi = j;
      else if (want >= i) lo = i;
      else break;
    }
    buf${s.out}[col] = mj_oval(key[want]);
    free(key);
  }
`;
  return [program(s.label, bindings, body)];
}

export function scanC(s: ScanSpec): KernelProgram {
  const bindings: Binding[] = [
    { slot: s.x, type: s.type, write: false },
    { slot: s.out, type: s.type, write: true },
  ];
  const t = cStorageType(s.type);
  const body = `  ${parallelFor(s.outer * s.inner, s.length)}for (long line = 0; line < ${
    s.outer * s.inner
  }L; line++) {
    const long o = line / ${s.inner}, i = line % ${s.inner};
    ${t} acc = ${cLiteral(0, s.type)};
    for (int s = 0; s < ${s.length}; s++) {
      const int j = ${s.reverse ? `${s.length - 1} - s` : "s"};
      const size_t p = ((size_t)o * ${s.length} + j) * ${s.inner} + i;
      const ${t} v = buf${s.x}[p];
      ${
    s.exclusive
      ? `buf${s.out}[p] = acc;\n      acc += v;`
      : `acc += v;\n      buf${s.out}[p] = acc;`
  }
    }
  }
`;
  return program(s.label, bindings, body);
}

export function fillC(label: string, n: number, slot: number, type: ScalarType): KernelProgram {
  const bindings: Binding[] = [{ slot, type, write: true }];
  return program(label, bindings, `  memset(buf${slot}, 0, (size_t)${n} * sizeof(*buf${slot}));\n`);
}

/** Integer scatter-add: each (outer, inner) line adds its updates in order in one thread. */
export function scatterAddC(s: ScatterSpec): KernelProgram {
  if (s.type !== "i32" && s.type !== "u32") {
    throw new Error(`internal: a ${s.type} scatter-add reached the integer template`);
  }
  const bindings: Binding[] = [
    { slot: s.upd, type: s.type, write: false },
    { slot: s.idx, type: "i32", write: false },
    { slot: s.out, type: s.type, write: true },
  ];
  const body = `  ${parallelFor(s.outer * s.inner, s.m)}for (long line = 0; line < ${
    s.outer * s.inner
  }L; line++) {
    const long o = line / ${s.inner}, i = line % ${s.inner};
    for (int a = 0; a < ${s.m}; a++) {
      const size_t p = ((size_t)o * ${s.m} + a) * ${s.inner} + i;
      const int32_t j = buf${s.idx}[p];
      if (j < 0 || j >= ${s.n}) continue;
      buf${s.out}[((size_t)o * ${s.n} + j) * ${s.inner} + i] += buf${s.upd}[p];
    }
  }
`;
  return program(s.label, bindings, body);
}

export function segmentSumC(s: SegmentSumSpec): KernelProgram {
  const bindings = uniqueBindings([
    { slot: s.x, type: "f32", write: false },
    { slot: s.order, type: "i32", write: false },
    { slot: s.offsets, type: "i32", write: false },
    { slot: s.out, type: "f32", write: true },
  ]);
  const body = `  ${parallelFor(s.S, s.L * 4)}for (int seg = 0; seg < ${s.S}; seg++) {
    float* o = buf${s.out} + (size_t)seg * ${s.L};
    for (int l = 0; l < ${s.L}; l++) o[l] = 0.0f;
    const int first = buf${s.offsets}[seg] > ${s.rows[0]} ? buf${s.offsets}[seg] : ${s.rows[0]};
    const int last = buf${s.offsets}[seg + 1] < ${s.rows[1]} ? buf${s.offsets}[seg + 1] : ${
    s.rows[1]
  };
    for (int p = first; p < last; p++) {
      const float* x = buf${s.x} + (size_t)buf${s.order}[p] * ${s.L};
      for (int l = 0; l < ${s.L}; l++) o[l] += x[l];
    }
  }
`;
  return program(s.label, bindings, body);
}

/** The numerics check of one f32 value, reading its bits (see codegen/templates/finite.ts). */
export function finiteCheckC(label: string, n: number, slot: number): KernelProgram {
  const bindings: Binding[] = [{ slot, type: "f32", write: false }, ERROR_BINDING];
  const body = `  uint32_t flags = 0;
  long first = -1;
  for (long i = 0; i < ${n}L; i++) {
    const uint32_t b = mj_as_u32(buf${slot}[i]);
    if ((b & 0x7f800000u) != 0x7f800000u) continue;
    flags |= (b & 0x007fffffu) ? 1u : 2u;
    if (first < 0) first = i;
  }
  if (flags) {
    mj_err[0] |= flags;
    if (~(uint32_t)first > mj_err[1]) mj_err[1] = ~(uint32_t)first;
  }
`;
  return program(`check numerics of ${label}`, bindings, body);
}
