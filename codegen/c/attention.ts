/**
 * Fused scaled-dot-product attention for the native CPU backend: C source (the counterpart of the
 * WGSL templates in codegen/templates/attention.ts) that the C emitter pastes into each step file
 * that needs it. Same semantics as the `attention`, `attentionBwdQ` and `attentionBwdKV`
 * primitives; the S×Sk scores never exist beyond one tile per task.
 *
 * Layout: row-major contiguous f32, q [batch, S, Dh], k and v [batch, Sk, Dh]. Query i sees key j
 * when j ≤ i + Sk − S (causal, Sk ≥ S) or always (not causal).
 *
 *  - `mj_attention_fwd` → out [batch, S, Dh + 1]: o, then the row's log-sum-exp. A task is a block
 *    of MJ_ATTN_ROWS query rows of one batch entry; it walks the keys they see in tiles of
 *    MJ_ATTN_TILE with an online softmax (exact tile maximum, one rescale per tile and row).
 *  - `mj_attention_bwd_q` → dq [batch, S, Dh]: per query block, p = exp(scale·s − lse)
 *    recomputed, ds = p (dO·v − delta), dq = scale Σ_j ds k_j.
 *  - `mj_attention_bwd_kv` → dkv [batch, Sk, 2·Dh] (dk then dv): per block of key rows,
 *    dv = Σ_i p dO_i and dk = scale Σ_i ds q_i over the queries that see them, in tiles.
 *
 * Why it is built this way:
 *  - All the arithmetic is small matrix products (scores = other side's tile × the task's rows
 *    transposed once; o, dq, dk, dv += p or ds × the other side's rows) done by one register-
 *    blocked kernel (4 rows × 2 vectors) written with GCC/Clang vector extensions, at the
 *    target's register width; plain C without them (or with -DMJ_ATTN_SCALAR).
 *  - Score tiles are laid out [other side][task's rows], so the softmax's maximum, exp and row
 *    sums run across the task's rows: vectorised, with no horizontal reductions.
 *  - exp is MATH_C's branch-free mj_expf (about 1 ulp), which vectorises; libm's expf does not
 *    without -ffast-math, and would cost more than all the multiply-adds at Dh 32.
 *  - Keys past a row's causal limit are never multiplied in (each row's sum has its own range),
 *    so a NaN or inf in a key a query does not see cannot reach it through 0 · inf.
 *  - Deterministic whatever the thread count: a task owns its output rows, and every sum is one
 *    chain in an order fixed by the shapes alone (the blocking never changes it); tasks go to
 *    threads dynamically, the costliest causal blocks first, with no atomics and no
 *    cross-thread reductions.
 *  - Scratch is fixed-size arrays on each task's stack (about 40 KiB); accumulators live in the
 *    output rows themselves, so nothing depends on Dh and nothing can fail to allocate. Heads
 *    wider than MJ_ATTN_DC are transposed chunk by chunk.
 *
 * @example
 * ```ts
 * // A step file calling the causal forward for 64 heads × 128 tokens × 32:
 * const source = `${ATTENTION_C}
 * void step(const float* q, const float* k, const float* v, float* out) {
 *   mj_attention_fwd(64, 128, 128, 32, 1, 0.17677669f, q, k, v, out);
 * }`;
 * ```
 */

import { MATH_C } from "./math.ts";

