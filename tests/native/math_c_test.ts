/**
 * The generated C's elementary functions (codegen/c/math.ts), compiled with the system C
 * compiler and called through Deno FFI: mj_expf and mj_erff against C's double-precision exp and
 * erf over every float in a stride (about 44 million arguments each, all exponents), within the
 * ulp bounds the module states; IEEE special values; and, with GCC, that a loop over them
 * vectorizes under the backend's flags (the reason they exist).
 */
import assert from "node:assert/strict";
import { BASE_FLAGS } from "../../src/runtime/native/compiler.ts";
import { MATH_C } from "../../codegen/c/math.ts";

const FLAGS = [...BASE_FLAGS, "-march=native"];

/**
 * Largest error in ulps of the float nearest the exact value, over every `stride`-th float
 * with |x| below `limit` (exp: normal results only; erf: results at least 1e-30 in size).
 */
const DRIVER = String.raw`
#include <math.h>
static double mj_ulp(float v) { v = fabsf(v); return (double)nextafterf(v, INFINITY) - v; }
double test_max_ulp(int which, unsigned stride, float limit) {
  double worst = 0;
  for (uint64_t u = 0; u <= 0xffffffffu; u += stride) {
    float x = mj_math_float((uint32_t)u);
    if (!(fabsf(x) < limit)) continue;
    double exact = which == 0 ? exp((double)x) : erf((double)x);
    double size = fabs(exact);
    if (which == 0 ? (size < 1.17549435e-38 || size > 3.4e38) : size < 1e-30) continue;
    float got = which == 0 ? mj_expf(x) : mj_erff(x);
    double e = fabs((double)got - exact) / mj_ulp((float)exact);
    if (e > worst) worst = e;
  }
  return worst;
}
void test_apply(int which, const float* x, float* y, int n) {
  for (int i = 0; i < n; i++) y[i] = which == 0 ? mj_expf(x[i]) : mj_erff(x[i]);
}
void test_gelu(const float* restrict x, float* restrict y, int n) {
  for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + mj_erff(x[i] * 0.70710678f));
}
`;

const SYMBOLS = {
  test_max_ulp: { parameters: ["i32", "u32", "f32"], result: "f64" },
  test_apply: { parameters: ["i32", "buffer", "buffer", "i32"], result: "void" },
} as const;

async function build(): Promise<{ lib: string; log: string } | { skip: string }> {
  const dir = await Deno.makeTempDir({ prefix: "mj-math-" });
  const src = `${dir}/math.c`, lib = `${dir}/math.so`;
  await Deno.writeTextFile(src, MATH_C + DRIVER);
  try {
    const r = await new Deno.Command("cc", {
      args: [...FLAGS, "-fopt-info-vec-optimized", "-o", lib, src, "-lm"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout);
    if (!r.success) {
      // clang has no -fopt-info: build without it.
      const again = await new Deno.Command("cc", {
        args: [...FLAGS, "-o", lib, src, "-lm"],
        stderr: "piped",
      }).output();
      if (!again.success) return { skip: `cc failed: ${new TextDecoder().decode(again.stderr)}` };
      return { lib, log: "" };
    }
    return { lib, log };
  } catch (e) {
    return { skip: `no C compiler (cc): ${(e as Error).message}` };
  }
}

const built = await build();
const skip = "skip" in built ? built.skip : null;
if (skip) console.log(`math_c_test: skipped (${skip})`);

Deno.test({ name: "C math: exp within 1.1 ulp, erf within 1 ulp", ignore: !!skip }, () => {
  const lib = Deno.dlopen((built as { lib: string }).lib, SYMBOLS);
  try {
    const exp = lib.symbols.test_max_ulp(0, 97, 110);
    const erf = lib.symbols.test_max_ulp(1, 97, 10);
    assert.ok(exp <= 1.1, `mj_expf: ${exp.toFixed(3)} ulp`);
    assert.ok(erf <= 1.0, `mj_erff: ${erf.toFixed(3)} ulp`);
  } finally {
    lib.close();
  }
});

Deno.test({ name: "C math: special values", ignore: !!skip }, () => {
  const lib = Deno.dlopen((built as { lib: string }).lib, SYMBOLS);
  try {
    const x = Float32Array.of(0, -0, Infinity, -Infinity, NaN, 88.72, 88.73, -88, -110, 1e-30);
    const y = new Float32Array(x.length);
    lib.symbols.test_apply(0, x, y, x.length);
    assert.deepEqual([...y.subarray(0, 5)], [1, 1, Infinity, 0, NaN]);
    assert.ok(Math.abs(y[5] / Math.exp(x[5]) - 1) < 2e-7 && y[6] === Infinity, `${y[5]} ${y[6]}`);
    assert.ok(y[7] > 0 && Math.abs(y[7] - Math.exp(x[7])) <= 2 ** -149, `exp(-88) = ${y[7]}`);
    assert.equal(y[8], 0);
    assert.equal(y[9], 1);
    lib.symbols.test_apply(1, x, y, x.length);
    assert.ok(Object.is(y[0], 0) && Object.is(y[1], -0), "erf(±0) keeps the sign of zero");
    assert.deepEqual([...y.subarray(2, 5)], [1, -1, NaN]);
    assert.equal(y[9], Math.fround(1e-30 * 1.1283791670955126));
  } finally {
    lib.close();
  }
});

Deno.test({
  name: "C math: a GELU loop over mj_erff vectorizes (GCC)",
  ignore: !!skip || !(built as { log: string }).log,
}, () => {
  const log = (built as { log: string }).log;
  const line = MATH_C.split("\n").length + DRIVER.split("\n").findIndex((l) =>
    l.includes("void test_gelu")
  ) + 1;
  assert.match(log, new RegExp(`math\\.c:${line}:\\d+: optimized: loop vectorized`), log);
});
