/**
 * One long-lived native thread that runs every compiled step of the process. Steps are called
 * from JavaScript threads that come and go (Deno's FFI pool, test workers); OpenMP keeps a team
 * of threads per thread that starts parallel work, and OpenBLAS keeps buffers per calling thread
 * that it frees when the thread exits — with OpenBLAS 0.3.21 that corrupted the heap at exit
 * (seen with Mesa's lavapipe in the same process). So a step's `mj_step` only hands its body to
 * this thread and waits: the parallel runtimes only ever see one caller, which never exits.
 */
export const WORKER_THREAD_C = `#include <pthread.h>
#include <stdint.h>

typedef void (*mj_body_fn)(void**, uint32_t*);

static pthread_mutex_t mj_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mj_call = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mj_posted = PTHREAD_COND_INITIALIZER;
static pthread_cond_t mj_finished = PTHREAD_COND_INITIALIZER;
static int mj_started = 0;
static mj_body_fn mj_job = 0;
static void** mj_job_b = 0;
static uint32_t* mj_job_e = 0;
static unsigned long mj_posted_n = 0, mj_done_n = 0;

static void* mj_worker(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mj_lock);
  for (;;) {
    while (mj_done_n == mj_posted_n) pthread_cond_wait(&mj_posted, &mj_lock);
    mj_body_fn fn = mj_job;
    void** b = mj_job_b;
    uint32_t* e = mj_job_e;
    pthread_mutex_unlock(&mj_lock);
    fn(b, e);
    pthread_mutex_lock(&mj_lock);
    mj_done_n++;
    pthread_cond_broadcast(&mj_finished);
  }
  return 0;
}

/* Runs body(B, E) on the worker thread and returns when it is done; calls are serialized. */
void mj_rt_run(mj_body_fn body, void** B, uint32_t* E) {
  pthread_mutex_lock(&mj_call);
  pthread_mutex_lock(&mj_lock);
  if (!mj_started) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Deep enough for the kernels' stack arrays (top-k lists, per-thread scratch). */
    pthread_attr_setstacksize(&attr, 64u << 20);
    if (pthread_create(&t, &attr, mj_worker, 0) != 0) {
      pthread_mutex_unlock(&mj_lock);
      pthread_mutex_unlock(&mj_call);
      body(B, E);
      return;
    }
    mj_started = 1;
  }
  mj_job = body;
  mj_job_b = B;
  mj_job_e = E;
  const unsigned long ticket = ++mj_posted_n;
  pthread_cond_signal(&mj_posted);
  while (mj_done_n < ticket) pthread_cond_wait(&mj_finished, &mj_lock);
  pthread_mutex_unlock(&mj_lock);
  pthread_mutex_unlock(&mj_call);
}
`;
