/**
 * Straightforward C attention kernels (one query row per thread, two passes over the keys) with
 * the semantics of the interpreter's attention primitives. They stand in until the tuned
 * kernels are wired in.
 */
export const ATTENTION_REFERENCE_C = `static int mj_attn_hi(int i, int S, int Sk, int causal) {
  return causal ? i + (Sk - S) + 1 : Sk;
}

static void mj_attention_fwd(int batch, int S, int Sk, int Dh, int causal, float scale,
                             const float* q, const float* k, const float* v, float* out) {
  #pragma omp parallel for schedule(static)
  for (long bi = 0; bi < (long)batch * S; bi++) {
    const long b = bi / S; const int i = (int)(bi % S);
    const int hi = mj_attn_hi(i, S, Sk, causal);
    const float* qi = q + bi * Dh;
    float* o = out + bi * (Dh + 1);
    float m = -INFINITY;
    for (int j = 0; j < hi; j++) {
      const float* kj = k + (b * Sk + j) * Dh;
      float s = 0.0f;
      for (int d = 0; d < Dh; d++) s += qi[d] * kj[d];
      s *= scale;
      if (s > m) m = s;
    }
    float sum = 0.0f;
    for (int d = 0; d < Dh; d++) o[d] = 0.0f;
    for (int j = 0; j < hi; j++) {
      const float* kj = k + (b * Sk + j) * Dh;
      float s = 0.0f;
      for (int d = 0; d < Dh; d++) s += qi[d] * kj[d];
      const float p = expf(s * scale - m);
      sum += p;
      const float* vj = v + (b * Sk + j) * Dh;
      for (int d = 0; d < Dh; d++) o[d] += p * vj[d];
    }
    for (int d = 0; d < Dh; d++) o[d] /= sum;
    o[Dh] = m + logf(sum);
  }
}

static void mj_attention_bwd_q(int batch, int S, int Sk, int Dh, int causal, float scale,
                               const float* q, const float* k, const float* v, const float* dO,
                               const float* lse, const float* delta, float* dq) {
  #pragma omp parallel for schedule(static)
  for (long bi = 0; bi < (long)batch * S; bi++) {
    const long b = bi / S; const int i = (int)(bi % S);
    const int hi = mj_attn_hi(i, S, Sk, causal);
    const float* qi = q + bi * Dh; const float* gi = dO + bi * Dh;
    float* o = dq + bi * Dh;
    for (int d = 0; d < Dh; d++) o[d] = 0.0f;
    for (int j = 0; j < hi; j++) {
      const float* kj = k + (b * Sk + j) * Dh; const float* vj = v + (b * Sk + j) * Dh;
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < Dh; d++) { s += qi[d] * kj[d]; dp += gi[d] * vj[d]; }
      const float p = expf(s * scale - lse[bi]);
      const float ds = p * (dp - delta[bi]) * scale;
      for (int d = 0; d < Dh; d++) o[d] += ds * kj[d];
    }
  }
}

static void mj_attention_bwd_kv(int batch, int S, int Sk, int Dh, int causal, float scale,
                                const float* q, const float* k, const float* v, const float* dO,
                                const float* lse, const float* delta, float* dkv) {
  #pragma omp parallel for schedule(static)
  for (long bj = 0; bj < (long)batch * Sk; bj++) {
    const long b = bj / Sk; const int j = (int)(bj % Sk);
    const float* kj = k + bj * Dh; const float* vj = v + bj * Dh;
    float* dk = dkv + bj * 2 * Dh; float* dv = dk + Dh;
    for (int d = 0; d < 2 * Dh; d++) dk[d] = 0.0f;
    for (int i = 0; i < S; i++) {
      if (j >= mj_attn_hi(i, S, Sk, causal)) continue;
      const long bi = b * S + i;
      const float* qi = q + bi * Dh; const float* gi = dO + bi * Dh;
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < Dh; d++) { s += qi[d] * kj[d]; dp += gi[d] * vj[d]; }
      const float p = expf(s * scale - lse[bi]);
      const float ds = p * (dp - delta[bi]) * scale;
      for (int d = 0; d < Dh; d++) { dk[d] += ds * qi[d]; dv[d] += p * gi[d]; }
    }
  }
}
`;
