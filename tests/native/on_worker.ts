/**
 * For tests that call OpenMP-parallel C directly: `mj_on_worker(fn, arg)` runs fn(arg) on one
 * long-lived native thread, the backend's worker thread (src/runtime/native/worker_thread.ts)
 * compiled into the test's library. Called from Deno's test worker threads instead, each of them
 * got an OpenMP thread pool of its own, and a full `deno test --parallel` run then aborted at
 * process exit with glibc's "double free or corruption" after every test had passed.
 */
import { WORKER_THREAD_C } from "../../src/runtime/native/worker_thread.ts";

/** C source: the worker thread (its entry point kept static to this library) and mj_on_worker. */
export const ON_WORKER_C: string =
  WORKER_THREAD_C.replace("void mj_rt_run(", "static void mj_rt_run(") +
  `
typedef void (*mj_test_fn)(void*);
static void mj_test_trampoline(void** B, uint32_t* E) {
  (void)E;
  ((mj_test_fn)B[0])(B[1]);
}
/* Runs fn(arg) on the worker thread and returns when it is done. */
static void mj_on_worker(mj_test_fn fn, void* arg) {
  void* B[2] = {(void*)fn, arg};
  mj_rt_run(mj_test_trampoline, B, 0);
}
`;
