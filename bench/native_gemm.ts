/**
 * The native backend's own sgemm (codegen/c/gemm.ts) against OpenBLAS's cblas_sgemm in the same
 * process, on the same thread count, alternating round by round (the machine's speed drifts, so
 * only interleaved figures compare): the forward shapes of bench/matmul.bench.ts and their
 * backward products (dA = dC·Bᵀ is NT, dB = Aᵀ·dC is TN).
 *
 *   deno run -A bench/native_gemm.ts [--threads 2] [--rounds 5] [--reps 5] [--shape M,K,N]
 *
 * libgomp's wait policy comes from the environment: on a machine other processes load, its
 * default (spin, then sleep) made 2-thread 512³ products several times slower than with
 * OMP_WAIT_POLICY=passive, while 1024³ and larger hardly moved.
 *
 * Needs a C compiler (cc) with OpenMP and libopenblas.so.0 (Debian: libopenblas0-pthread). Each
 * round times --reps calls of one system, then of the other (median per round); idle thread
 * pools get a pause to go to sleep before the other system runs. Prints GFLOP/s per system (the
 * median and the best of the round medians) and the ratio of the medians by the wall clock; with
 * --threads 1 also by the process's CPU time, which other processes' load hardly moves (on a
 * shared machine the wall clock undercounts both systems). Not with more threads: the kernel
 * brings a running thread's CPU time up to date only at scheduler ticks, so the other threads'
 * time would be undercounted by up to a tick per call.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { GEMM_C } from "../codegen/c/gemm.ts";
import { median, table } from "./peers/util.ts";

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    rounds: { type: "string", default: "5" },
    reps: { type: "string", default: "5" },
    shape: { type: "string", multiple: true },
    pause: { type: "string", default: "300" },
  },
});
const threads = Number(values.threads), rounds = Number(values.rounds);
const reps = Number(values.reps), pauseMs = Number(values.pause);
// Both pools read these when their libraries load.
Deno.env.set("OMP_NUM_THREADS", String(threads));
Deno.env.set("OPENBLAS_NUM_THREADS", String(threads));

const DRIVER = String.raw`
void mj_bench_sgemm(int transA, int transB, int M, int N, int K, const float* A, int lda,
                    const float* B, int ldb, float* C, int ldc) {
  mj_sgemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, 0);
}
void mj_bench_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
`;
const FLAGS = [
  "-O3",
  "-march=native",
  "-fopenmp",
  "-fPIC",
  "-shared",
  "-fwrapv",
  "-fno-math-errno",
];
const OURS = {
  mj_bench_sgemm: {
    parameters: [
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
    ],
    result: "void",
  },
  mj_bench_threads: { parameters: ["i32"], result: "void" },
} as const;
/** Our sgemm compiled and opened; the build directory is gone once it is mapped. */
async function buildOurs(): Promise<Deno.DynamicLibrary<typeof OURS>["symbols"]> {
  const dir = await Deno.makeTempDir({ prefix: "moejit-gemm-bench-" });
  try {
    const lib = `${dir}/gemm.so`;
    await Deno.writeTextFile(`${dir}/gemm.c`, GEMM_C + DRIVER);
    const cc = await new Deno.Command("cc", { args: [...FLAGS, `${dir}/gemm.c`, "-o", lib] })
      .output();
    if (!cc.success) throw new Error(`cc failed:\n${new TextDecoder().decode(cc.stderr)}`);
    return Deno.dlopen(lib, OURS).symbols;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
const ours = await buildOurs();
const blas = Deno.dlopen("libopenblas.so.0", {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_config: { parameters: [], result: "pointer" },
}).symbols;
ours.mj_bench_threads(threads);
blas.openblas_set_num_threads(threads);
const config = blas.openblas_get_config();
const load = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(
  `${threads} thread(s), ${rounds} rounds × ${reps} calls; OpenBLAS: ${
    config ? new Deno.UnsafePointerView(config).getCString() : "?"
  }; load average before: ${load}`,
);

interface Problem {
  label: string;
  transA: number;
  transB: number;
  M: number;
  N: number;
  K: number;
}

function problems(M: number, K: number, N: number): Problem[] {
  const tag = `${M}x${K}x${N}`;
  return [
    { label: `${tag} NN`, transA: 0, transB: 0, M, N, K },
    { label: `${tag} NT (dA)`, transA: 0, transB: 1, M, N: K, K: N },
    { label: `${tag} TN (dB)`, transA: 1, transB: 0, M: K, N, K: M },
  ];
}

const shapes = (values.shape?.length ? values.shape : ["1024,1024,1024", "4096,512,2048"])
  .map((s) => s.split(",").map(Number));

function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s >>> 8) / 8388608 - 1;
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const wallRows: string[][] = [], cpuRows: string[][] = [];
for (const [M, K, N] of shapes) {
  for (const p of problems(M, K, N)) {
    const A = randomFloats(p.M * p.K, 1), B = randomFloats(p.K * p.N, 2);
    const lda = p.transA ? p.M : p.K, ldb = p.transB ? p.K : p.N;
    const mine = new Float32Array(p.M * p.N), theirs = new Float32Array(p.M * p.N);
    const runOurs = () =>
      ours.mj_bench_sgemm(p.transA, p.transB, p.M, p.N, p.K, A, lda, B, ldb, mine, p.N);
    const runBlas = () =>
      blas.cblas_sgemm(
        101, // row-major
        p.transA ? 112 : 111,
        p.transB ? 112 : 111,
        p.M,
        p.N,
        p.K,
        1,
        A,
        lda,
        B,
        ldb,
        0,
        theirs,
        p.N,
      );
    runOurs();
    runBlas();
    let worst = 0;
    for (let i = 0; i < mine.length; i++) {
      worst = Math.max(worst, Math.abs(mine[i] - theirs[i]) / (1 + Math.abs(theirs[i])));
    }
    if (worst > 1e-3) throw new Error(`${p.label}: results differ from OpenBLAS by ${worst}`);
    const flop = 2 * p.M * p.N * p.K;
    // Per round: GFLOP/s by the wall clock and by the process's CPU time (one thread only).
    const timed = async (run: () => void) => {
      await sleep(pauseMs);
      const wall: number[] = [], cpu: number[] = [];
      for (let r = 0; r < reps; r++) {
        const c0 = process.cpuUsage(), t0 = performance.now();
        run();
        const t1 = performance.now(), c1 = process.cpuUsage(c0);
        wall.push(flop / (t1 - t0) / 1e6);
        cpu.push(flop / ((c1.user + c1.system) / 1000) / 1e6);
      }
      return { wall: median(wall), cpu: median(cpu) };
    };
    const ourRounds: { wall: number; cpu: number }[] = [], blasRounds: typeof ourRounds = [];
    for (let r = 0; r < rounds; r++) {
      ourRounds.push(await timed(runOurs));
      blasRounds.push(await timed(runBlas));
    }
    for (const [clock, out] of [["wall", wallRows], ["cpu", cpuRows]] as const) {
      const o = ourRounds.map((x) => x[clock]), b = blasRounds.map((x) => x[clock]);
      out.push([
        p.label,
        median(o).toFixed(1),
        Math.max(...o).toFixed(1),
        median(b).toFixed(1),
        Math.max(...b).toFixed(1),
        (median(o) / median(b)).toFixed(2) + "×",
      ]);
    }
  }
}
const head = ["problem", "moejit GFLOP/s", "(best round)", "OpenBLAS GFLOP/s", "(best round)"];
console.log("By the wall clock (medians over rounds of each round's median):");
console.log(table([...head, "ratio"], wallRows));
if (threads === 1) {
  console.log("By CPU time (flop ÷ process CPU seconds):");
  console.log(table([...head, "ratio"], cpuRows));
}
console.log(`load average after: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
