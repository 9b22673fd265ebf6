/**
 * The native backend's own sgemm (codegen/c/gemm.ts), compiled with the system C compiler and
 * called through Deno FFI, against a float64 reference: all four transpose combinations over
 * sizes around the register tile and cache blocks, padded leading dimensions, overwrite and
 * accumulate, and bit-identical results across calls, thread counts (omp_set_num_threads, the
 * setting OMP_NUM_THREADS initializes) and calls made from inside an OpenMP parallel region.
 * Besides the host's native build, the same source is built with tiny cache blocks, with the
 * scalar kernel and without OpenMP, and on x86-64 hosts also for AVX2, SSE2 and SSE2 with
 * NEON's 8×12 tile.
 */
import assert from "node:assert/strict";
import { GEMM_C } from "../../codegen/c/gemm.ts";
import { BASE_FLAGS } from "../../src/runtime/native/compiler.ts";
import { ON_WORKER_C } from "./on_worker.ts";

/**
 * The backend's flags, plus `-z nodelete` (as the backend links its steps): a library whose
 * OpenMP threads outlive this test's worker must not be unmapped when Deno closes it.
 */
const FLAGS = [...BASE_FLAGS, "-Wl,-z,nodelete"];

/**
 * Exported wrappers around the static entry point, appended to GEMM_C; the products run on one
 * long-lived native thread, as the backend runs them (tests/native/on_worker.ts).
 */
const DRIVER = ON_WORKER_C + String.raw`
struct mj_test_args {
  int threads, count, transA, transB, M, N, K;
  const float* A;
  int lda, aStride;
  const float* B;
  int ldb, bStride;
  float* C;
  int ldc, cStride, accumulate;
};

static void mj_test_sgemm_body(void* p) {
  const struct mj_test_args* a = (const struct mj_test_args*)p;
#ifdef _OPENMP
  omp_set_num_threads(a->threads);
#endif
  mj_sgemm(a->transA, a->transB, a->M, a->N, a->K, a->A, a->lda, a->B, a->ldb, a->C, a->ldc,
           a->accumulate);
}

void mj_test_sgemm(int threads, int transA, int transB, int M, int N, int K, const float* A,
                   int lda, const float* B, int ldb, float* C, int ldc, int accumulate) {
  struct mj_test_args a = {threads, 1, transA, transB, M, N, K, A, lda, 0, B, ldb, 0, C, ldc, 0,
                           accumulate};
  mj_on_worker(mj_test_sgemm_body, &a);
}

/* count products (A + e*aStride) . (B + e*bStride) -> C + e*cStride, called from inside one
 * parallel region the way the backend runs experts side by side. */
static void mj_test_sgemm_nested_body(void* p) {
  const struct mj_test_args* a = (const struct mj_test_args*)p;
#ifdef _OPENMP
#pragma omp parallel for num_threads(a->threads) schedule(dynamic)
#endif
  for (int e = 0; e < a->count; e++)
    mj_sgemm(a->transA, a->transB, a->M, a->N, a->K, a->A + (intptr_t)e * a->aStride, a->lda,
             a->B + (intptr_t)e * a->bStride, a->ldb, a->C + (intptr_t)e * a->cStride, a->ldc,
             a->accumulate);
}

void mj_test_sgemm_nested(int threads, int count, int transA, int transB, int M, int N, int K,
                          const float* A, int lda, int aStride, const float* B, int ldb,
                          int bStride, float* C, int ldc, int cStride, int accumulate) {
  struct mj_test_args a = {threads, count, transA, transB, M, N, K, A, lda, aStride, B, ldb,
                           bStride, C, ldc, cStride, accumulate};
  mj_on_worker(mj_test_sgemm_nested_body, &a);
}

int mj_test_config(int which) {
  switch (which) {
    case 0: return MJ_GEMM_VW;
    case 1: return MJ_GEMM_MR;
    case 2: return MJ_GEMM_NR;
#ifdef _OPENMP
    case 3: return 1;
#endif
    default: return 0;
  }
}
`;

const SYMBOLS = {
  mj_test_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "i32",
    ],
    result: "void",
  },
  mj_test_sgemm_nested: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "buffer",
      "i32",
      "i32",
      "buffer",
      "i32",
      "i32",
      "buffer",
      "i32",
      "i32",
      "i32",
    ],
    result: "void",
  },
  mj_test_config: { parameters: ["i32"], result: "i32" },
} as const;

