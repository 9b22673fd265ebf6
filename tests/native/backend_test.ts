/**
 * The native backend's own machinery (its kernels are checked against the interpreter by the
 * compiled tiers, tests/webgpu/): the toolchain report, the on-disk cache of compiled steps
 * (a second process compiles nothing; concurrent processes agree), the BLAS switch, and values
 * that stay host arrays.
 */
import { assert } from "../helpers.ts";
import * as mj from "../../mod.ts";

const info = await mj.nativeInfo();
const ignore = info === null;

async function runIn(env: Record<string, string>, code: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { ...env, MOEJIT_BACKEND: "native" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const MOD = new URL("../../mod.ts", import.meta.url).href;
const PROGRAM = `
  import * as mj from "${MOD}";
  const x = mj.tensor(Array.from({ length: 48 }, (_, i) => Math.sin(i)), [6, 8]);
  const w = mj.tensor(Array.from({ length: 40 }, (_, i) => Math.cos(i)), [8, 5]);
  const y = await x.matmul(w).tanh().sum(0).data();
  console.log(JSON.stringify({ y: Array.from(y), info: await mj.nativeInfo() }));`;

Deno.test({ name: "native: the toolchain is reported", ignore }, () => {
  assert.ok(info!.compiler.length > 0);
  assert.ok(info!.flags.includes("-O3"));
  assert.ok(info!.threads >= 1);
  assert.ok(info!.cacheDir.length > 0);
});

Deno.test(
  { name: "native: compiled steps are cached on disk across processes", ignore },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "moejit-cache-" });
    try {
      const env = { MOEJIT_CACHE_DIR: dir };
      const first = await runIn(env, PROGRAM);
      assert.equal(first.code, 0, first.stderr);
      const libs = async () => {
        const names: string[] = [];
        for await (const e of Deno.readDir(`${dir}/native`)) names.push(e.name);
        return names.filter((n) => n.endsWith(".so")).sort();
      };
      const after1 = await libs();
      assert.ok(after1.length >= 2, `libraries: ${after1}`); // the step and the worker thread
      const second = await runIn(env, PROGRAM);
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(await libs(), after1, "a second run compiles nothing");
      assert.deepEqual(JSON.parse(second.stdout).y, JSON.parse(first.stdout).y);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test({ name: "native: concurrent processes share a fresh cache safely", ignore }, async () => {
  const dir = await Deno.makeTempDir({ prefix: "moejit-cache-" });
  try {
    const runs = await Promise.all([1, 2, 3].map(() => runIn({ MOEJIT_CACHE_DIR: dir }, PROGRAM)));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const ys = runs.map((r) => JSON.parse(r.stdout).y);
    assert.deepEqual(ys[1], ys[0]);
    assert.deepEqual(ys[2], ys[0]);
    for await (const e of Deno.readDir(`${dir}/native`)) {
      assert.ok(!/\.\d+\.[a-z0-9]+\.(c|so)$/.test(e.name), `a temporary file was left: ${e.name}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({ name: "native: MOEJIT_NATIVE_BLAS=0 uses moejit's own sgemm", ignore }, async () => {
  const own = await runIn({ MOEJIT_NATIVE_BLAS: "0" }, PROGRAM);
  assert.equal(own.code, 0, own.stderr);
  const parsed = JSON.parse(own.stdout);
  assert.equal(parsed.info.blas, null);
  const dflt = JSON.parse((await runIn({}, PROGRAM)).stdout);
  parsed.y.forEach((v: number, i: number) => assert.ok(Math.abs(v - dflt.y[i]) < 1e-5));
});

Deno.test(
  { name: "native: values are host arrays, read without a copy step", ignore },
  async () => {
    mj.setBackend("native");
    const before = mj.stats().readbacks;
    const x = await mj.realize(mj.tensor([1, 2, 3]).mul(2));
    assert.deepEqual([...await x.data()], [2, 4, 6]);
    assert.equal(mj.stats().readbacks, before, "no device readback");
    // Zero-sized and bool values cross the boundary too.
    assert.deepEqual([...await mj.zeros([0, 3]).add(1).data()], []);
    assert.deepEqual([...await mj.tensor([1, -1, 0]).gt(0).data()], [1, 0, 0]);
  },
);

Deno.test(
  {
    name:
      "native: MOEJIT_NATIVE_GUARD=1 runs a MoE layer's forward and backward with every output and temporary guarded, the same bits as without",
    ignore,
  },
  async () => {
    const program = `
      import * as mj from "${MOD}";
      const x = mj.randn([64, 16], { seed: 1 });
      const p = {
        router: mj.randn([4, 16], { seed: 2 }),
        up: mj.randn([4, 32, 16], { seed: 3 }).mul(0.2),
        down: mj.randn([4, 16, 32], { seed: 4 }).mul(0.2),
      };
      const [y, [g]] = mj.valueAndGrad((p) => mj.moe.layer(x, p, { topK: 2 }).y.square().sum())(p);
      const out = [await y.data(), await g.router.data(), await g.up.data(), await g.down.data()];
      console.log(JSON.stringify(out.map((a) => Array.from(a))));`;
    const plain = await runIn({}, program);
    const guarded = await runIn({ MOEJIT_NATIVE_GUARD: "1" }, program);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(guarded.code, 0, guarded.stderr);
    assert.equal(guarded.stdout, plain.stdout);
  },
);
