/**
 * moejit's own single-precision GEMM in C, for the native backend when no system BLAS is found.
 * `GEMM_C` is a translation-unit fragment (static functions, standard headers only) that a
 * generated step file includes verbatim; its entry point, row-major, is
 *
 *     static void mj_sgemm(int transA, int transB, int M, int N, int K, const float* A, int lda,
 *                          const float* B, int ldb, float* C, int ldc, int accumulate);
 *
 * computing C[m,n] (+)= Σ_k opA[m,k]·opB[k,n] with opA[m,k] = transA ? A[k·lda+m] : A[m·lda+k]
 * and opB[k,n] = transB ? B[n·ldb+k] : B[k·ldb+n]; accumulate 0 overwrites C, 1 adds to it. Any
 * size works, zero included. Built with the backend's flags (`cc -O3 -march=native -fopenmp`).
 *
 * Design (GotoBLAS/BLIS): B is packed KC×NC at a time into NR-column panels and A MC×KC at a
 * time into MR-row panels (depth-major, zero-padded to whole panels), and an MR×NR kernel keeps
 * the tile in vector registers: per depth step it loads NR/VW vectors of B, broadcasts MR values
 * of A and does MR·NR/VW fused multiply-adds (`a*b + c`, contracted under GCC's default
 * -ffp-contract=fast and Clang's "on"). Edge tiles run the same kernel into a scratch tile. Per
 * vector width (GCC/Clang vector extensions; a plain-C scalar kernel otherwise):
 *
 *   | ISA              | VW | MR×NR | KC  | MC  | NC   | innermost loop |
 *   | AVX-512          | 16 | 14×32 | 384 | 168 | 1024 | jr (A panel in L1, B block in L2) |
 *   | AVX / AVX2       |  8 |  6×16 | 256 |  72 | 2048 | ir (B panel in L1, A block in L2) |
 *   | NEON (AArch64)   |  4 |  8×12 | 256 | 120 | 2048 | ir |
 *   | SSE2 and others  |  4 |  6×8  | 256 | 120 | 2048 | ir |
 *   | no vectors       |  1 |  4×4  | 256 | 120 | 2048 | ir |
 *
 * 14×32 holds the tile in 28 of the 32 zmm registers; on an AVX-512 host (Sapphire Rapids, 2 MiB
 * L2) it ran level with 12×32 and 8×48 and ahead of 6×64, and innermost jr beat BLIS's innermost
 * ir by 1.05–1.2×. 6×16 and 8×12 are BLIS's Haswell and ARMv8 tiles, with BLIS's loop order,
 * which asks less of L2 (256 KiB–1 MiB on those machines). Each value can be overridden
 * with `-DMJ_GEMM_MR=…` (also NR, KC, MC, NC, JR_INNER; `-DMJ_GEMM_SCALAR` forces the scalar
 * kernel), which the tests use to run every path on one machine.
 *
 * Speed (bench/native_gemm.ts, 2-core Sapphire Rapids VM): level with OpenBLAS 0.3.21's sgemm
 * at 1024³ and 4096×512×2048 and their NT/TN backward shapes, 0.9–1.1× by CPU time on one
 * thread (140–180 GFLOP/s), and 0.7–1.2× by the wall clock on two threads with the machine
 * loaded by other work (load average 5–10; both systems then ran at 40–100 GFLOP/s).
 *
 * Determinism: each output element is summed in one fixed order: within a depth block of
 * KC(K) (a function of K alone) from zero, in k order, then added to C block after block. MC, NC,
 * the tile's position and the thread count change nothing, so the bits are the same whatever the
 * number of threads or their timing.
 *
 * Threads (OpenMP): products of at least 2·10⁶ multiply-adds are cut into two pieces of C per
 * thread (omp_get_max_threads()), in the grid over M and N that costs least per piece (padded
 * tiles plus packing), handed out dynamically, each piece packing its own panels: no barriers,
 * so a thread that loses its core to another process holds up only its current piece (with the
 * packed B shared behind barriers instead, 2 threads ran up to 2× slower on a busy machine).
 * Inside an active parallel region (omp_in_parallel(), e.g. a loop over experts) it runs on the
 * calling thread alone. Packing buffers are allocated per call (malloc, 64-byte aligned); no
 * static state, so concurrent calls are safe. Without memory it falls back to one-panel
 * buffers on the stack (same bits, slower).
 *
 * @example A step file's C source that multiplies a 64×16 by a 16×32 matrix:
 * ```ts
 * const source = GEMM_C + `
 * void step(const float* a, const float* b, float* c) {
 *   mj_sgemm(0, 0, 64, 32, 16, a, 16, b, 32, c, 32, 0);
 * }`;
 * ```
 */
