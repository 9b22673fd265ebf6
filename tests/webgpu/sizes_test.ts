/**
 * Sizes are checked before anything is allocated: a tensor past 32-bit indexing is refused when
 * it is built, on every backend; a value past the adapter's buffer limit is refused when its
 * step is compiled (naming the op, the shape and the limit); a host array past the memory
 * available is refused by the interpreter. Large tensors that fit stay right.
 */
import { assert, backend, gpuTest, mj } from "./harness.ts";
import { SLOW } from "../helpers.ts";

const TOO_BIG = /holds at most 2,147,483,647 elements\n {4}at your call: .*sizes_test\.ts/;

gpuTest("sizes: tensors past 32-bit indexing are refused when built, naming the op", () => {
  for (const b of ["cpu", backend()] as const) {
    mj.setBackend(b);
    assert.throws(
      () => mj.ones([100000, 100000]).sum(),
      (e: Error) =>
        /^ones: the result would have shape \[100000,100000\], 10,000,000,000/.test(
          e.message,
        ) && TOO_BIG.test(e.message),
    );
    assert.throws(
      () => mj.ones([50000, 50000]).mean(),
      /MoejitError: ones: .*2,500,000,000 elements/,
    );
    assert.throws(() => mj.ones([1, 100000]).expand([100000, 100000]), /MoejitError: expand: /);
    assert.throws(() => mj.ones([100000, 2]).matmul(mj.ones([2, 100000])), /MoejitError: matmul: /);
    assert.throws(() => mj.zeros([65536, 32768]), TOO_BIG);
  }
});

gpuTest(
  "sizes: a value past the adapter's binding limit is a named error before allocation",
  async () => {
    mj.setBackend(backend());
    const limit = (await mj.backendInfo())!.limits.maxStorageBufferBindingSize;
    const n = Math.floor(limit / 4) + 1024;
    const before = mj.stats().bytesAllocated;
    await assert.rejects(
      () => mj.randn([n], { seed: 1 }).add(1).data(),
      (e: Error) =>
        e instanceof mj.MoejitError &&
        new RegExp(
          `^add: the result f32\\[${n}\\] takes [\\d,]+ bytes .*more than this device ` +
            `binds in one buffer \\(maxStorageBufferBindingSize = [\\d,]+ bytes`,
        ).test(e.message),
    );
    assert.equal(mj.stats().bytesAllocated, before, "nothing was allocated");
    // Fused into a reduction, the same computation never needs the big buffer, and is right.
    const s = await mj.ones([n]).add(1).sum().item();
    assert.equal(s, 2 * n);
  },
  { only: "webgpu" },
);

gpuTest("sizes: the interpreter refuses an array past the host memory available", async () => {
  const code = `
    import * as mj from "${new URL("../../mod.ts", import.meta.url).href}";
    mj.setBackend("cpu");
    try { await mj.ones([40000000]).add(1).data(); console.log("no error"); }
    catch (e) { console.log(e.message.split("\\n")[0]); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { MOEJIT_MAX_HOST_BYTES: "100000000" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.match(
    text,
    /^add: the intermediate const f32\[40000000\] of add f32\[40000000\] needs 160,000,000 bytes .* of host memory, more than the 100,000,000 bytes .* available$/,
  );
});

gpuTest("sizes: a 400,000,000-element sum of ones is exact (slow tier)", async () => {
  if (!SLOW) return;
  mj.setBackend(backend());
  assert.equal(await mj.ones([20000, 20000]).sum().item(), 4e8);
  assert.equal(await mj.ones([20000, 20000]).mean().item(), 1);
});
