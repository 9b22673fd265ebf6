/**
 * A compiled step as one C translation unit: the prelude, the matrix and attention routines,
 * each distinct kernel function once (named by a hash of its text, so equal kernels share one
 * definition), and `mj_step(B, E)`, which calls the launches in order with the step's buffer
 * table B (one pointer per slot) and error buffer E.
 */
import { contentHash } from "../../ir/node.ts";
import type { StepProgram } from "../../passes/step_program.ts";
import { cStorageType } from "../../../codegen/c/emit.ts";
import { PRELUDE_C } from "../../../codegen/c/prelude.ts";
import { BLAS_C } from "../../../codegen/c/blas.ts";
import { GEMM_C } from "../../../codegen/c/gemm.ts";
import { ATTENTION_C } from "../../../codegen/c/attention.ts";

/**
 * Outputs are fresh host arrays every call, so their pages are first touched by the kernels that
 * write them: a 32 MiB matmul result takes 8,192 page faults, which cost about a third of an
 * sgemm's time (numpy avoids it the same way, by advising huge pages on large arrays). Where the
 * kernel uses transparent huge pages on advice (Linux's default "madvise"), large outputs are
 * advised before they are written; the advice changes how memory is backed, never its contents.
 */
const HUGE_PAGES_C = `#if defined(__linux__)
#include <sys/mman.h>
#endif
static void mj_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t page = 4096, start = ((uintptr_t)p + page - 1) & ~(page - 1);
  const uintptr_t end = ((uintptr_t)p + bytes) & ~(page - 1);
  if (end > start) madvise((void*)start, end - start, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}
`;

/** Below this size a buffer gains nothing from huge pages (one 2 MiB page at most). */
const HUGE_PAGE_MIN_BYTES = 4 << 20;

/**
 * Advice for the large outputs (fresh every call) and, once per physical buffer, the large
 * temporaries: those are allocated once and reused, but a step over tens of MiB of them misses
 * the TLB less on 2 MiB pages. Advice given before a buffer's first write backs it with huge
 * pages from the start; repeated advice is a cheap no-op.
 */
function hugePageAdvice(prog: StepProgram): string {
  const advisedTemps = new Set<number>();
  return prog.slots.map((s, i) => {
    if (s.kind === "output" && s.bytes >= HUGE_PAGE_MIN_BYTES) {
      return `  mj_huge_pages(B[${i}], (size_t)${s.bytes}ULL);\n`;
    }
    const bytes = prog.temps[s.index];
    if (s.kind !== "temp" || advisedTemps.has(s.index) || bytes < HUGE_PAGE_MIN_BYTES) return "";
    advisedTemps.add(s.index);
    return `  mj_huge_pages(B[${i}], (size_t)${bytes}ULL);\n`;
  }).join("");
}

/**
 * The C source of a step program compiled for the C target. With `profile`, `mj_step` takes a
 * third argument, T (one double per launch), and adds each launch's wall time in ms to it.
 */
export function stepSource(prog: StepProgram, profile = false): string {
  if (prog.target !== "c") throw new Error(`internal: a ${prog.target} step has no C source`);
  const defs = new Map<string, string>();
  const calls: string[] = [];
  for (const [li, l] of prog.launches.entries()) {
    const name = `k_${contentHash(l.program.code)}`;
    if (!defs.has(name)) {
      defs.set(
        name,
        `/* ${l.program.label.replaceAll("*/", "* /")} */\n` +
          l.program.code.replace("KERNEL_NAME", name),
      );
    }
    if (l.work === 0) continue;
    let slot = 0;
    const args = l.program.bindings.map((b) => {
      if (b.errors) return `E + ${(l.errorOffset ?? 0) / 4}`;
      const s = l.slots[slot++];
      return `(${b.write ? "" : "const "}${cStorageType(b.type)}*)B[${s}]`;
    });
    const call = `${name}(${args.join(", ")});`;
    calls.push(
      profile
        ? `  { const double t0 = mj_now_ms(); ${call} T[${li}] += mj_now_ms() - t0; }`
        : `  ${call}`,
    );
  }
  return [
    PRELUDE_C,
    GEMM_C,
    BLAS_C,
    ATTENTION_C,
    ...defs.values(),
    profile
      ? `#include <time.h>
static double* T;
static inline double mj_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}
`
      : "",
    HUGE_PAGES_C,
    `static void mj_step_body(void** B, uint32_t* E) {\n  (void)B;\n  (void)E;\n${
      hugePageAdvice(prog)
    }${calls.join("\n")}\n}\n`,
    `void mj_step(void** B, uint32_t* E${profile ? ", double* times" : ""}) {
${profile ? "  T = times;\n" : ""}  if (mj_rt_run) mj_rt_run(mj_step_body, B, E);
  else mj_step_body(B, E);
}
`,
  ].join("\n");
}
