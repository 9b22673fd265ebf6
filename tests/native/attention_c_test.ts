/**
 * The native backend's fused attention kernels (codegen/c/attention.ts), compiled by the system C
 * compiler and called through Deno FFI, against the reference interpreter's `attention`,
 * `attentionBwdQ` and `attentionBwdKV`: forward output with its log-sum-exp, dq, dk and dv, head
 * sizes 4 to 300, S = Sk and Sk > S (and Sk < S without the mask), causal and not, batch 1 and 6;
 * the gradients of a loss that uses both output columns, with delta formed the way the VJP forms
 * it; non-finite inputs behind the causal mask; empty shapes; the same bits with 1, 2 and 3
 * threads; a clean exit right after a parallel call. The builds with 4-float vectors and with
 * no vector extensions are checked the same way.
 */
import * as mj from "../../mod.ts";
import { ATTENTION_C } from "../../codegen/c/attention.ts";
import { BASE_FLAGS } from "../../src/runtime/native/compiler.ts";
import { ON_WORKER_C } from "./on_worker.ts";
import { prim } from "../../src/ops/prim.ts";
import { assert, assertClose, randomArray } from "../helpers.ts";

/**
 * The native backend's flags, plus `-z nodelete`: without it, a process that exits while
 * OpenMP's workers still spin after a call has libgomp unmapped under them (Deno closes the
 * library at exit) and dies of SIGSEGV — the last test below.
 */
const FLAGS = [...BASE_FLAGS, "-march=native", "-fopenmp", "-Wl,-z,nodelete"];

/**
 * Exported wrappers around the static kernels, plus a thread-count switch; the kernels run on one
 * long-lived native thread, as the backend runs them (tests/native/on_worker.ts).
 */
const DRIVER = ON_WORKER_C + `
struct test_args {
  int kind, batch, S, Sk, Dh, causal, threads;
  float scale;
  const float *q, *k, *v, *dO, *lse, *delta;
  float* out;
};
static void test_body(void* p) {
  struct test_args* a = (struct test_args*)p;
  switch (a->kind) {
    case 0:
      mj_attention_fwd(a->batch, a->S, a->Sk, a->Dh, a->causal, a->scale, a->q, a->k, a->v, a->out);
      break;
    case 1:
      mj_attention_bwd_q(a->batch, a->S, a->Sk, a->Dh, a->causal, a->scale, a->q, a->k, a->v,
                         a->dO, a->lse, a->delta, a->out);
      break;
    case 2:
      mj_attention_bwd_kv(a->batch, a->S, a->Sk, a->Dh, a->causal, a->scale, a->q, a->k, a->v,
                          a->dO, a->lse, a->delta, a->out);
      break;
    default:
#ifdef _OPENMP
      omp_set_num_threads(a->threads);
      a->threads = omp_get_max_threads();
#else
      a->threads = 1;
#endif
  }
}
void test_fwd(int batch, int S, int Sk, int Dh, int causal, float scale, const float* q,
              const float* k, const float* v, float* out) {
  struct test_args a = {0, batch, S, Sk, Dh, causal, 0, scale, q, k, v, 0, 0, 0, out};
  mj_on_worker(test_body, &a);
}
void test_bwd_q(int batch, int S, int Sk, int Dh, int causal, float scale, const float* q,
                const float* k, const float* v, const float* dO, const float* lse,
                const float* delta, float* dq) {
  struct test_args a = {1, batch, S, Sk, Dh, causal, 0, scale, q, k, v, dO, lse, delta, dq};
  mj_on_worker(test_body, &a);
}
void test_bwd_kv(int batch, int S, int Sk, int Dh, int causal, float scale, const float* q,
                 const float* k, const float* v, const float* dO, const float* lse,
                 const float* delta, float* dkv) {
  struct test_args a = {2, batch, S, Sk, Dh, causal, 0, scale, q, k, v, dO, lse, delta, dkv};
  mj_on_worker(test_body, &a);
}
void test_exp(const float* x, float* y, int n) {
  for (int i = 0; i < n; i++) y[i] = mj_expf(x[i]);
}
int test_threads(int n) {
  struct test_args a = {3, 0, 0, 0, 0, 0, n, 0.0f, 0, 0, 0, 0, 0, 0, 0};
  mj_on_worker(test_body, &a);
  return a.threads;
}
`;

