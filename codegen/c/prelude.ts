/**
 * The start of every generated C step file: headers, and the helpers kernels call. Each helper
 * has the interpreter's semantics (src/interp/kernels.ts), which C leaves undefined or
 * different: integer division by zero and INT_MIN / -1, saturating float-to-int casts, NaN in
 * max/min and pow, and the sign of zero. The file is compiled without -ffast-math, so NaN and
 * infinities behave as IEEE says (unlike WGSL, C compilers may not assume finite math).
 */
import { MATH_C } from "./math.ts";

export const PRELUDE_C = `#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <dlfcn.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MJ_PAR_MIN 16384

static inline float mj_as_f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t mj_as_u32(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static inline int mj_isnan(float x) { return (mj_as_u32(x) & 0x7fffffffu) > 0x7f800000u; }

${MATH_C}
/* NaN propagates; equal operands differ at most in the sign of zero: +0 is the larger. */
static inline float mj_fmax(float a, float b) {
  if (mj_isnan(a) || mj_isnan(b)) return a + b;
  if (a == b) return mj_as_f32(mj_as_u32(a) & mj_as_u32(b));
  return a > b ? a : b;
}
static inline float mj_fmin(float a, float b) {
  if (mj_isnan(a) || mj_isnan(b)) return a + b;
  if (a == b) return mj_as_f32(mj_as_u32(a) | mj_as_u32(b));
  return a < b ? a : b;
}
/* Reductions: NaN propagates; on ties the earlier element stays (which decides -0 vs +0). */
static inline float mj_rmax(float acc, float v) {
  if (mj_isnan(acc) || mj_isnan(v)) return acc + v;
  return v > acc ? v : acc;
}
static inline float mj_rmin(float acc, float v) {
  if (mj_isnan(acc) || mj_isnan(v)) return acc + v;
  return v < acc ? v : acc;
}
/* select(c, a, b) with both arms evaluated (see the C emitter's select). */
static inline float mj_sel_f32(int c, float a, float b) { return c ? a : b; }
static inline int32_t mj_sel_i32(int c, int32_t a, int32_t b) { return c ? a : b; }
static inline uint32_t mj_sel_u32(int c, uint32_t a, uint32_t b) { return c ? a : b; }
static inline int mj_sel_bool(int c, int a, int b) { return c ? a : b; }
static inline int32_t mj_imax(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t mj_imin(int32_t a, int32_t b) { return a < b ? a : b; }
static inline uint32_t mj_umax(uint32_t a, uint32_t b) { return a > b ? a : b; }
static inline uint32_t mj_umin(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* JavaScript's Math.pow: x^NaN = NaN, (±1)^±inf = NaN, everything else as C's powf. */
static inline float mj_pow(float a, float b) {
  if (mj_isnan(b)) return b;
  if (b == 0.0f) return 1.0f;
  if (mj_isnan(a)) return a;
  if (isinf(b) && fabsf(a) == 1.0f) return mj_as_f32(0x7fc00000u);
  return powf(a, b);
}

static inline int32_t mj_idiv(int32_t a, int32_t b) {
  if (b == 0 || (a == INT32_MIN && b == -1)) return a;
  return a / b;
}
static inline uint32_t mj_udiv(uint32_t a, uint32_t b) { return b == 0 ? a : a / b; }
static inline int32_t mj_imod(int32_t a, int32_t b) { return (b == 0 || b == -1) ? 0 : a % b; }
static inline uint32_t mj_umod(uint32_t a, uint32_t b) { return b == 0 ? 0 : a % b; }
static inline float mj_fmod(float a, float b) { return b == 0.0f ? 0.0f : fmodf(a, b); }
static inline int32_t mj_iabs(int32_t a) { return a < 0 ? (int32_t)(0u - (uint32_t)a) : a; }

static inline int32_t mj_f2i(float x) {
  if (mj_isnan(x)) return 0;
  if (x >= 2147483648.0f) return INT32_MAX;
  if (x <= -2147483648.0f) return INT32_MIN;
  return (int32_t)x;
}
static inline uint32_t mj_f2u(float x) {
  if (mj_isnan(x) || x <= 0.0f) return 0u;
  if (x >= 4294967296.0f) return UINT32_MAX;
  return (uint32_t)x;
}

static inline uint32_t mj_rotl(uint32_t x, uint32_t r) { return (x << r) | (x >> (32u - r)); }
/* Threefry-2x32, 20 rounds; identical to src/rng.ts. */
static inline uint32_t mj_threefry(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1) {
  static const uint32_t rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1bd11bdau};
  uint32_t x0 = c0 + ks[0], x1 = c1 + ks[1];
  for (int block = 0; block < 5; block++) {
    for (int r = 0; r < 4; r++) {
      x0 += x1;
      x1 = mj_rotl(x1, rot[block & 1][r]);
      x1 ^= x0;
    }
    x0 += ks[(block + 1) % 3];
    x1 += ks[(block + 2) % 3] + (uint32_t)block + 1u;
  }
  return x0;
}

/* An index that must lie in [0, n): a failure is recorded in the launch's error region (word 2c
   flags check c, word 2c + 1 keeps the complement of the smallest bad index as u32). */
static int32_t mj_chk(int32_t i, int32_t n, uint32_t c, uint32_t* err) {
  if (i >= 0 && i < n) return i;
  __atomic_fetch_or(&err[2 * c], 1u, __ATOMIC_RELAXED);
  uint32_t want = ~(uint32_t)i, cur = __atomic_load_n(&err[2 * c + 1], __ATOMIC_RELAXED);
  while (want > cur &&
         !__atomic_compare_exchange_n(&err[2 * c + 1], &cur, want, 0, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
  return 0;
}

/* Order keys of floats (every NaN the largest), and back. */
static inline uint32_t mj_okey(float v) {
  uint32_t b = mj_as_u32(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0xffffffffu;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
static inline float mj_oval(uint32_t k) {
  return mj_as_f32((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* The top-k order: NaN first (the largest), larger values first, then the lower index. */
static inline int mj_before_f32(float v, int i, float w, int j) {
  const int nv = mj_isnan(v), nw = mj_isnan(w);
  if (nv != nw) return nv;
  if (!nv && v != w) return v > w;
  return i < j;
}
static inline int mj_before_i32(int32_t v, int i, int32_t w, int j) {
  return v != w ? v > w : i < j;
}
static inline int mj_before_u32(uint32_t v, int i, uint32_t w, int j) {
  return v != w ? v > w : i < j;
}

static inline int mj_in_parallel(void) {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return 0;
#endif
}

static inline int mj_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
`;
