/**
 * Elementary functions for generated C, branch-free so that loops over them vectorize: libm's
 * expf and erff are calls (an elementwise GELU ran 6x slower through erff, and the attention
 * softmax would cost more than its multiply-adds). Both are pure functions of their argument, so
 * results are the same bits every run. Accuracy, checked over every float against float64
 * (tests/native/math_c_test.ts): exp within 1.1 ulp for normal results (subnormal results come
 * out too), erf within 1 ulp. The coefficients are minimax fits made for moejit
 * (tools: a weighted least-squares fit against mpmath's exact values, refitted until the error
 * levels out); IEEE special values behave as in libm (NaN stays NaN, exp(-inf) = 0, exp(inf) =
 * inf, erf(±inf) = ±1).
 *
 * @example A step file's helper that applies GELU to n floats:
 * ```ts
 * const source = MATH_C + `
 * void gelu(const float* x, float* y, int n) {
 *   for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + mj_erff(x[i] * 0.70710678f));
 * }`;
 * ```
 */
export const MATH_C: string = String.raw`
#ifndef MJ_MATH_C
#define MJ_MATH_C
#include <stdint.h>
#include <string.h>

static inline float mj_math_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t mj_math_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* exp: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, times 2^n applied as two
 * powers of two so that results down to the smallest subnormal come out. */
static inline float mj_expf(float x) {
  const float xc = x > 88.7228f ? 88.7228f : (x < -103.98f ? -103.98f : x);
  const float t = xc * 1.44269504f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  const float n = t - 12582912.0f;
  const int32_t ni = (int32_t)mj_math_bits(t) - 0x4B400000;
  float r = xc - n * 6.93145752e-1f;
  r = r - n * 1.42860677e-6f;
  float p = 1.383679474e-03f;
  p = p * r + 8.374818025e-03f;
  p = p * r + 4.166822651e-02f;
  p = p * r + 1.666642015e-01f;
  p = p * r + 4.999999208e-01f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t h = ni >> 1;
  const float y = p * mj_math_float((uint32_t)(h + 127) << 23) * mj_math_float((uint32_t)(ni - h + 127) << 23);
  const float big = x > 88.7228f ? mj_math_float(0x7f800000u) : y;
  return x != x ? x : big;
}
/* erf: |x| < 1: x + x P(x^2) (degree 6); above: 1 - exp(Q(|x| - 1)) with Q (degree 6) fitting
 * log erfc on [1, 4] (erf is 1 in f32 from 3.92 on). */
static inline float mj_erff(float x) {
  const float a = x < 0.0f ? -x : x;
  const float t = x * x;
  float s = 7.853847694e-05f;
  s = s * t - 8.010192073e-04f;
  s = s * t + 5.188327867e-03f;
  s = s * t - 2.685381229e-02f;
  s = s * t + 1.128358517e-01f;
  s = s * t - 3.761262583e-01f;
  s = s * t + 1.283791664e-01f;
  s = s * x + x;
  const float u = (a > 4.0f ? 4.0f : a) - 1.0f;
  float q = 1.855796756e-04f;
  q = q * u - 1.826187285e-03f;
  q = q * u + 9.890929506e-03f;
  q = q * u - 4.150071515e-02f;
  q = q * u - 8.431183275e-01f;
  q = q * u - 2.638966817e+00f;
  q = q * u - 1.849605516e+00f;
  const float l = 1.0f - mj_expf(q);
  const float y = a < 1.0f ? s : (x < 0.0f ? -l : l);
  return x != x ? x : y;
}
#endif
`;
