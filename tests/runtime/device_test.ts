/**
 * Device selection and diagnostics, in subprocesses (the environment decides the adapter and the
 * compiler): the automatic choice (native on a software adapter or none when a compiler works,
 * else WebGPU, else the interpreter) said in one line, a clear error when WebGPU is demanded,
 * adapter info, and MOEJIT_DEBUG's schedule and WGSL dump. The tests past the backend choice are
 * about the WebGPU device itself (adapter limits, device loss, uncaptured errors, GPU buffers
 * kept alive across garbage collection, the WGSL dump) and have no native analogue: they stay
 * WebGPU-only.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { acquireGpu } from "../../src/runtime/device.ts";

const fixture = new URL("./fixtures/tiny.ts", import.meta.url).pathname;

async function runFixture(env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture],
    env: { XDG_RUNTIME_DIR: "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const HAS_CC = (await mj.nativeInfo()) !== null;

Deno.test({
  name: "device: without an adapter moejit uses the native backend, said in one line",
  ignore: !HAS_CC,
}, async () => {
  // An empty DENO_WEBGPU_BACKEND makes Deno find no adapter at all.
  const r = await runFixture({ DENO_WEBGPU_BACKEND: "" });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { backend: "native", y: [3, 5, 7] });
  const notes = r.stderr.split("\n").filter((l) => l.startsWith("moejit:"));
  assert.equal(notes.length, 1);
  assert.match(
    notes[0],
    /using the native CPU backend \(.*\); no WebGPU adapter\. Set MOEJIT_BACKEND/,
  );
});

Deno.test({
  name: "device: on a software adapter moejit prefers the native backend",
  ignore: !HAS_CC || !(await acquireGpu())?.info.adapter.fallback,
}, async () => {
  const r = await runFixture({});
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).backend, "native");
  assert.match(r.stderr, /moejit: using the native CPU backend .*the WebGPU adapter is software/);
});

Deno.test("device: with no adapter and no C compiler moejit falls back to the interpreter", async () => {
  const r = await runFixture({
    DENO_WEBGPU_BACKEND: "",
    CC: "/nonexistent/cc",
    PATH: "/nonexistent",
  });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { backend: "cpu", y: [3, 5, 7] });
  const notes = r.stderr.split("\n").filter((l) => l.startsWith("moejit:"));
  assert.equal(notes.length, 1);
  assert.match(
    notes[0],
    /CPU interpreter, which is slow: no WebGPU adapter.*no working C compiler.*apt-get install gcc/,
  );
});

Deno.test("device: MOEJIT_BACKEND=webgpu without an adapter is an error naming what to install", async () => {
  const r = await runFixture({ DENO_WEBGPU_BACKEND: "", MOEJIT_BACKEND: "webgpu" });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no WebGPU adapter was found/);
  assert.match(r.stderr, /mesa-vulkan-drivers/);
  assert.match(r.stderr, /setBackend\("cpu"\)/);
});

const gpu = await acquireGpu();

Deno.test({
  name: "device: backendInfo reports the adapter, requested limits and features",
  ignore: !gpu,
}, async () => {
  const info = await mj.backendInfo();
  assert.ok(info);
  assert.ok(info.adapter.description.length > 0);
  // The device asks for the adapter's own limits, not WebGPU's defaults (8 storage buffers per
  // stage, 16 KiB of workgroup storage, 128 MiB bindings).
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  assert.ok(adapter);
  const adapterLimits = adapter.limits as unknown as Record<string, number>;
  for (
    const k of [
      "maxStorageBuffersPerShaderStage",
      "maxStorageBufferBindingSize",
      "maxComputeWorkgroupStorageSize",
      "maxBufferSize",
    ]
  ) {
    assert.equal(info.limits[k], adapterLimits[k], k);
  }
  assert.ok(Array.isArray(info.features));
});

Deno.test({
  name: "device: a lost device fails the next computation with a DeviceError, not zeros",
  ignore: !gpu,
}, async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fixtures/device_lost.ts", import.meta.url).pathname],
    env: { XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], "[2,4]", new TextDecoder().decode(out.stderr));
  assert.match(lines[1], /^DeviceError: the WebGPU device was lost/);
});

Deno.test({
  name: "device: MOEJIT_DEBUG prints the schedule and writes the step's WGSL",
  ignore: !gpu,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runFixture({
      MOEJIT_DEBUG: "1",
      MOEJIT_DEBUG_DIR: dir,
      MOEJIT_BACKEND: "webgpu",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /compiled step 1: 1 kernels/);
    const files = [...Deno.readDirSync(`${dir}/step-0001`)].map((e) => e.name).sort();
    assert.deepEqual(files, ["k000.wgsl", "schedule.txt"]);
    const wgsl = Deno.readTextFileSync(`${dir}/step-0001/k000.wgsl`);
    assert.match(wgsl, /@compute @workgroup_size/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "device: values kept from mj.realize survive garbage collection of their sources",
  ignore: !gpu,
}, async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./fixtures/realize_gc.ts", import.meta.url).pathname,
    ],
    env: { XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const kept = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(kept, [1, 2, 3, 4, 5].map((v) => [10 * v, 10 * v, 10 * v, 10 * v]));
});

Deno.test({
  name: "device: an uncaptured WebGPU error surfaces at the next step instead of silent zeros",
  ignore: !gpu,
}, async () => {
  mj.setBackend("webgpu");
  await mj.tensor([1]).add(1).data(); // the backend's device is up
  // A validation error outside any error scope (usage 0 is invalid).
  gpu!.device.createBuffer({ size: 4, usage: 0 });
  await gpu!.device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(() => mj.tensor([2]).mul(3).data(), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /WebGPU reported an error/);
    return true;
  });
  // Reported once; the device still works.
  assert.deepEqual(Array.from(await mj.tensor([2]).mul(4).data()), [8]);
});