type GemmLib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

async function compile(dir: string, name: string, source: string, flags: string[]) {
  const src = `${dir}/${name}.c`, out = `${dir}/${name}.so`;
  await Deno.writeTextFile(src, source);
  const r = await new Deno.Command("cc", { args: [...flags, src, "-o", out], stderr: "piped" })
    .output();
  return { ok: r.success, out, log: new TextDecoder().decode(r.stderr) };
}

/**
 * The backend's flags, less -fopenmp when this compiler has no OpenMP; or why the tests cannot
 * run here (no cc, or it cannot build a shared library).
 */
async function probeCompiler(dir: string): Promise<{ flags: string[] } | { skip: string }> {
  const trivial = "int mj_probe(void) { return 0; }\n";
  try {
    const withOmp = [...FLAGS, "-march=native", "-fopenmp"];
    if ((await compile(dir, "probe_omp", trivial, withOmp)).ok) return { flags: withOmp };
    const plain = [...FLAGS, "-march=native"];
    const r = await compile(dir, "probe", trivial, plain);
    if (r.ok) return { flags: plain };
    return { skip: `cc cannot build a shared library: ${r.log.trim().split("\n")[0]}` };
  } catch (e) {
    return { skip: `no C compiler (cc): ${(e as Error).message}` };
  }
}

