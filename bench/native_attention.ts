/**
 * The native backend's fused attention kernels (codegen/c/attention.ts, compiled here with the
 * system `cc` and called through Deno FFI) against PyTorch on the CPU (the same math: two bmm, a
 * mask, softmax, autograd for the backward) and moejit's fused WebGPU kernels on this machine's
 * adapter, at the default model's shape (16 sequences × 4 heads × 128 tokens × 32) and a long one
 * (4 × 4 × 512 × 64, the same number of tokens), causal. Systems alternate round by round (the
 * machine's speed drifts over minutes; only interleaved figures compare), with the same thread
 * count for C and PyTorch (and its BLAS).
 *
 *   deno run -A bench/native_attention.ts [--threads 2] [--rounds 5] [--no-webgpu] [--no-torch]
 *
 * "fwd+bwd" is the forward, delta = rowsum(dO ⊙ o) (in C too) and both backward kernels for C;
 * the forward plus autograd's q, k and v gradients for PyTorch; a jitted loss-and-gradients step
 * with its scalar read back for WebGPU. Times are medians of wall-clock milliseconds per call;
 * "cpu" is the process's CPU time per call (all its threads), which a busy machine inflates far
 * less than wall time. Check `uptime` first: wall times mean little on a busy machine (the load
 * averages are printed before and after).
 */
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import * as mj from "../mod.ts";
import { ATTENTION_C } from "../codegen/c/attention.ts";
import { median, pythonPeer, table } from "./peers/util.ts";

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
    "no-webgpu": { type: "boolean", default: false },
    "no-torch": { type: "boolean", default: false },
  },
});
const threads = Number(values.threads), rounds = Number(values.rounds);

interface Shape {
  name: string;
  batch: number;
  heads: number;
  S: number;
  Dh: number;
  /** Calls per round and system. */
  reps: number;
}
const SHAPES: Shape[] = [
  { name: "default model", batch: 16, heads: 4, S: 128, Dh: 32, reps: 10 },
  { name: "long", batch: 4, heads: 4, S: 512, Dh: 64, reps: 3 },
];

const loadavg = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
console.log(`load average before: ${loadavg()}; ${threads} threads, ${rounds} rounds`);

// ---- C kernels -----------------------------------------------------------------------------

const DRIVER = `
void bench_fwd(int batch, int S, int Dh, float scale, const float* q, const float* k,
               const float* v, float* out) {
  mj_attention_fwd(batch, S, S, Dh, 1, scale, q, k, v, out);
}
/* lse and delta = rowsum(dO ⊙ o) from the packed forward output, then both backward kernels. */
void bench_bwd(int batch, int S, int Dh, float scale, const float* q, const float* k,
               const float* v, const float* out, const float* dO, float* lse, float* delta,
               float* dq, float* dkv) {
  for (int64_t r = 0; r < (int64_t)batch * S; r++) {
    float acc = 0.0f;
    for (int d = 0; d < Dh; d++) acc += dO[r * Dh + d] * out[r * (Dh + 1) + d];
    delta[r] = acc;
    lse[r] = out[r * (Dh + 1) + Dh];
  }
  mj_attention_bwd_q(batch, S, S, Dh, 1, scale, q, k, v, dO, lse, delta, dq);
  mj_attention_bwd_kv(batch, S, S, Dh, 1, scale, q, k, v, dO, lse, delta, dkv);
}
int bench_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
  return omp_get_max_threads();
#else
  return 1;
#endif
}
`;
const SYMBOLS = {
  bench_fwd: {
    parameters: ["i32", "i32", "i32", "f32", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  bench_bwd: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "f32",
      ...Array.from({ length: 9 }, () => "buffer" as const),
    ],
    result: "void",
  },
  bench_threads: { parameters: ["i32"], result: "i32" },
} as const;

const dir = await Deno.makeTempDir({ prefix: "moejit-bench-attention-" });
// The native backend's flags; -z nodelete keeps libgomp mapped while its workers may still spin
// when Deno closes the library at exit (else SIGSEGV at exit).
const flags = [
  "-O3",
  "-march=native",
  "-fopenmp",
  "-fPIC",
  "-shared",
  "-fwrapv",
  "-fno-math-errno",
  "-Wl,-z,nodelete",
];
await Deno.writeTextFile(`${dir}/attention.c`, ATTENTION_C + DRIVER);
const cc = await new Deno.Command("cc", {
  args: [...flags, "-o", `${dir}/attention.so`, `${dir}/attention.c`, "-lm"],
  stderr: "piped",
}).output();
if (!cc.success) throw new Error(`cc failed:\n${new TextDecoder().decode(cc.stderr)}`);
const c = Deno.dlopen(`${dir}/attention.so`, SYMBOLS).symbols;
await Deno.remove(dir, { recursive: true });
console.log(`C: cc ${flags.join(" ")}; OpenMP threads ${c.bench_threads(threads)}`);

