/**
 * Matrix products for the C target: the system BLAS's cblas_sgemm when `mj_init` finds one
 * (OpenBLAS: loaded with dlopen, so nothing links against it), else moejit's own sgemm. A call
 * made inside a parallel region (e.g. one expert per thread) always uses our own, single-threaded
 * sgemm, so no BLAS is ever entered from two threads at once. Either way each output element's
 * sum over K runs in one fixed order, so results repeat bit for bit.
 */
export const BLAS_C =
  `typedef void (*mj_cblas_sgemm_fn)(int, int, int, int, int, int, float, const float*, int,
                                  const float*, int, float, float*, int);
static mj_cblas_sgemm_fn mj_cblas_sgemm = 0;

typedef void (*mj_body_fn)(void**, uint32_t*);
typedef void (*mj_rt_run_fn)(mj_body_fn, void**, uint32_t*);
static mj_rt_run_fn mj_rt_run = 0;

/* Loads cblas_sgemm from the shared library at \`blas\` (empty: our own sgemm) and the worker
   thread's runner from \`rt\` (empty: steps run on the calling thread); bit 0: BLAS loaded,
   bit 1: runner loaded. */
int mj_init(const char* blas, const char* rt) {
  mj_cblas_sgemm = 0;
  if (blas && blas[0]) {
    void* h = dlopen(blas, RTLD_NOW | RTLD_LOCAL);
    if (h) mj_cblas_sgemm = (mj_cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
  }
  mj_rt_run = 0;
  if (rt && rt[0]) {
    void* h = dlopen(rt, RTLD_NOW | RTLD_LOCAL);
    if (h) mj_rt_run = (mj_rt_run_fn)dlsym(h, "mj_rt_run");
  }
  return (mj_cblas_sgemm != 0) | ((mj_rt_run != 0) << 1);
}

/* C[M,N] (+)= op(A)[M,K] · op(B)[K,N], row-major; op transposes a stored [K,M] / [N,K]. */
static void mj_gemm(int ta, int tb, int M, int N, int K, const float* A, int lda, const float* B,
                    int ldb, float* C, int ldc, int accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate) for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * 4);
    return;
  }
  if (mj_cblas_sgemm && !mj_in_parallel()) {
    mj_cblas_sgemm(101, ta ? 112 : 111, tb ? 112 : 111, M, N, K, 1.0f, A, lda, B, ldb,
                   accumulate ? 1.0f : 0.0f, C, ldc);
    return;
  }
  mj_sgemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}
`;