export const GEMM_C: string = String.raw`
/* moejit's own single-precision GEMM (row-major), GotoBLAS/BLIS style: packed panels of A and
 * B, an MR x NR register-tile kernel written with GCC/Clang vector extensions, cache blocks
 * KC/MC/NC. The entry point is mj_sgemm, at the end. */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Vector width VW (floats) and register tile MR x NR per ISA; each can be overridden with -D. */
#if !defined(MJ_GEMM_VW)
#if defined(MJ_GEMM_SCALAR) || !(defined(__GNUC__) || defined(__clang__))
#define MJ_GEMM_VW 1
#elif defined(__AVX512F__)
#define MJ_GEMM_VW 16
#elif defined(__AVX__)
#define MJ_GEMM_VW 8
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__) || defined(__ALTIVEC__) || defined(__wasm_simd128__)
#define MJ_GEMM_VW 4
#else
#define MJ_GEMM_VW 1
#endif
#endif
#if !defined(MJ_GEMM_MR) || !defined(MJ_GEMM_NR)
#if MJ_GEMM_VW == 16
#define MJ_GEMM_MR 14
#define MJ_GEMM_NR 32
#elif MJ_GEMM_VW == 8
#define MJ_GEMM_MR 6
#define MJ_GEMM_NR 16
#elif MJ_GEMM_VW == 4 && (defined(__aarch64__) || defined(__ALTIVEC__))
#define MJ_GEMM_MR 8
#define MJ_GEMM_NR 12
#elif MJ_GEMM_VW == 4
#define MJ_GEMM_MR 6
#define MJ_GEMM_NR 8
#else
#define MJ_GEMM_MR 4
#define MJ_GEMM_NR 4
#endif
#endif
#if MJ_GEMM_VW > 1
#define MJ_GEMM_VECTOR 1
#if MJ_GEMM_NR % MJ_GEMM_VW != 0
#error "MJ_GEMM_NR must be a multiple of the vector width MJ_GEMM_VW"
#endif
#endif
#if defined(__GNUC__) || defined(__clang__)
#define MJ_GEMM_ALIGNED __attribute__((aligned(64)))
#define MJ_GEMM_INLINE static inline __attribute__((always_inline))
#define MJ_GEMM_UNUSED __attribute__((unused))
#else
#define MJ_GEMM_ALIGNED
#define MJ_GEMM_INLINE static inline
#define MJ_GEMM_UNUSED
#endif

/* Cache blocks: KC (depth of a packed panel; fixes the summation order), MC and NC (rows and
 * columns packed at a time), and which micro-loop is innermost (see mj_gemm_block). */
#if MJ_GEMM_VW == 16
#define MJ_GEMM_KC_DEFAULT 384
#define MJ_GEMM_MC_DEFAULT 168
#define MJ_GEMM_NC_DEFAULT 1024
#define MJ_GEMM_JR_INNER_DEFAULT 1
#elif MJ_GEMM_VW == 8
#define MJ_GEMM_KC_DEFAULT 256
#define MJ_GEMM_MC_DEFAULT 72
#define MJ_GEMM_NC_DEFAULT 2048
#define MJ_GEMM_JR_INNER_DEFAULT 0
#else
#define MJ_GEMM_KC_DEFAULT 256
#define MJ_GEMM_MC_DEFAULT 120
#define MJ_GEMM_NC_DEFAULT 2048
#define MJ_GEMM_JR_INNER_DEFAULT 0
#endif
#ifndef MJ_GEMM_KC
#define MJ_GEMM_KC MJ_GEMM_KC_DEFAULT
#endif
#ifndef MJ_GEMM_MC
#define MJ_GEMM_MC MJ_GEMM_MC_DEFAULT
#endif
#ifndef MJ_GEMM_NC
#define MJ_GEMM_NC MJ_GEMM_NC_DEFAULT
#endif
#ifndef MJ_GEMM_JR_INNER
#define MJ_GEMM_JR_INNER MJ_GEMM_JR_INNER_DEFAULT
#endif

#ifndef MJ_GEMM_PARALLEL_MIN
#define MJ_GEMM_PARALLEL_MIN 2e6 /* M*N*K below which threads do not pay */
#endif
#ifndef MJ_GEMM_TASKS
#define MJ_GEMM_TASKS 2 /* pieces of C per thread */
#endif

#define MJ_GEMM_NV (MJ_GEMM_NR / MJ_GEMM_VW)
#define MJ_GEMM_ALIGN 64

#ifdef MJ_GEMM_VECTOR
typedef float mj_gemm_vf __attribute__((vector_size(MJ_GEMM_VW * sizeof(float))));

/* c[0:MR, 0:NR] (+)= a-panel (kc x MR) . b-panel (kc x NR). acc starts at zero and is added to c
 * only at the end, so every element's sum has the same order whichever path stores it. */
static void mj_gemm_kernel(int kc, const float *restrict a, const float *restrict b,
                           float *restrict c, intptr_t ldc, int add) {
  mj_gemm_vf acc[MJ_GEMM_MR][MJ_GEMM_NV];
  for (int i = 0; i < MJ_GEMM_MR; i++)
    for (int j = 0; j < MJ_GEMM_NV; j++) acc[i][j] = (mj_gemm_vf){0};
  /* C is touched once per kc steps and usually is not in cache: fetch its lines now so that
   * the misses overlap the multiply-adds (3-5% at 1024^3). */
  for (int i = 0; i < MJ_GEMM_MR; i++)
    for (int j = 0; j < MJ_GEMM_NR; j += 64 / (int)sizeof(float)) __builtin_prefetch(c + i * ldc + j, 1, 3);
  for (int k = 0; k < kc; k++) {
    mj_gemm_vf bv[MJ_GEMM_NV];
    for (int j = 0; j < MJ_GEMM_NV; j++) bv[j] = *(const mj_gemm_vf *)(b + j * MJ_GEMM_VW);
    for (int i = 0; i < MJ_GEMM_MR; i++) {
      float ai = a[i];
      for (int j = 0; j < MJ_GEMM_NV; j++) acc[i][j] = ai * bv[j] + acc[i][j];
    }
    a += MJ_GEMM_MR;
    b += MJ_GEMM_NR;
  }
  for (int i = 0; i < MJ_GEMM_MR; i++) {
    float *ci = c + i * ldc;
    for (int j = 0; j < MJ_GEMM_NV; j++) {
      mj_gemm_vf v = acc[i][j];
      if (add) {
        mj_gemm_vf old;
        memcpy(&old, ci + j * MJ_GEMM_VW, sizeof old);
        v = old + v;
      }
      memcpy(ci + j * MJ_GEMM_VW, &v, sizeof v);
    }
  }
}
#else
static void mj_gemm_kernel(int kc, const float *a, const float *b, float *c, intptr_t ldc,
                           int add) {
  float acc[MJ_GEMM_MR][MJ_GEMM_NR];
  for (int i = 0; i < MJ_GEMM_MR; i++)
    for (int j = 0; j < MJ_GEMM_NR; j++) acc[i][j] = 0.0f;
  for (int k = 0; k < kc; k++) {
    for (int i = 0; i < MJ_GEMM_MR; i++)
      for (int j = 0; j < MJ_GEMM_NR; j++) acc[i][j] += a[i] * b[j];
    a += MJ_GEMM_MR;
    b += MJ_GEMM_NR;
  }
  for (int i = 0; i < MJ_GEMM_MR; i++)
    for (int j = 0; j < MJ_GEMM_NR; j++)
      c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
#endif

/* Packing writes W-lane panels (W = MR for A, NR for B): panel p holds lanes [pW, pW + W) for
 * depths [0, kc), depth-major, lanes past n zero. Two source layouts: */

/* ... lane l, depth k at src[k*ld + l]: each depth row is copied for all panels in turn, so the
 * source is read in long sequential runs. */
MJ_GEMM_INLINE void mj_gemm_pack_lanes_contiguous(int W, int n, int kc, const float *src,
                                                  intptr_t ld, float *restrict dst) {
  int full = n / W * W;
  for (int k = 0; k < kc; k++) {
    const float *s = src + (intptr_t)k * ld;
    float *d = dst + (intptr_t)k * W;
    for (int p = 0; p < full; p += W) memcpy(d + (intptr_t)p * kc, s + p, (size_t)W * sizeof(float));
    if (full < n) {
      float *dp = d + (intptr_t)full * kc;
      int l = 0;
      for (; l < n - full; l++) dp[l] = s[full + l];
      for (; l < W; l++) dp[l] = 0.0f;
    }
  }
}

/* ... lane l, depth k at src[l*ld + k] (a transpose): W lanes are read together one cache line
 * (16 floats) at a time, so that their misses overlap. */
MJ_GEMM_INLINE void mj_gemm_pack_depth_contiguous(int W, int n, int kc, const float *src,
                                                  intptr_t ld, float *restrict dst) {
  for (int p = 0; p < n; p += W) {
    const float *s = src + (intptr_t)p * ld;
    float *d = dst + (intptr_t)p * kc;
    int w = n - p < W ? n - p : W, k0 = 0;
    if (w == W) {
      for (; k0 + 16 <= kc; k0 += 16) {
        float t[MJ_GEMM_MR > MJ_GEMM_NR ? MJ_GEMM_MR : MJ_GEMM_NR][16];
        for (int l = 0; l < W; l++) memcpy(t[l], s + (intptr_t)l * ld + k0, sizeof t[l]);
        for (int kk = 0; kk < 16; kk++)
          for (int l = 0; l < W; l++) d[(intptr_t)(k0 + kk) * W + l] = t[l][kk];
      }
    }
    for (int k = k0; k < kc; k++) {
      int l = 0;
      for (; l < w; l++) d[(intptr_t)k * W + l] = s[(intptr_t)l * ld + k];
      for (; l < W; l++) d[(intptr_t)k * W + l] = 0.0f;
    }
  }
}

/* Rows [0, mc) x depth [0, kc) of opA into MR-row panels. */
static void mj_gemm_pack_a(int transA, int mc, int kc, const float *A, intptr_t lda,
                           float *restrict dst) {
  if (transA) mj_gemm_pack_lanes_contiguous(MJ_GEMM_MR, mc, kc, A, lda, dst);
  else mj_gemm_pack_depth_contiguous(MJ_GEMM_MR, mc, kc, A, lda, dst);
}

/* Depth [0, kc) x columns [0, nc) of opB into NR-column panels. */
static void mj_gemm_pack_b(int transB, int kc, int nc, const float *B, intptr_t ldb,
                           float *restrict dst) {
  if (transB) mj_gemm_pack_depth_contiguous(MJ_GEMM_NR, nc, kc, B, ldb, dst);
  else mj_gemm_pack_lanes_contiguous(MJ_GEMM_NR, nc, kc, B, ldb, dst);
}

/* One micro-tile; edge tiles go through a full-size scratch tile so that their arithmetic is the
 * full tile's. */
static void mj_gemm_tile(int kc, const float *a, const float *b, float *c, intptr_t ldc, int mr,
                         int nr, int add) {
  if (mr == MJ_GEMM_MR && nr == MJ_GEMM_NR) {
    mj_gemm_kernel(kc, a, b, c, ldc, add);
    return;
  }
  float tile[MJ_GEMM_MR * MJ_GEMM_NR] MJ_GEMM_ALIGNED;
  mj_gemm_kernel(kc, a, b, tile, MJ_GEMM_NR, 0);
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float v = tile[i * MJ_GEMM_NR + j];
      c[i * ldc + j] = add ? c[i * ldc + j] + v : v;
    }
}

/* Depth of each K block: K in ceil(K / KC) near-equal blocks. A function of K alone, so it fixes
 * every element's summation order. */
static int mj_gemm_kc(int K) {
  int blocks = (K + MJ_GEMM_KC - 1) / MJ_GEMM_KC;
  return (K + blocks - 1) / blocks;
}

static int mj_gemm_min(int a, int b) { return a < b ? a : b; }
static size_t mj_gemm_round(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* GotoBLAS's loop nest for one piece of C on the calling thread (A, B and C point at the
 * piece). apack holds mcMax x KC floats, bpack KC x ncMax. */
static void mj_gemm_block(int transA, int transB, int M, int N, int K, const float *A,
                          intptr_t lda, const float *B, intptr_t ldb, float *C, intptr_t ldc,
                          int accumulate, float *apack, int mcMax, float *bpack, int ncMax) {
  int kcb = mj_gemm_kc(K);
  for (int jc = 0; jc < N; jc += ncMax) {
    int nc = mj_gemm_min(N - jc, ncMax);
    for (int pc = 0; pc < K; pc += kcb) {
      int kc = mj_gemm_min(K - pc, kcb);
      int add = accumulate || pc > 0;
      const float *Bp = transB ? B + (intptr_t)jc * ldb + pc : B + (intptr_t)pc * ldb + jc;
      mj_gemm_pack_b(transB, kc, nc, Bp, ldb, bpack);
      for (int ic = 0; ic < M; ic += mcMax) {
        int mc = mj_gemm_min(M - ic, mcMax);
        const float *Ap = transA ? A + (intptr_t)pc * lda + ic : A + (intptr_t)ic * lda + pc;
        mj_gemm_pack_a(transA, mc, kc, Ap, lda, apack);
        float *Cb = C + (intptr_t)ic * ldc + jc;
        /* Innermost jr: the A micro-panel stays in L1 while B streams from L2 (so KC x NC must
         * fit L2); innermost ir (BLIS's order): the B micro-panel stays in L1, A streams. */
#if MJ_GEMM_JR_INNER
        for (int ir = 0; ir < mc; ir += MJ_GEMM_MR) {
          int mr = mj_gemm_min(mc - ir, MJ_GEMM_MR);
          for (int jr = 0; jr < nc; jr += MJ_GEMM_NR) {
            int nr = mj_gemm_min(nc - jr, MJ_GEMM_NR);
#else
        for (int jr = 0; jr < nc; jr += MJ_GEMM_NR) {
          int nr = mj_gemm_min(nc - jr, MJ_GEMM_NR);
          for (int ir = 0; ir < mc; ir += MJ_GEMM_MR) {
            int mr = mj_gemm_min(mc - ir, MJ_GEMM_MR);
#endif
            mj_gemm_tile(kc, apack + (intptr_t)ir * kc, bpack + (intptr_t)jr * kc,
                         Cb + (intptr_t)ir * ldc + jr, ldc, mr, nr, add);
          }
        }
      }
    }
  }
}

/* Aligned scratch from malloc (the pointer malloc returned is kept just before the block). */
static float *mj_gemm_alloc(size_t floats) {
  unsigned char *raw = (unsigned char *)malloc(floats * sizeof(float) + MJ_GEMM_ALIGN + sizeof(void *));
  if (!raw) return 0;
  uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + MJ_GEMM_ALIGN - 1) & ~(uintptr_t)(MJ_GEMM_ALIGN - 1);
  ((void **)p)[-1] = raw;
  return (float *)p;
}

static void mj_gemm_free(float *p) {
  if (p) free(((void **)p)[-1]);
}

/* One piece of C on the calling thread, with its own packing buffers. */
static void mj_gemm_piece(int transA, int transB, int M, int N, int K, const float *A,
                          intptr_t lda, const float *B, intptr_t ldb, float *C, intptr_t ldc,
                          int accumulate) {
  int kcb = mj_gemm_kc(K);
  int mcMax = (int)mj_gemm_round(mj_gemm_min(M, MJ_GEMM_MC), MJ_GEMM_MR);
  int ncMax = (int)mj_gemm_round(mj_gemm_min(N, MJ_GEMM_NC), MJ_GEMM_NR);
  float *apack = mj_gemm_alloc((size_t)mcMax * kcb);
  float *bpack = mj_gemm_alloc((size_t)ncMax * kcb);
  if (apack && bpack) {
    mj_gemm_block(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate, apack, mcMax,
                  bpack, ncMax);
  } else {
    /* Out of memory: one panel each on the stack. MC and NC change no sum (only KC does), so
     * the result is bit-identical, only slower. */
    float a1[MJ_GEMM_MR * MJ_GEMM_KC] MJ_GEMM_ALIGNED;
    float b1[MJ_GEMM_NR * MJ_GEMM_KC] MJ_GEMM_ALIGNED;
    mj_gemm_block(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate, a1, MJ_GEMM_MR,
                  b1, MJ_GEMM_NR);
  }
  mj_gemm_free(apack);
  mj_gemm_free(bpack);
}

/* C (+)= opA . opB, row-major: opA[m,k] = transA ? A[k*lda + m] : A[m*lda + k], opB[k,n] =
 * transB ? B[n*ldb + k] : B[k*ldb + n]; accumulate 0 overwrites C, 1 adds to it. Threads split
 * M and N, never K, so the bits do not depend on the thread count; inside an active parallel
 * region it runs on the calling thread alone. */
MJ_GEMM_UNUSED static void mj_sgemm(int transA, int transB, int M, int N, int K, const float *A,
                                    int lda, const float *B, int ldb, float *C, int ldc,
                                    int accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int m = 0; m < M; m++) memset(C + (intptr_t)m * ldc, 0, (size_t)N * sizeof(float));
    return;
  }
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && (double)M * N * K >= MJ_GEMM_PARALLEL_MIN) threads = omp_get_max_threads();
#endif
  if (threads <= 1) {
    mj_gemm_piece(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    return;
  }
  /* MJ_GEMM_TASKS pieces per thread, handed out dynamically (a thread that loses its core to
   * another process leaves its remaining pieces to the others), in the tm x tn grid that costs
   * least per piece: padded tiles plus packing (about 2 VW multiply-adds per packed element; each
   * piece packs its B columns once and its A rows once per NC columns). */
  int pieces = threads * MJ_GEMM_TASKS, tm = 1, tn = pieces;
  double best = -1;
  for (int t = 1; t <= pieces; t++) {
    if (pieces % t) continue;
    int u = pieces / t;
    double mt = (double)mj_gemm_round((M + t - 1) / t, MJ_GEMM_MR);
    double nt = (double)mj_gemm_round((N + u - 1) / u, MJ_GEMM_NR);
    double cost = mt * nt + 2.0 * MJ_GEMM_VW * (nt + mt * (double)((nt + MJ_GEMM_NC - 1) / MJ_GEMM_NC));
    if (best < 0 || cost < best) best = cost, tm = t, tn = u;
  }
  int mStep = (int)mj_gemm_round((M + tm - 1) / tm, MJ_GEMM_MR);
  int nStep = (int)mj_gemm_round((N + tn - 1) / tn, MJ_GEMM_NR);
  intptr_t la = lda, lb = ldb, lc = ldc;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
#endif
  for (int p = 0; p < tm * tn; p++) {
    int m0 = p / tn * mStep, n0 = p % tn * nStep;
    if (m0 >= M || n0 >= N) continue;
    const float *Ap = transA ? A + m0 : A + m0 * la;
    const float *Bp = transB ? B + n0 * lb : B + n0;
    mj_gemm_piece(transA, transB, mj_gemm_min(M - m0, mStep), mj_gemm_min(N - n0, nStep), K, Ap,
                  la, Bp, lb, C + m0 * lc + n0, lc, accumulate);
  }
}
`;