/** C source of the three attention kernels (static functions; include once per file). */
export const ATTENTION_C: string = String.raw`
/* ---- fused attention (moejit codegen/c/attention.ts) ---- */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* A task's own rows (the score tiles' columns), the rows of the other side
   per tile, and the head columns transposed at once (the whole head when Dh ≤ MJ_ATTN_DC). */
#ifndef MJ_ATTN_ROWS
#define MJ_ATTN_ROWS 16
#endif
#ifndef MJ_ATTN_TILE
#define MJ_ATTN_TILE 64
#endif
#ifndef MJ_ATTN_DC
#define MJ_ATTN_DC 256
#endif
/* Below this many score multiply-adds a call runs on the calling thread alone. */
#define MJ_ATTN_PARALLEL_WORK 65536
#if defined(__GNUC__) || defined(__clang__)
#define MJ_ATTN_API static __attribute__((unused))
#else
#define MJ_ATTN_API static
#endif

${MATH_C}

static inline int mj_attn_min(int a, int b) { return a < b ? a : b; }
static inline int mj_attn_max(int a, int b) { return a > b ? a : b; }
static inline int mj_attn_clamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Keys visible to query i: [0, mj_attn_keys(...)). */
static inline int mj_attn_keys(int i, int S, int Sk, int causal) {
  return causal ? mj_attn_min(i + Sk - S + 1, Sk) : Sk;
}

/* dst[d·ROWS + r] = src[r·ld + c0 + d] for r < n, d < dn; columns r ≥ n are zero. */
static void mj_attn_transpose(float* restrict dst, const float* restrict src, int n, int64_t ld,
                              int c0, int dn) {
  for (int d = 0; d < dn; d++) {
    float* restrict col = dst + d * MJ_ATTN_ROWS;
    for (int r = 0; r < n; r++) col[r] = src[r * ld + c0 + d];
    for (int r = n; r < MJ_ATTN_ROWS; r++) col[r] = 0.0f;
  }
}

/* The small matrix products: C[r·ldc + c] (+)= Σ_k A[r·ar + k·ak] · B[k·ldb + c] over rows r,
   columns c < N and a range of k. Every element is one chain of multiply-adds in k order, started
   from C's value (or from zero), whichever kernel handles it — four rows or one, two vectors of
   columns, one, four columns or one — so the bits do not depend on the blocking. */
/* Vector width in floats: what the target holds in one register (wider generic vectors are
   split by the compiler, badly); MJ_ATTN_SCALAR: plain C only. */
#if !defined(MJ_ATTN_VW) && (defined(__GNUC__) || defined(__clang__)) && !defined(MJ_ATTN_SCALAR)
#if defined(__AVX__)
#define MJ_ATTN_VW 8
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__) || \
    defined(__wasm_simd128__) || defined(__ALTIVEC__)
#define MJ_ATTN_VW 4
#endif
#endif
#ifdef MJ_ATTN_VW
typedef float mj_attn_vf __attribute__((vector_size(MJ_ATTN_VW * 4)));
typedef float mj_attn_v4 __attribute__((vector_size(16)));
/* Unaligned views for loads and stores (macros: returning a vector from a function is an ABI
   question some compilers warn about). */
typedef float mj_attn_vfu __attribute__((vector_size(MJ_ATTN_VW * 4), aligned(4), may_alias));
typedef float mj_attn_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#define mj_attn_ldv(p) (*(const mj_attn_vfu*)(p))
#define mj_attn_ld4(p) (*(const mj_attn_v4u*)(p))
#define mj_attn_stv(p, x) (*(mj_attn_vfu*)(p) = (x))
#define mj_attn_st4(p, x) (*(mj_attn_v4u*)(p) = (x))
#endif

/* Four rows of C over k in [k0, k1); add = 0 starts from zero instead of C. */
static inline void mj_attn_mm4(float* restrict C, int64_t ldc, const float* restrict A,
                               int64_t ar, int64_t ak, const float* restrict B, int64_t ldb,
                               int N, int k0, int k1, int add) {
  float* restrict C1 = C + ldc;
  float* restrict C2 = C + 2 * ldc;
  float* restrict C3 = C + 3 * ldc;
  const float* restrict A1 = A + ar;
  const float* restrict A2 = A + 2 * ar;
  const float* restrict A3 = A + 3 * ar;
  int c = 0;
#ifdef MJ_ATTN_VW
  const mj_attn_vf zv = {0};
  for (; c + 2 * MJ_ATTN_VW <= N; c += 2 * MJ_ATTN_VW) {
    mj_attn_vf x0 = zv, y0 = zv, x1 = zv, y1 = zv, x2 = zv, y2 = zv, x3 = zv, y3 = zv;
    if (add) {
      x0 = mj_attn_ldv(C + c), y0 = mj_attn_ldv(C + c + MJ_ATTN_VW);
      x1 = mj_attn_ldv(C1 + c), y1 = mj_attn_ldv(C1 + c + MJ_ATTN_VW);
      x2 = mj_attn_ldv(C2 + c), y2 = mj_attn_ldv(C2 + c + MJ_ATTN_VW);
      x3 = mj_attn_ldv(C3 + c), y3 = mj_attn_ldv(C3 + c + MJ_ATTN_VW);
    }
    for (int k = k0; k < k1; k++) {
      const float* b = B + k * ldb + c;
      const mj_attn_vf b0 = mj_attn_ldv(b), b1 = mj_attn_ldv(b + MJ_ATTN_VW);
      const float a0 = A[k * ak], a1 = A1[k * ak], a2 = A2[k * ak], a3 = A3[k * ak];
      x0 += a0 * b0;
      y0 += a0 * b1;
      x1 += a1 * b0;
      y1 += a1 * b1;
      x2 += a2 * b0;
      y2 += a2 * b1;
      x3 += a3 * b0;
      y3 += a3 * b1;
    }
    mj_attn_stv(C + c, x0), mj_attn_stv(C + c + MJ_ATTN_VW, y0);
    mj_attn_stv(C1 + c, x1), mj_attn_stv(C1 + c + MJ_ATTN_VW, y1);
    mj_attn_stv(C2 + c, x2), mj_attn_stv(C2 + c + MJ_ATTN_VW, y2);
    mj_attn_stv(C3 + c, x3), mj_attn_stv(C3 + c + MJ_ATTN_VW, y3);
  }
  if (c + MJ_ATTN_VW <= N) {
    mj_attn_vf x0 = zv, x1 = zv, x2 = zv, x3 = zv;
    if (add) {
      x0 = mj_attn_ldv(C + c), x1 = mj_attn_ldv(C1 + c);
      x2 = mj_attn_ldv(C2 + c), x3 = mj_attn_ldv(C3 + c);
    }
    for (int k = k0; k < k1; k++) {
      const mj_attn_vf b0 = mj_attn_ldv(B + k * ldb + c);
      x0 += A[k * ak] * b0;
      x1 += A1[k * ak] * b0;
      x2 += A2[k * ak] * b0;
      x3 += A3[k * ak] * b0;
    }
    mj_attn_stv(C + c, x0), mj_attn_stv(C1 + c, x1);
    mj_attn_stv(C2 + c, x2), mj_attn_stv(C3 + c, x3);
    c += MJ_ATTN_VW;
  }
#if MJ_ATTN_VW > 4
  if (c + 4 <= N) {
    const mj_attn_v4 z4 = {0};
    mj_attn_v4 x0 = z4, x1 = z4, x2 = z4, x3 = z4;
    if (add) {
      x0 = mj_attn_ld4(C + c), x1 = mj_attn_ld4(C1 + c);
      x2 = mj_attn_ld4(C2 + c), x3 = mj_attn_ld4(C3 + c);
    }
    for (int k = k0; k < k1; k++) {
      const mj_attn_v4 b0 = mj_attn_ld4(B + k * ldb + c);
      x0 += A[k * ak] * b0;
      x1 += A1[k * ak] * b0;
      x2 += A2[k * ak] * b0;
      x3 += A3[k * ak] * b0;
    }
    mj_attn_st4(C + c, x0), mj_attn_st4(C1 + c, x1);
    mj_attn_st4(C2 + c, x2), mj_attn_st4(C3 + c, x3);
    c += 4;
  }
#endif
#endif
  for (; c < N; c++) {
    float x0 = 0.0f, x1 = 0.0f, x2 = 0.0f, x3 = 0.0f;
    if (add) x0 = C[c], x1 = C1[c], x2 = C2[c], x3 = C3[c];
    for (int k = k0; k < k1; k++) {
      const float b0 = B[k * ldb + c];
      x0 += A[k * ak] * b0;
      x1 += A1[k * ak] * b0;
      x2 += A2[k * ak] * b0;
      x3 += A3[k * ak] * b0;
    }
    C[c] = x0, C1[c] = x1, C2[c] = x2, C3[c] = x3;
  }
}

/* One row of C over k in [k0, k1). */
static inline void mj_attn_mm1(float* restrict C, const float* restrict A, int64_t ak,
                               const float* restrict B, int64_t ldb, int N, int k0, int k1,
                               int add) {
  int c = 0;
#ifdef MJ_ATTN_VW
  const mj_attn_vf zv = {0};
  for (; c + 2 * MJ_ATTN_VW <= N; c += 2 * MJ_ATTN_VW) {
    mj_attn_vf x0 = zv, y0 = zv;
    if (add) x0 = mj_attn_ldv(C + c), y0 = mj_attn_ldv(C + c + MJ_ATTN_VW);
    for (int k = k0; k < k1; k++) {
      const float* b = B + k * ldb + c;
      x0 += A[k * ak] * mj_attn_ldv(b);
      y0 += A[k * ak] * mj_attn_ldv(b + MJ_ATTN_VW);
    }
    mj_attn_stv(C + c, x0), mj_attn_stv(C + c + MJ_ATTN_VW, y0);
  }
  if (c + MJ_ATTN_VW <= N) {
    mj_attn_vf x0 = zv;
    if (add) x0 = mj_attn_ldv(C + c);
    for (int k = k0; k < k1; k++) x0 += A[k * ak] * mj_attn_ldv(B + k * ldb + c);
    mj_attn_stv(C + c, x0);
    c += MJ_ATTN_VW;
  }
#if MJ_ATTN_VW > 4
  if (c + 4 <= N) {
    const mj_attn_v4 z4 = {0};
    mj_attn_v4 x0 = z4;
    if (add) x0 = mj_attn_ld4(C + c);
    for (int k = k0; k < k1; k++) x0 += A[k * ak] * mj_attn_ld4(B + k * ldb + c);
    mj_attn_st4(C + c, x0);
    c += 4;
  }
#endif
#endif
  for (; c < N; c++) {
    float x0 = add ? C[c] : 0.0f;
    for (int k = k0; k < k1; k++) x0 += A[k * ak] * B[k * ldb + c];
    C[c] = x0;
  }
}

/* M rows of C over k in [0, K). */
static void mj_attn_mm(float* restrict C, int64_t ldc, const float* restrict A, int64_t ar,
                       int64_t ak, const float* restrict B, int64_t ldb, int M, int N, int K,
                       int add) {
  int r = 0;
  for (; r + 4 <= M; r += 4) {
    mj_attn_mm4(C + r * ldc, ldc, A + r * ar, ar, ak, B, ldb, N, 0, K, add);
  }
  for (; r < M; r++) mj_attn_mm1(C + r * ldc, A + r * ar, ak, B, ldb, N, 0, K, add);
}

/* M rows of C, row r adding k in [k0[r], k1[r]) (none when k1[r] ≤ k0[r]). Four rows share
   their common range; the rest of each row's range runs before or after it, so every chain
   still goes in k order. */
static void mj_attn_mm_ranges(float* restrict C, int64_t ldc, const float* restrict A,
                              int64_t ar, int64_t ak, const float* restrict B, int64_t ldb,
                              int M, int N, const int* k0, const int* k1) {
  int r = 0;
  for (; r + 4 <= M; r += 4) {
    int lo = k0[r], hi = k1[r];
    for (int t = r + 1; t < r + 4; t++) lo = mj_attn_max(lo, k0[t]), hi = mj_attn_min(hi, k1[t]);
    if (lo >= hi) {
      for (int t = r; t < r + 4; t++) {
        mj_attn_mm1(C + t * ldc, A + t * ar, ak, B, ldb, N, k0[t], k1[t], 1);
      }
      continue;
    }
    for (int t = r; t < r + 4; t++) {
      mj_attn_mm1(C + t * ldc, A + t * ar, ak, B, ldb, N, k0[t], lo, 1);
    }
    mj_attn_mm4(C + r * ldc, ldc, A + r * ar, ar, ak, B, ldb, N, lo, hi, 1);
    for (int t = r; t < r + 4; t++) {
      mj_attn_mm1(C + t * ldc, A + t * ar, ak, B, ldb, N, hi, k1[t], 1);
    }
  }
  for (; r < M; r++) mj_attn_mm1(C + r * ldc, A + r * ar, ak, B, ldb, N, k0[r], k1[r], 1);
}

/* st[x·ROWS + r] = Σ_d other[x][d] · own[r][d] for the n rows x of the other side (row stride
   Dh) and the task's rows r, from ownT = own transposed (when whole) or from own itself (then
   transposed here chunk by chunk). */
static void mj_attn_scores(float* restrict st, const float* restrict other, int n, int Dh,
                           float* restrict ownT, const float* restrict own, int nown, int whole) {
  int c0 = 0;
  do {
    const int dn = mj_attn_min(MJ_ATTN_DC, Dh - c0);
    if (!whole) mj_attn_transpose(ownT, own, nown, Dh, c0, dn);
    mj_attn_mm(st, MJ_ATTN_ROWS, other + c0, Dh, 1, ownT, MJ_ATTN_ROWS, n, MJ_ATTN_ROWS, dn,
               c0 > 0);
    c0 += MJ_ATTN_DC;
  } while (c0 < Dh);
}

MJ_ATTN_API void mj_attention_fwd(int batch, int S, int Sk, int Dh, int causal, float scale,
                                  const float* q, const float* k, const float* v, float* out) {
  if (batch <= 0 || S <= 0) return;
  const int W = Dh + 1, whole = Dh <= MJ_ATTN_DC;
  const int blocks = (S + MJ_ATTN_ROWS - 1) / MJ_ATTN_ROWS;
  const int64_t tasks = (int64_t)batch * blocks;
  const double work = (double)batch * S * Sk * (Dh + 1);
  (void)work;
#pragma omp parallel for schedule(dynamic, 1) if (work >= MJ_ATTN_PARALLEL_WORK)
  for (int64_t task = 0; task < tasks; task++) {
    /* The last query blocks see the most keys: they go first, for every batch entry. */
    const int b = (int)(task % batch), i0 = (blocks - 1 - (int)(task / batch)) * MJ_ATTN_ROWS;
    const int nr = mj_attn_min(MJ_ATTN_ROWS, S - i0);
    const float* qb = q + ((int64_t)b * S + i0) * Dh;
    const float* kb = k + (int64_t)b * Sk * Dh;
    const float* vb = v + (int64_t)b * Sk * Dh;
    float* ob = out + ((int64_t)b * S + i0) * W;
    float qt[MJ_ATTN_DC * MJ_ATTN_ROWS], st[MJ_ATTN_TILE * MJ_ATTN_ROWS];
    float m[MJ_ATTN_ROWS], l[MJ_ATTN_ROWS], mt[MJ_ATTN_ROWS];
    int lim[MJ_ATTN_ROWS], zero[MJ_ATTN_ROWS], n[MJ_ATTN_ROWS];
    int hi = 0;
    for (int r = 0; r < MJ_ATTN_ROWS; r++) {
      lim[r] = r < nr ? mj_attn_keys(i0 + r, S, Sk, causal) : 0;
      hi = mj_attn_max(hi, lim[r]);
      m[r] = r < nr ? -INFINITY : 0.0f; /* padding rows: p = exp(−inf − 0) = 0 */
      l[r] = 0.0f;
      zero[r] = 0;
    }
    for (int r = 0; r < nr; r++) memset(ob + (int64_t)r * W, 0, sizeof(float) * (size_t)Dh);
    if (whole) mj_attn_transpose(qt, qb, nr, Dh, 0, Dh);
    for (int j0 = 0; j0 < hi; j0 += MJ_ATTN_TILE) {
      const int bk = mj_attn_min(MJ_ATTN_TILE, hi - j0);
      mj_attn_scores(st, kb + (int64_t)j0 * Dh, bk, Dh, qt, qb, nr, whole);
      /* Scale, mask (keys past a row's limit → −inf) and the tile's maximum per row. */
      for (int r = 0; r < MJ_ATTN_ROWS; r++) mt[r] = -INFINITY;
      for (int j = 0; j < bk; j++) {
        float* restrict row = st + j * MJ_ATTN_ROWS;
        for (int r = 0; r < MJ_ATTN_ROWS; r++) {
          const float x = j0 + j < lim[r] ? row[r] * scale : -INFINITY;
          row[r] = x;
          mt[r] = x > mt[r] ? x : mt[r];
        }
      }
      for (int r = 0; r < nr; r++) {
        if (!(mt[r] > m[r])) continue;
        if (m[r] != -INFINITY) { /* a new maximum: rescale what the row holds so far */
          const float c = expf(m[r] - mt[r]);
          l[r] *= c;
          float* restrict o = ob + (int64_t)r * W;
          for (int d = 0; d < Dh; d++) o[d] *= c;
        }
        m[r] = mt[r];
      }
      for (int j = 0; j < bk; j++) {
        float* restrict row = st + j * MJ_ATTN_ROWS;
        for (int r = 0; r < MJ_ATTN_ROWS; r++) {
          row[r] = mj_expf(row[r] - m[r]);
          l[r] += row[r];
        }
      }
      for (int r = 0; r < nr; r++) n[r] = mj_attn_clamp(lim[r] - j0, 0, bk);
      mj_attn_mm_ranges(ob, W, st, 1, MJ_ATTN_ROWS, vb + (int64_t)j0 * Dh, Dh, nr, Dh, zero, n);
    }
    for (int r = 0; r < nr; r++) {
      float* restrict o = ob + (int64_t)r * W;
      if (lim[r] == 0) { /* no keys: o = 0, lse = log 0 */
        o[Dh] = -INFINITY;
        continue;
      }
      for (int d = 0; d < Dh; d++) o[d] /= l[r];
      o[Dh] = m[r] + logf(l[r]);
    }
  }
}

MJ_ATTN_API void mj_attention_bwd_q(int batch, int S, int Sk, int Dh, int causal, float scale,
                                    const float* q, const float* k, const float* v,
                                    const float* dO, const float* lse, const float* delta,
                                    float* dq) {
  if (batch <= 0 || S <= 0) return;
  const int whole = Dh <= MJ_ATTN_DC;
  const int blocks = (S + MJ_ATTN_ROWS - 1) / MJ_ATTN_ROWS;
  const int64_t tasks = (int64_t)batch * blocks;
  const double work = (double)batch * S * Sk * (Dh + 1);
  (void)work;
#pragma omp parallel for schedule(dynamic, 1) if (work >= MJ_ATTN_PARALLEL_WORK)
  for (int64_t task = 0; task < tasks; task++) {
    /* The last query blocks see the most keys: they go first, for every batch entry. */
    const int b = (int)(task % batch), i0 = (blocks - 1 - (int)(task / batch)) * MJ_ATTN_ROWS;
    const int nr = mj_attn_min(MJ_ATTN_ROWS, S - i0);
    const int64_t row0 = (int64_t)b * S + i0;
    const float* qb = q + row0 * Dh;
    const float* gb = dO + row0 * Dh;
    const float* kb = k + (int64_t)b * Sk * Dh;
    const float* vb = v + (int64_t)b * Sk * Dh;
    float* ob = dq + row0 * Dh;
    float qt[MJ_ATTN_DC * MJ_ATTN_ROWS], gt[MJ_ATTN_DC * MJ_ATTN_ROWS];
    float st[MJ_ATTN_TILE * MJ_ATTN_ROWS], dpt[MJ_ATTN_TILE * MJ_ATTN_ROWS];
    float L[MJ_ATTN_ROWS], D[MJ_ATTN_ROWS];
    int lim[MJ_ATTN_ROWS], zero[MJ_ATTN_ROWS], n[MJ_ATTN_ROWS];
    int hi = 0;
    for (int r = 0; r < MJ_ATTN_ROWS; r++) {
      lim[r] = r < nr ? mj_attn_keys(i0 + r, S, Sk, causal) : 0;
      hi = mj_attn_max(hi, lim[r]);
      L[r] = r < nr ? lse[row0 + r] : 0.0f;
      D[r] = r < nr ? delta[row0 + r] : 0.0f;
      zero[r] = 0;
    }
    memset(ob, 0, sizeof(float) * (size_t)nr * (size_t)Dh);
    if (whole) {
      mj_attn_transpose(qt, qb, nr, Dh, 0, Dh);
      mj_attn_transpose(gt, gb, nr, Dh, 0, Dh);
    }
    for (int j0 = 0; j0 < hi; j0 += MJ_ATTN_TILE) {
      const int bk = mj_attn_min(MJ_ATTN_TILE, hi - j0);
      mj_attn_scores(st, kb + (int64_t)j0 * Dh, bk, Dh, qt, qb, nr, whole);
      mj_attn_scores(dpt, vb + (int64_t)j0 * Dh, bk, Dh, gt, gb, nr, whole);
      /* ds = p (dp − delta); keys past a row's limit are left out of the product below. */
      for (int j = 0; j < bk; j++) {
        float* restrict row = st + j * MJ_ATTN_ROWS;
        const float* restrict dpr = dpt + j * MJ_ATTN_ROWS;
        for (int r = 0; r < MJ_ATTN_ROWS; r++) {
          row[r] = mj_expf(row[r] * scale - L[r]) * (dpr[r] - D[r]);
        }
      }
      for (int r = 0; r < nr; r++) n[r] = mj_attn_clamp(lim[r] - j0, 0, bk);
      mj_attn_mm_ranges(ob, Dh, st, 1, MJ_ATTN_ROWS, kb + (int64_t)j0 * Dh, Dh, nr, Dh, zero, n);
    }
    for (int64_t x = 0; x < (int64_t)nr * Dh; x++) ob[x] *= scale;
  }
}

MJ_ATTN_API void mj_attention_bwd_kv(int batch, int S, int Sk, int Dh, int causal, float scale,
                                     const float* q, const float* k, const float* v,
                                     const float* dO, const float* lse, const float* delta,
                                     float* dkv) {
  if (batch <= 0 || Sk <= 0) return;
  const int W = 2 * Dh, whole = Dh <= MJ_ATTN_DC;
  const int blocks = (Sk + MJ_ATTN_ROWS - 1) / MJ_ATTN_ROWS;
  const int64_t tasks = (int64_t)batch * blocks;
  const int shift = causal ? Sk - S : Sk; /* query i sees key j when i ≥ j − shift */
  const double work = (double)batch * S * Sk * (Dh + 1);
  (void)work;
#pragma omp parallel for schedule(dynamic, 1) if (work >= MJ_ATTN_PARALLEL_WORK)
  for (int64_t task = 0; task < tasks; task++) {
    /* The first key blocks are seen by the most queries: they go first. */
    const int b = (int)(task % batch), j0 = (int)(task / batch) * MJ_ATTN_ROWS;
    const int nk = mj_attn_min(MJ_ATTN_ROWS, Sk - j0);
    const int64_t key0 = (int64_t)b * Sk + j0;
    const float* kb = k + key0 * Dh;
    const float* vb = v + key0 * Dh;
    const float* qb = q + (int64_t)b * S * Dh;
    const float* gb = dO + (int64_t)b * S * Dh;
    const float* lb = lse + (int64_t)b * S;
    const float* db = delta + (int64_t)b * S;
    float* ob = dkv + key0 * W;
    float kt[MJ_ATTN_DC * MJ_ATTN_ROWS], vt[MJ_ATTN_DC * MJ_ATTN_ROWS];
    float st[MJ_ATTN_TILE * MJ_ATTN_ROWS], dpt[MJ_ATTN_TILE * MJ_ATTN_ROWS];
    int first[MJ_ATTN_ROWS], end[MJ_ATTN_ROWS];
    memset(ob, 0, sizeof(float) * (size_t)nk * (size_t)W);
    if (whole) {
      mj_attn_transpose(kt, kb, nk, Dh, 0, Dh);
      mj_attn_transpose(vt, vb, nk, Dh, 0, Dh);
    }
    /* The block's first key is seen from query j0 − shift on. */
    for (int i0 = mj_attn_max(j0 - shift, 0); i0 < S; i0 += MJ_ATTN_TILE) {
      const int bq = mj_attn_min(MJ_ATTN_TILE, S - i0);
      mj_attn_scores(st, qb + (int64_t)i0 * Dh, bq, Dh, kt, kb, nk, whole);
      mj_attn_scores(dpt, gb + (int64_t)i0 * Dh, bq, Dh, vt, vb, nk, whole);
      for (int i = 0; i < bq; i++) {
        float* restrict row = st + i * MJ_ATTN_ROWS;
        float* restrict dpr = dpt + i * MJ_ATTN_ROWS;
        const float Li = lb[i0 + i], Di = db[i0 + i];
        for (int r = 0; r < MJ_ATTN_ROWS; r++) {
          const float p = mj_expf(row[r] * scale - Li);
          row[r] = p;
          dpr[r] = p * (dpr[r] - Di);
        }
      }
      /* Key j0 + r is seen by this tile's queries from first[r] on. */
      for (int r = 0; r < nk; r++) {
        first[r] = mj_attn_clamp(j0 + r - shift - i0, 0, bq);
        end[r] = bq;
      }
      mj_attn_mm_ranges(ob + Dh, W, st, 1, MJ_ATTN_ROWS, gb + (int64_t)i0 * Dh, Dh, nk, Dh,
                        first, end);
      mj_attn_mm_ranges(ob, W, dpt, 1, MJ_ATTN_ROWS, qb + (int64_t)i0 * Dh, Dh, nk, Dh, first,
                        end);
    }
    for (int r = 0; r < nk; r++) {
      float* restrict dk = ob + (int64_t)r * W;
      for (int d = 0; d < Dh; d++) dk[d] *= scale;
    }
  }
}
/* ---- end of fused attention ---- */
`;