function randomF32(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => 2 * next() - 1);
}

/** Per-call wall-clock milliseconds, and the process's CPU milliseconds per call over them all. */
interface Timing {
  fwd: number[];
  fwdBwd: number[];
  fwdCpu: number;
  fwdBwdCpu: number;
}

/** A round of the C kernels. */
function cRunner(s: Shape): () => Timing {
  const B = s.batch * s.heads, n = B * s.S * s.Dh, scale = 1 / Math.sqrt(s.Dh);
  const q = randomF32(n, 1), k = randomF32(n, 2), v = randomF32(n, 3), dO = randomF32(n, 4);
  const out = new Float32Array(B * s.S * (s.Dh + 1)), lse = new Float32Array(B * s.S);
  const delta = new Float32Array(B * s.S), dq = new Float32Array(n);
  const dkv = new Float32Array(2 * n);
  const fwd = () => c.bench_fwd(B, s.S, s.Dh, scale, q, k, v, out);
  const both = () => {
    fwd();
    c.bench_bwd(B, s.S, s.Dh, scale, q, k, v, out, dO, lse, delta, dq, dkv);
  };
  both();
  return () => {
    const [f, fc] = timeEach(fwd, s.reps), [b, bc] = timeEach(both, s.reps);
    return { fwd: f, fwdBwd: b, fwdCpu: fc, fwdBwdCpu: bc };
  };
}

/** Wall-clock milliseconds of each call, and CPU milliseconds per call. */
function timeEach(f: () => void, reps: number): [number[], number] {
  const ts: number[] = [];
  const c0 = cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  return [ts, cpuMs(c0) / reps];
}

function cpuMs(since: { user: number; system: number }): number {
  const c = cpuUsage(since);
  return (c.user + c.system) / 1e3;
}

// ---- PyTorch (a long-lived process answering one line per request) --------------------------

const TORCH = `
import json, math, sys, time, torch
torch.set_num_threads(${threads})
blas = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower()})
info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas}
shapes = json.loads(sys.argv[1])
state = []
for s in shapes:
    B, S, Dh = s["batch"] * s["heads"], s["S"], s["Dh"]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(B, S, Dh, generator=g) * 2 - 1 for _ in range(3))
    for t in (q, k, v):
        t.requires_grad_(True)
    dO = torch.rand(B, S, Dh, generator=g) * 2 - 1
    mask = torch.ones(S, S, dtype=torch.bool).triu(1)
    scale = 1 / math.sqrt(Dh)
    def fwd(q=q, k=k, v=v, mask=mask, scale=scale):
        s = (q @ k.transpose(1, 2)) * scale
        return torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v
    def both(q=q, k=k, v=v, dO=dO, fwd=fwd):
        torch.autograd.grad(fwd(), (q, k, v), dO)
    def fwd_only(fwd=fwd):
        with torch.no_grad():
            fwd()
    both()
    state.append((fwd_only, both, s["reps"]))
def times(f, n):
    ts = []
    c = time.process_time()
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
    return ts, (time.process_time() - c) * 1e3 / n
print("ready", json.dumps(info), flush=True)
for line in sys.stdin:
    f, b, n = state[int(line)]
    (fw, fc), (bw, bc) = times(f, n), times(b, n)
    print(json.dumps({"fwd": fw, "fwdBwd": bw, "fwdCpu": fc, "fwdBwdCpu": bc}), flush=True)
`;