function cpuFlags(): Set<string> {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    const line = info.split("\n").find((l) => l.startsWith("flags")) ?? "";
    return new Set(line.split(":")[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}

interface Variant {
  name: string;
  flags: string[];
  /** Run every case (else every third). */
  full: boolean;
}

function variants(base: string[]): Variant[] {
  const list: Variant[] = [
    { name: "native", flags: base, full: true },
    // Cache blocks far smaller than the cases, so that every case crosses several of each.
    {
      name: "small blocks",
      flags: [...base, "-DMJ_GEMM_KC=40", "-DMJ_GEMM_MC=30", "-DMJ_GEMM_NC=70"],
      full: false,
    },
    { name: "scalar", flags: [...base, "-DMJ_GEMM_SCALAR"], full: false },
  ];
  if (base.includes("-fopenmp")) {
    list.push({ name: "no OpenMP", flags: base.filter((f) => f !== "-fopenmp"), full: false });
  }
  if (Deno.build.arch === "x86_64") {
    // The narrower x86 paths run on any x86-64 host; the 8×12 tile is the NEON one.
    const generic = base.filter((f) => f !== "-march=native");
    const cpu = cpuFlags();
    if (cpu.has("avx2") && cpu.has("fma")) {
      list.push({ name: "avx2", flags: [...generic, "-march=haswell"], full: false });
    }
    list.push(
      { name: "sse2", flags: [...generic, "-march=x86-64"], full: false },
      {
        name: "8x12 tile (NEON's)",
        flags: [...generic, "-march=x86-64", "-DMJ_GEMM_MR=8", "-DMJ_GEMM_NR=12"],
        full: false,
      },
    );
  }
  return list;
}

/**
 * Every variant compiled and opened up front, then the build directory removed (the libraries
 * stay mapped). They are never closed: closing the last library that uses OpenMP can unload
 * libgomp under its idle pool threads, which then crash the process.
 */
const dir = await Deno.makeTempDir({ prefix: "moejit-gemm-test-" });
let builds: { variant: Variant; lib: GemmLib | null; log: string }[] = [];
try {
  const probe = await probeCompiler(dir);
  if ("skip" in probe) console.log(`native gemm tests skipped: ${probe.skip}`);
  else {
    builds = await Promise.all(
      variants(probe.flags).map(async (variant) => {
        const name = `gemm_${variant.name.replace(/\W+/g, "_")}`;
        const build = await compile(dir, name, GEMM_C + DRIVER, variant.flags);
        const lib = build.ok ? Deno.dlopen(build.out, SYMBOLS).symbols : null;
        return { variant, lib, log: build.log };
      }),
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

/** Deterministic uniform values in [-1, 1). */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

interface Case {
  transA: number;
  transB: number;
  M: number;
  N: number;
  K: number;
  /** Extra elements per stored row of A, B and C. */
  padA: number;
  padB: number;
  padC: number;
  accumulate: number;
}

/** A row-major buffer of `rows` rows with stride ld (at least one element, for FFI). */
function operand(rows: number, ld: number, seed: number): Float32Array {
  return randomFloats(Math.max(1, rows * ld), seed);
}

function setup(c: Case, seed: number) {
  const aRows = c.transA ? c.K : c.M, aCols = c.transA ? c.M : c.K;
  const bRows = c.transB ? c.N : c.K, bCols = c.transB ? c.K : c.N;
  const lda = aCols + c.padA, ldb = bCols + c.padB, ldc = c.N + c.padC;
  const A = operand(aRows, lda, seed), B = operand(bRows, ldb, seed + 1);
  const C0 = operand(c.M, ldc, seed + 2);
  return { A, B, C0, lda, ldb, ldc };
}

/** C (+)= opA·opB in float64, with Σ|a·b| (plus |C0| when accumulating) per element. */
function reference(
  c: Case,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  C0: Float32Array,
  ldc: number,
) {
  const { M, N, K } = c;
  const want = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const row = m * N;
    for (let n = 0; n < N; n++) {
      const c0 = c.accumulate ? C0[m * ldc + n] : 0;
      want[row + n] = c0;
      mag[row + n] = Math.abs(c0);
    }
    for (let k = 0; k < K; k++) {
      const a = c.transA ? A[k * lda + m] : A[m * lda + k];
      for (let n = 0; n < N; n++) {
        const p = a * (c.transB ? B[n * ldb + k] : B[k * ldb + n]);
        want[row + n] += p;
        mag[row + n] += Math.abs(p);
      }
    }
  }
  return { want, mag };
}

function describe(c: Case): string {
  return `${c.transA ? "T" : "N"}${c.transB ? "T" : "N"} M=${c.M} N=${c.N} K=${c.K} ` +
    `pad=${c.padA}/${c.padB}/${c.padC} accumulate=${c.accumulate}`;
}

/** Checks C against the reference and that the padding between rows was not written. */
function checkResult(
  c: Case,
  C: Float32Array,
  C0: Float32Array,
  ldc: number,
  ref: ReturnType<typeof reference>,
  label: string,
) {
  for (let m = 0; m < c.M; m++) {
    for (let n = 0; n < ldc; n++) {
      const got = C[m * ldc + n];
      if (n >= c.N) {
        if (!Object.is(got, C0[m * ldc + n])) {
          assert.fail(`${label} ${describe(c)}: padding C[${m},${n}] was overwritten`);
        }
        continue;
      }
      const i = m * c.N + n;
      const tol = 1e-5 * ref.mag[i] + 1e-6;
      if (!(Math.abs(got - ref.want[i]) <= tol)) {
        assert.fail(
          `${label} ${describe(c)}: C[${m},${n}] = ${got}, expected ${
            ref.want[i]
          } (tolerance ${tol})`,
        );
      }
    }
  }
}

function sameBits(x: Float32Array, y: Float32Array, what: string) {
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const b = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) assert.fail(`${what}: element ${i} differs (${x[i]} vs ${y[i]})`);
  }
}

/**
 * The sampled cases: every size in every dimension for every transpose combination (the other
 * two dimensions drawn from the list), plus shapes past the K, M and N cache blocks.
 */
function cases(): Case[] {
  const sizes = [0, 1, 2, 3, 7, 16, 17, 31, 64, 65, 100, 129, 257];
  const rand = randomFloats(4096, 7);
  let r = 0;
  const pick = (xs: number[]) => xs[Math.floor((rand[r++ % rand.length] + 1) / 2 * xs.length)];
  const out: Case[] = [];
  for (let transA = 0; transA < 2; transA++) {
    for (let transB = 0; transB < 2; transB++) {
      for (const s of sizes) {
        for (let dim = 0; dim < 3; dim++) {
          const d = [pick(sizes), pick(sizes), pick(sizes)];
          d[dim] = s;
          out.push({
            transA,
            transB,
            M: d[0],
            N: d[1],
            K: d[2],
            padA: pick([0, 0, 1, 5]),
            padB: pick([0, 0, 3, 16]),
            padC: pick([0, 0, 2, 7]),
            accumulate: out.length % 2,
          });
        }
      }
      // Several K blocks (K > 384), several M blocks and a ragged edge in every dimension; a
      // short M with a long N (threads split N instead of M).
      out.push({
        transA,
        transB,
        M: 203,
        N: 45,
        K: 1000,
        padA: 1,
        padB: 2,
        padC: 3,
        accumulate: transA,
      });
      out.push({
        transA,
        transB,
        M: 370,
        N: 1091,
        K: 37,
        padA: 0,
        padB: 1,
        padC: 0,
        accumulate: transB,
      });
      out.push({
        transA,
        transB,
        M: 9,
        N: 700,
        K: 400,
        padA: 2,
        padB: 0,
        padC: 1,
        accumulate: 1 - transA,
      });
    }
  }
  return out;
}

const CASES = cases();

for (const { variant, lib, log } of builds) {
  const threadsToo = variant.flags.includes("-fopenmp");
  Deno.test(`native gemm (${variant.name}): all transposes and sizes vs float64, bit-identical across calls${threadsToo ? " and thread counts" : ""}`, () => {
    assert.ok(lib, `compiling the ${variant.name} gemm failed:\n${log}`);
    const f: GemmLib = lib;
    const config = [0, 1, 2, 3].map((w) => f.mj_test_config(w));
    console.log(
      `${variant.name}: VW=${config[0]} MR=${config[1]} NR=${config[2]} OpenMP=${config[3] === 1}`,
    );
    const list = variant.full ? CASES : CASES.filter((_, i) => i % 3 === 0);
    list.forEach((c, i) => {
      const { A, B, C0, lda, ldb, ldc } = setup(c, 1000 + 17 * i);
      const ref = reference(c, A, lda, B, ldb, C0, ldc);
      const run = (threads: number) => {
        const C = C0.slice();
        f.mj_test_sgemm(
          threads,
          c.transA,
          c.transB,
          c.M,
          c.N,
          c.K,
          A,
          lda,
          B,
          ldb,
          C,
          ldc,
          c.accumulate,
        );
        return C;
      };
      const one = run(1);
      checkResult(c, one, C0, ldc, ref, variant.name);
      sameBits(run(1), one, `${variant.name} ${describe(c)}: a repeated call`);
      if (threadsToo) {
        for (const t of i % 4 === 0 ? [2, 3, 4] : [2]) {
          sameBits(run(t), one, `${variant.name} ${describe(c)}: ${t} threads vs 1`);
        }
      }
    });
  });

  if (!threadsToo) continue;
  Deno.test(`native gemm (${variant.name}): called from inside a parallel region, each product matches the serial one bit for bit`, () => {
    assert.ok(lib, `compiling the ${variant.name} gemm failed:\n${log}`);
    const f: GemmLib = lib;
    for (
      const [transA, transB, M, N, K] of [[0, 0, 150, 200, 300], [1, 0, 64, 33, 500], [
        0,
        1,
        129,
        257,
        17,
      ]]
    ) {
      const count = 6;
      const c: Case = { transA, transB, M, N, K, padA: 1, padB: 0, padC: 2, accumulate: 1 };
      const aRows = transA ? K : M, lda = (transA ? M : K) + 1;
      const bRows = transB ? N : K, ldb = transB ? K : N;
      const ldc = N + 2;
      const aStride = aRows * lda, bStride = bRows * ldb, cStride = M * ldc;
      const A = randomFloats(count * aStride, 11), B = randomFloats(count * bStride, 12);
      const C0 = randomFloats(count * cStride, 13);
      const nested = C0.slice();
      f.mj_test_sgemm_nested(
        2,
        count,
        transA,
        transB,
        M,
        N,
        K,
        A,
        lda,
        aStride,
        B,
        ldb,
        bStride,
        nested,
        ldc,
        cStride,
        1,
      );
      for (let e = 0; e < count; e++) {
        const a = A.subarray(e * aStride, (e + 1) * aStride);
        const b = B.subarray(e * bStride, (e + 1) * bStride);
        const c0 = C0.slice(e * cStride, (e + 1) * cStride);
        const serial = c0.slice();
        f.mj_test_sgemm(2, transA, transB, M, N, K, a, lda, b, ldb, serial, ldc, 1);
        checkResult(c, serial, c0, ldc, reference(c, a, lda, b, ldb, c0, ldc), variant.name);
        sameBits(
          nested.subarray(e * cStride, (e + 1) * cStride),
          serial,
          `${describe(c)} product ${e} inside a parallel region`,
        );
      }
    }
  });
}

if (!builds.length) {
  Deno.test({ name: "native gemm: no working C compiler", ignore: true }, () => {});
}