const SHAPE = ["i32", "i32", "i32", "i32", "i32", "f32"] as const;
const SYMBOLS = {
  test_fwd: { parameters: [...SHAPE, "buffer", "buffer", "buffer", "buffer"], result: "void" },
  test_bwd_q: {
    parameters: [...SHAPE, "buffer", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  test_bwd_kv: {
    parameters: [...SHAPE, "buffer", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  test_exp: { parameters: ["buffer", "buffer", "i32"], result: "void" },
  test_threads: { parameters: ["i32"], result: "i32" },
} as const;
type Kernels = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Compiles the kernels (with extra flags) into a shared library; null when no compiler works. */
async function build(dir: string, name: string, extra: string[]): Promise<string | null> {
  const src = `${dir}/${name}.c`, lib = `${dir}/${name}.so`;
  await Deno.writeTextFile(src, ATTENTION_C + DRIVER);
  try {
    const r = await new Deno.Command("cc", {
      args: [...FLAGS, ...extra, "-o", lib, src, "-lm"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (r.code !== 0) {
      console.log(`attention_c_test: cc failed:\n${new TextDecoder().decode(r.stderr)}`);
      return null;
    }
    return lib;
  } catch (e) {
    console.log(`attention_c_test: skipped, no C compiler (${(e as Error).message})`);
    return null;
  }
}

/** Three builds: native vectors, 4-float vectors, portable C. Empty when no compiler works. */
const builds: { name: string; kernels: Kernels }[] = [];
{
  const dir = await Deno.makeTempDir({ prefix: "moejit-attention-c-" });
  try {
    const variants = [
      ["native vectors", []],
      ["4-float vectors", ["-DMJ_ATTN_VW=4"]],
      ["portable C", ["-DMJ_ATTN_SCALAR"]],
    ] as const;
    const paths = await Promise.all(
      variants.map(([name, extra], i) => build(dir, `v${i}`, [...extra]).then((p) => [name, p])),
    );
    // Loaded now, so that the files can go at once (the mappings outlive them).
    for (const [name, path] of paths) {
      if (path) builds.push({ name: name!, kernels: Deno.dlopen(path, SYMBOLS).symbols });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
const compiled = builds.length === 3;
if (!compiled) console.log("attention_c_test: skipped, the kernels could not be compiled");
const kernels = builds[0]?.kernels;

type Case = {
  batch: number;
  S: number;
  Sk: number;
  Dh: number;
  causal: boolean;
  scale?: number;
};

const CASES: Case[] = [
  { batch: 1, S: 9, Sk: 9, Dh: 4, causal: true },
  { batch: 6, S: 13, Sk: 21, Dh: 5, causal: true },
  { batch: 6, S: 37, Sk: 37, Dh: 16, causal: false },
  { batch: 1, S: 70, Sk: 150, Dh: 32, causal: true, scale: 0.7 },
  { batch: 6, S: 33, Sk: 80, Dh: 32, causal: false },
  { batch: 6, S: 65, Sk: 65, Dh: 64, causal: true },
  { batch: 1, S: 40, Sk: 29, Dh: 64, causal: false },
  { batch: 6, S: 17, Sk: 17, Dh: 12, causal: true },
  // Heads wider than the kernels' transposed chunk (256 columns).
  { batch: 1, S: 20, Sk: 70, Dh: 300, causal: true },
];

/** The inputs of one case; `poison` puts NaN and inf into the last key of batch entry 0. */
function inputs(c: Case, seed: number, poison = false) {
  const f32 = (n: number, s: number) => Float32Array.from(randomArray(n, s, -1.5, 1.5));
  const q = f32(c.batch * c.S * c.Dh, seed), k = f32(c.batch * c.Sk * c.Dh, seed + 1);
  const v = f32(c.batch * c.Sk * c.Dh, seed + 2), dO = f32(c.batch * c.S * c.Dh, seed + 3);
  const dLse = f32(c.batch * c.S, seed + 4);
  if (poison) {
    k[(c.Sk - 1) * c.Dh] = NaN;
    v[(c.Sk - 1) * c.Dh + 1] = Infinity;
  }
  return { q, k, v, dO, dLse };
}

const scaleOf = (c: Case) => c.scale ?? 1 / Math.sqrt(c.Dh);

/** delta = rowsum(dO ⊙ o) − dlse, rounded to f32 (as the VJP's graph computes it). */
function deltaOf(c: Case, out: Float32Array, dO: Float32Array, dLse: Float32Array) {
  const delta = new Float32Array(c.batch * c.S), lse = new Float32Array(c.batch * c.S);
  for (let r = 0; r < c.batch * c.S; r++) {
    let acc = 0;
    for (let d = 0; d < c.Dh; d++) acc += dO[r * c.Dh + d] * out[r * (c.Dh + 1) + d];
    delta[r] = acc - dLse[r];
    lse[r] = out[r * (c.Dh + 1) + c.Dh];
  }
  return { lse, delta };
}

/** The three C kernels; the backward ones take lse and delta from `given`, else from the C forward. */
function runC(
  kernels: Kernels,
  c: Case,
  x: ReturnType<typeof inputs>,
  given?: { lse: Float32Array; delta: Float32Array },
) {
  const args = [c.batch, c.S, c.Sk, c.Dh, c.causal ? 1 : 0, scaleOf(c)] as const;
  const out = new Float32Array(c.batch * c.S * (c.Dh + 1));
  kernels.test_fwd(...args, x.q, x.k, x.v, out);
  const { lse, delta } = given ?? deltaOf(c, out, x.dO, x.dLse);
  const dq = new Float32Array(c.batch * c.S * c.Dh).fill(NaN);
  const dkv = new Float32Array(c.batch * c.Sk * 2 * c.Dh).fill(NaN);
  kernels.test_bwd_q(...args, x.q, x.k, x.v, x.dO, lse, delta, dq);
  kernels.test_bwd_kv(...args, x.q, x.k, x.v, x.dO, lse, delta, dkv);
  return { out, dq, dkv };
}

/**
 * The interpreter's forward, then its two backward primitives fed with the forward's lse and
 * delta = rowsum(dO ⊙ o) − dlse; those lse and delta go to the C backward kernels too.
 */
async function reference(c: Case, x: ReturnType<typeof inputs>) {
  const t = (a: Float32Array, rows: number, cols: number) => mj.tensor(a, [c.batch, rows, cols]);
  const q = t(x.q, c.S, c.Dh), k = t(x.k, c.Sk, c.Dh), v = t(x.v, c.Sk, c.Dh);
  const arg = { causal: c.causal, scale: scaleOf(c) };
  const out = await prim("attention", [q, k, v], arg).data() as Float32Array;
  const { lse, delta } = deltaOf(c, out, x.dO, x.dLse);
  const rows = (a: Float32Array) => mj.tensor(a, [c.batch, c.S]);
  const grads = [q, k, v, t(x.dO, c.S, c.Dh), rows(lse), rows(delta)];
  return {
    out,
    lse,
    delta,
    dq: await prim("attentionBwdQ", grads, arg).data(),
    dkv: await prim("attentionBwdKV", grads, arg).data(),
  };
}

/** About 5× the largest differences seen (f32 sums of up to 300 terms; ds cancels in dp − delta). */
const TOL = {
  out: { rtol: 1e-5, atol: 1e-5 },
  grad: { rtol: 2e-5, atol: 2e-5 },
};

Deno.test({
  name:
    "attention (C): the softmax's exp (mj_expf): relative error under 2.4e-7, 0 far below, inf past the largest float",
  ignore: !compiled,
}, () => {
  for (const { name, kernels } of builds) {
    const x = Float32Array.from({ length: 20001 }, (_, i) => -87.3 + (87.3 + 88.3) * i / 20000);
    const y = new Float32Array(x.length);
    kernels.test_exp(x, y, x.length);
    x.forEach((xi, i) => {
      const e = Math.exp(xi);
      assert.ok(Math.abs(y[i] - e) <= 2.4e-7 * e, `${name}: exp(${xi}) = ${y[i]}, expected ${e}`);
    });
    const edge = Float32Array.of(0, -Infinity, -110, 89, Infinity, NaN, -88);
    kernels.test_exp(edge, y, edge.length);
    assert.deepEqual([...y.subarray(0, 6)], [1, 0, 0, Infinity, Infinity, NaN], name);
    // A subnormal result comes out (to within its own coarse spacing, 2^-149).
    assert.ok(Math.abs(y[6] - Math.exp(-88)) <= 2 ** -149, `${name}: exp(-88) = ${y[6]}`);
  }
});

Deno.test({
  name: "attention (C): forward and both backward kernels match the interpreter",
  ignore: !compiled,
}, async () => {
  mj.setBackend("cpu");
  for (const [n, c] of CASES.entries()) {
    const x = inputs(c, 100 + 10 * n);
    const want = await reference(c, x);
    for (const { name, kernels } of builds) {
      const what = `${name} ${JSON.stringify(c)}`;
      const got = runC(kernels, c, x, want);
      assertClose(got.out, want.out, { ...TOL.out, msg: `${what}: forward` });
      assertClose(got.dq, want.dq, { ...TOL.grad, msg: `${what}: dq` });
      assertClose(got.dkv, want.dkv, { ...TOL.grad, msg: `${what}: dk|dv` });
    }
  }
});

Deno.test({
  name: "attention (C): gradients of a loss over o and the log-sum-exp equal mj.grad's",
  ignore: !compiled,
}, async () => {
  mj.setBackend("cpu");
  for (const [n, c] of CASES.slice(0, 6).entries()) {
    const x = inputs(c, 300 + 10 * n);
    // loss = Σ w ⊙ attention(q, k, v) over both column groups: ∂loss/∂o = dO, ∂loss/∂lse = dLse.
    const W = c.Dh + 1;
    const w = new Float32Array(c.batch * c.S * W);
    for (let r = 0; r < c.batch * c.S; r++) {
      w.set(x.dO.subarray(r * c.Dh, (r + 1) * c.Dh), r * W);
      w[r * W + c.Dh] = x.dLse[r];
    }
    const wt = mj.tensor(w, [c.batch, c.S, W]);
    const arg = { causal: c.causal, scale: scaleOf(c) };
    const loss = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
      prim("attention", [q, k, v], arg).mul(wt).sum();
    const grads = mj.grad(loss)(
      mj.tensor(x.q, [c.batch, c.S, c.Dh]),
      mj.tensor(x.k, [c.batch, c.Sk, c.Dh]),
      mj.tensor(x.v, [c.batch, c.Sk, c.Dh]),
    ) as mj.Tensor[];
    const [gq, gk, gv] = await Promise.all(grads.map((g) => g.data()));
    const got = runC(kernels, c, x);
    const dk = new Float32Array(gk.length), dv = new Float32Array(gv.length);
    for (let r = 0; r < c.batch * c.Sk; r++) {
      dk.set(got.dkv.subarray(2 * r * c.Dh, (2 * r + 1) * c.Dh), r * c.Dh);
      dv.set(got.dkv.subarray((2 * r + 1) * c.Dh, (2 * r + 2) * c.Dh), r * c.Dh);
    }
    const what = JSON.stringify(c);
    assertClose(got.dq, gq, { ...TOL.grad, msg: `${what}: dq` });
    assertClose(dk, gk, { ...TOL.grad, msg: `${what}: dk` });
    assertClose(dv, gv, { ...TOL.grad, msg: `${what}: dv` });
  }
});

Deno.test({
  name: "attention (C): NaN and inf behind the causal mask reach exactly the rows that see them",
  ignore: !compiled,
}, async () => {
  mj.setBackend("cpu");
  for (const c of [CASES[1], CASES[5]]) {
    const x = inputs(c, 7, true);
    const want = await reference(c, x);
    for (const { name, kernels } of builds) {
      const got = runC(kernels, c, x, want);
      const what = `${name} ${JSON.stringify(c)}`;
      // Batch entry 0's rows before the last see no poisoned key: finite on both sides.
      assert.ok(Number.isFinite(got.out[0]), `${what}: row 0 is finite`);
      assertClose(got.out, want.out, { ...TOL.out, msg: `${what}: forward` });
      assertClose(got.dq, want.dq, { ...TOL.grad, msg: `${what}: dq` });
      assertClose(got.dkv, want.dkv, { ...TOL.grad, msg: `${what}: dk|dv` });
    }
  }
});

Deno.test({
  name: "attention (C): empty shapes write what the interpreter's rules give, and nothing else",
  ignore: !compiled,
}, () => {
  const buf = (n: number) => new Float32Array(Math.max(n, 1)).fill(7);
  const none = buf(0);
  // No keys (not causal): o = 0, lse = log 0 = −inf; dq = 0.
  const out = buf(2 * 3 * 5);
  kernels.test_fwd(2, 3, 0, 4, 0, 0.5, buf(24), none, none, out);
  for (let r = 0; r < 6; r++) {
    assert.deepEqual([...out.subarray(5 * r, 5 * r + 5)], [0, 0, 0, 0, -Infinity]);
  }
  const dq = buf(24);
  kernels.test_bwd_q(2, 3, 0, 4, 0, 0.5, buf(24), none, none, buf(24), buf(6), buf(6), dq);
  assert.ok(dq.every((x) => x === 0), "dq without keys is zero");
  // No queries: every key's dk and dv are zero.
  const dkv = buf(2 * 3 * 8);
  kernels.test_bwd_kv(2, 0, 3, 4, 0, 0.5, none, buf(24), buf(24), none, none, none, dkv);
  assert.ok(dkv.every((x) => x === 0), "dk|dv without queries are zero");
  // Head size 0: lse = log(visible keys); no batch entries: nothing written.
  const lse = buf(3);
  kernels.test_fwd(1, 3, 4, 0, 1, 1, none, none, none, lse);
  assertClose(lse, [Math.log(2), Math.log(3), Math.log(4)], { rtol: 1e-6 });
  const untouched = buf(8);
  kernels.test_fwd(0, 2, 2, 3, 1, 1, none, none, none, untouched);
  kernels.test_bwd_kv(0, 2, 2, 3, 1, 1, none, none, none, none, none, none, untouched);
  assert.ok(untouched.every((x) => x === 7), "batch 0 writes nothing");
});

Deno.test({
  name: "attention (C): the same bits with 1, 2 and 3 threads",
  ignore: !compiled,
}, () => {
  for (const c of [CASES[3], CASES[5], { batch: 6, S: 100, Sk: 100, Dh: 32, causal: true }]) {
    const x = inputs(c, 51);
    const runs = [1, 2, 3].map((n) => {
      assert.equal(kernels.test_threads(n), n);
      return runC(kernels, c, x);
    });
    for (const r of runs.slice(1)) {
      for (const key of ["out", "dq", "dkv"] as const) {
        const a = new Uint32Array(runs[0][key].buffer), b = new Uint32Array(r[key].buffer);
        assert.ok(a.every((bits, i) => bits === b[i]), `${JSON.stringify(c)}: ${key} bits`);
      }
    }
  }
});

Deno.test({
  name: "attention (C): a process that exits right after a parallel call exits cleanly",
  ignore: !compiled,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-attention-c-exit-" });
  try {
    const lib = await build(dir, "exit", []);
    assert.ok(lib !== null);
    const child = `
      const lib = Deno.dlopen(${JSON.stringify(lib)}, ${JSON.stringify(SYMBOLS)});
      const n = 64 * 128 * 32, x = new Float32Array(n).fill(0.5);
      const out = new Float32Array(64 * 128 * 33);
      for (let i = 0; i < 5; i++) lib.symbols.test_fwd(64, 128, 128, 32, 1, 0.2, x, x, x, out);
    `;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["eval", child],
      env: { OMP_NUM_THREADS: "2" },
      stderr: "piped",
    }).output();
    assert.equal(r.code, 0, `exit status ${r.code} (signal ${r.signal})`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