/** PyTorch's attention, one JSON line of timings per request (the shape's index). */
async function torchPeer() {
  const env = { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  const peer = await pythonPeer(["-c", TORCH, JSON.stringify(SHAPES)], env);
  return peer && {
    info: peer.info,
    run: async (i: number) => JSON.parse(await peer.request(String(i))) as Timing,
    close: peer.close,
  };
}

const torch = values["no-torch"] ? null : await torchPeer();
console.log(`PyTorch: ${torch ? torch.info : "not available"}`);

// ---- moejit on WebGPU --------------------------------------------------------------------------

type Runner = () => Promise<Timing>;

async function webgpuRunner(s: Shape): Promise<Runner> {
  const shape = [s.batch, s.heads, s.S, s.Dh];
  const [q, k, v] = await Promise.all(
    [1, 2, 3].map((seed) => mj.realize(mj.randn(shape, { seed }))),
  );
  const fwd = mj.jit((q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
    mj.nn.attention(q, k, v).square().mean()
  );
  const both = mj.jit((q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) => {
    const loss = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
      mj.nn.attention(q, k, v).square().mean();
    const [l, g] = mj.valueAndGrad(loss)(q, k, v);
    return [l, ...g];
  });
  await (await fwd(q, k, v)).data();
  await (await both(q, k, v))[0].data();
  const timed = async (f: () => Promise<unknown>): Promise<[number[], number]> => {
    const ts: number[] = [];
    const c0 = cpuUsage();
    for (let i = 0; i < s.reps; i++) {
      const t0 = performance.now();
      await f();
      ts.push(performance.now() - t0);
    }
    return [ts, cpuMs(c0) / s.reps];
  };
  return async () => {
    const [f, fc] = await timed(async () => await (await fwd(q, k, v)).data());
    const [b, bc] = await timed(async () => await (await both(q, k, v))[0].data());
    return { fwd: f, fwdBwd: b, fwdCpu: fc, fwdBwdCpu: bc };
  };
}

let webgpu = !values["no-webgpu"];
if (webgpu) {
  try {
    mj.setBackend("webgpu");
    const info = await mj.backendInfo();
    if (info === null) throw new Error("no adapter");
    console.log(`WebGPU: ${info.adapter.description} (${info.backendHint})`);
  } catch (e) {
    console.log(`WebGPU: not available (${(e as Error).message})`);
    webgpu = false;
  }
}

// ---- rounds ------------------------------------------------------------------------------------

const rows: string[][] = [];
for (const [i, s] of SHAPES.entries()) {
  const systems: { name: string; run: Runner }[] = [];
  const cRun = cRunner(s);
  systems.push({ name: "C", run: () => Promise.resolve(cRun()) });
  if (torch) systems.push({ name: "PyTorch", run: () => torch!.run(i) });
  if (webgpu) systems.push({ name: "WebGPU", run: await webgpuRunner(s) });
  const all = systems.map(() => ({
    fwd: [] as number[],
    fwdBwd: [] as number[],
    fwdCpu: [] as number[],
    fwdBwdCpu: [] as number[],
  }));
  for (let r = 0; r < rounds; r++) {
    for (const [j, sys] of systems.entries()) {
      const t = await sys.run();
      all[j].fwd.push(...t.fwd);
      all[j].fwdBwd.push(...t.fwdBwd);
      all[j].fwdCpu.push(t.fwdCpu);
      all[j].fwdBwdCpu.push(t.fwdBwdCpu);
    }
  }
  const cMs = { fwd: median(all[0].fwd), fwdBwd: median(all[0].fwdBwd) };
  // Useful multiply-adds of the causal forward: scores and p·v over the visible half.
  const pairs = s.batch * s.heads * s.S * (s.S + 1) / 2;
  const gflop = 2 * 2 * pairs * s.Dh / 1e9;
  for (const [j, sys] of systems.entries()) {
    const fwd = median(all[j].fwd), fwdBwd = median(all[j].fwdBwd);
    rows.push([
      `${s.name} ${s.batch}×${s.heads}×${s.S}×${s.Dh}`,
      sys.name,
      fwd.toFixed(2),
      fwdBwd.toFixed(2),
      median(all[j].fwdCpu).toFixed(2),
      median(all[j].fwdBwdCpu).toFixed(2),
      (gflop / fwd * 1e3).toFixed(1),
      j === 0 ? "" : `${(fwd / cMs.fwd).toFixed(2)}×`,
      j === 0 ? "" : `${(fwdBwd / cMs.fwdBwd).toFixed(2)}×`,
    ]);
  }
}
await torch?.close();
console.log(
  table(
    [
      "shape",
      "system",
      "fwd ms",
      "fwd+bwd ms",
      "cpu fwd",
      "cpu fwd+bwd",
      "fwd GFLOP/s",
      "C faster: fwd",
      "fwd+bwd",
    ],
    rows,
  ),
);
console.log(`load average after: ${loadavg()}`);
