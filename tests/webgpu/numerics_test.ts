/**
 * mj.debug.checkNumerics: every realized value is tested for NaN/Inf by its bits, and the first
 * op that produced one is raised by name with the call site that built it, on the interpreter
 * and on WebGPU alike. WGSL lets a driver assume finite math (llvmpipe folds x·0 and x/0 with a
 * constant zero to 0), so checked steps read constants from buffers.
 */
import { assert, backend, gpuTest, mj } from "./harness.ts";

const SITE = /\n {4}at your call: .*numerics_test\.ts:\d+:\d+/;

async function onBoth(
  build: () => mj.Tensor,
  want: RegExp | null,
): Promise<void> {
  for (const b of ["cpu", backend()] as const) {
    mj.setBackend(b);
    const was = mj.debug.checkNumerics(true);
    try {
      const t = build();
      if (want === null) {
        await t.data();
        continue;
      }
      await assert.rejects(() => t.data(), (e: Error) => {
        assert.ok(e instanceof mj.MoejitError, `${b}: ${e}`);
        assert.match(e.message.split("\n")[0], want, b);
        assert.match(e.message, SITE, b);
        return true;
      });
    } finally {
      mj.debug.checkNumerics(was);
    }
  }
}

gpuTest("checkNumerics: the op that produced NaN or an infinity is named", async () => {
  await onBoth(
    () => mj.tensor([1, -1, 0, 2]).div(0),
    /^div: produced NaN from inputs without NaN: first non-finite element \[0\] of f32\[4\]/,
  );
  await onBoth(
    () => mj.tensor([Infinity, 1, 2, -Infinity]).add(1).mul(0).sum(),
    /^mul: produced NaN from inputs without NaN/,
  );
  await onBoth(
    () => mj.tensor([1, 2, -3, 4]).mul(2).log().add(1).sum(),
    /^log: produced NaN from inputs without NaN: first non-finite element \[2\] of f32\[4\]/,
  );
  await onBoth(
    () => mj.tensor([100, 1]).exp().exp().sum(),
    /^exp: produced an infinity from finite inputs: first non-finite element \[0\]/,
  );
  // A NaN in data the computation is given is reported as such.
  await onBoth(
    () => mj.tensor([Infinity, NaN, 2, -Infinity]).mul(0),
    /^input: a value given to the computation holds NaN/,
  );
});

gpuTest("checkNumerics: infinities used on purpose (masks) only propagate", async () => {
  await onBoth(
    () => mj.tensor([0, 1, 2]).add(mj.tensor([0, -Infinity, 0])).softmax(),
    null,
  );
  await onBoth(() => mj.tensor([[1, 2], [3, 4]]).add(mj.full([2, 2], -Infinity)).max(1), null);
  // A NaN made from infinities is still caught: -inf - -inf.
  await onBoth(
    () => mj.tensor([0, 1]).add(mj.full([2], -Infinity)).sub(mj.full([2], -Infinity)),
    /^sub: produced NaN from inputs without NaN/,
  );
});

gpuTest(
  "checkNumerics: jitted steps are checked too, and the switch is part of the step key",
  async () => {
    for (const b of ["cpu", backend()] as const) {
      mj.setBackend(b);
      const step = mj.jit((a: mj.Tensor) => a.sqrt().mul(3));
      // Off: the step runs and returns NaN where IEEE says so (or what the driver folds to).
      const plain = await (await step(mj.tensor([4, -1]))).data();
      assert.equal(plain[0], 6);
      const was = mj.debug.checkNumerics(true);
      try {
        await assert.rejects(
          async () => await (await step(mj.tensor([4, -1]))).data(),
          /sqrt: produced NaN from inputs without NaN: first non-finite element \[1\] of f32\[2\]/,
        );
        assert.deepEqual([...await (await step(mj.tensor([4, 9]))).data()], [6, 9]);
      } finally {
        mj.debug.checkNumerics(was);
      }
    }
  },
);

gpuTest("checkNumerics: MOEJIT_CHECK_NUMERICS=1 turns it on for a whole run", async () => {
  const code = `
    import * as mj from "${new URL("../../mod.ts", import.meta.url).href}";
    for (const b of ["cpu", "${backend()}"]) {
      mj.setBackend(b);
      try { await mj.tensor([2, -2]).log().data(); console.log(b, "no error"); }
      catch (e) { console.log(b, e.message.split("\\n")[0]); }
    }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { MOEJIT_CHECK_NUMERICS: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  assert.equal(lines.length, 2, new TextDecoder().decode(out.stderr));
  for (const l of lines) {
    assert.match(l, /^(cpu|webgpu|native) log: produced NaN from inputs without NaN/);
  }
});
