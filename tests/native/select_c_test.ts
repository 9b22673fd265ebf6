/**
 * The C emitter's select evaluates both arms (codegen/c/emit.ts): GCC 12.2 (Debian 12's cc)
 * miscompiles a conditional load in a vectorized inner loop of 2–16 iterations at -O3 with AVX
 * (wrong elements, silently). Split loops make such inner loops common, so this builds the same
 * loop nest both ways with the backend's flags and checks the emitted form (mj_sel_f32) always,
 * and reports whether this compiler has the bug (the plain conditional form) for the record.
 */
import assert from "node:assert/strict";
import { BASE_FLAGS } from "../../src/runtime/native/compiler.ts";
import { PRELUDE_C } from "../../codegen/c/prelude.ts";

const FLAGS = [...BASE_FLAGS, "-march=native"];

const LENGTHS = [2, 3, 5, 6, 8, 12, 16, 17, 64];

const DRIVER = LENGTHS.map((L) => `
void sel_${L}(const uint8_t *restrict m, const float *restrict x, float *restrict y, int outer) {
  for (int32_t o = 0; o < outer; o++)
    for (int32_t i = 0; i < ${L}; i++) {
      const int64_t t = (int64_t)o * ${L} + i;
      y[t] = mj_sel_f32(m[t] != 0, -1.0f, x[t]);
    }
}
void cond_${L}(const uint8_t *restrict m, const float *restrict x, float *restrict y, int outer) {
  for (int32_t o = 0; o < outer; o++)
    for (int32_t i = 0; i < ${L}; i++) {
      const int64_t t = (int64_t)o * ${L} + i;
      y[t] = m[t] != 0 ? -1.0f : x[t];
    }
}`).join("\n");

type Loop = { parameters: ["buffer", "buffer", "buffer", "i32"]; result: "void" };
const loop: Loop = { parameters: ["buffer", "buffer", "buffer", "i32"], result: "void" };
const SYMBOLS = Object.fromEntries(
  LENGTHS.flatMap((L) => [[`sel_${L}`, loop], [`cond_${L}`, loop]]),
) as Record<string, Loop>;

async function build(): Promise<string | { skip: string }> {
  const dir = await Deno.makeTempDir({ prefix: "mj-select-" });
  const src = `${dir}/select.c`, lib = `${dir}/select.so`;
  await Deno.writeTextFile(src, PRELUDE_C + DRIVER);
  try {
    const r = await new Deno.Command("cc", {
      args: [...FLAGS, "-o", lib, src, "-lm"],
      stderr: "piped",
    }).output();
    return r.success ? lib : { skip: `cc failed: ${new TextDecoder().decode(r.stderr)}` };
  } catch (e) {
    return { skip: `no C compiler (cc): ${(e as Error).message}` };
  }
}

const built = await build();
const skip = typeof built === "string" ? null : built.skip;
if (skip) console.log(`select_c_test: skipped (${skip})`);

Deno.test({
  name: "C select: a loop nest selecting between a constant and a load is right for every length",
  ignore: !!skip,
}, () => {
  const lib = Deno.dlopen(built as string, SYMBOLS);
  try {
    const outer = 64, miscompiled: number[] = [];
    for (const L of LENGTHS) {
      const n = outer * L;
      const m = Uint8Array.from({ length: n }, (_, i) => (i * 7919) % 3 === 0 ? 1 : 0);
      const x = Float32Array.from({ length: n }, (_, i) => i + 0.5);
      const want = Float32Array.from(x, (v, i) => (m[i] ? -1 : v));
      const y = new Float32Array(n);
      lib.symbols[`sel_${L}`](m, x, y, outer);
      assert.deepEqual(y, want, `mj_sel_f32, inner loop of ${L}`);
      y.fill(0);
      lib.symbols[`cond_${L}`](m, x, y, outer);
      if (y.some((v, i) => v !== want[i])) miscompiled.push(L);
    }
    if (miscompiled.length) {
      console.log(
        `select_c_test: this cc miscompiles a conditional load in inner loops of ${
          miscompiled.join(", ")
        }`,
      );
    }
  } finally {
    lib.close();
  }
});
