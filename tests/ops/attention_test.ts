/**
 * The fused attention primitive (forward with log-sum-exp, and its two backward routines): against
 * the composite graph on the float64 interpreter, by finite differences, on each compiled backend
 * (WebGPU, native) against the interpreter (causal and not, Sk > S, head sizes 4…64, long
 * sequences), and the property it exists for: a compiled forward + backward holds no S×S buffer.
 */
import * as mj from "../../mod.ts";
import { compileStep } from "../../src/passes/compile.ts";
import { assert, assertClose, checkGradFD, evalWide, randomArray, wideTensor } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";

type Case = { lead: number[]; S: number; Sk: number; Dh: number; causal: boolean };

const input = (shape: number[], seed: number) =>
  wideTensor(randomArray(shape.reduce((a, b) => a * b, 1), seed, -1.5, 1.5), shape);

/** Forward value and the three gradients of Σ w ⊙ attention(q, k, v). */
function attentionAndGrads(c: Case, fused: boolean, seed: number) {
  const q = input([...c.lead, c.S, c.Dh], seed), k = input([...c.lead, c.Sk, c.Dh], seed + 1);
  const v = input([...c.lead, c.Sk, c.Dh], seed + 2), w = input([...c.lead, c.S, c.Dh], seed + 3);
  const f = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
    mj.nn.attention(q, k, v, { causal: c.causal, fused }).mul(w).sum();
  const [value, grads] = mj.valueAndGrad(f)(q, k, v);
  return { out: mj.nn.attention(q, k, v, { causal: c.causal, fused }), value, grads };
}

const CASES: Case[] = [
  { lead: [2, 3], S: 7, Sk: 7, Dh: 8, causal: true },
  { lead: [2, 3], S: 7, Sk: 7, Dh: 8, causal: false },
  { lead: [1, 2], S: 5, Sk: 9, Dh: 4, causal: true },
  { lead: [3], S: 6, Sk: 4, Dh: 12, causal: false },
  { lead: [1, 1], S: 1, Sk: 1, Dh: 4, causal: true },
];

Deno.test("attention: the fused primitive equals the composite graph on the float64 interpreter", () => {
  for (const c of CASES) {
    const a = attentionAndGrads(c, true, 11), b = attentionAndGrads(c, false, 11);
    const [ao, av, ...ag] = evalWide(a.out, a.value, ...a.grads);
    const [bo, bv, ...bg] = evalWide(b.out, b.value, ...b.grads);
    const what = JSON.stringify(c);
    assertClose(ao, bo, { rtol: 1e-6, atol: 1e-6, msg: `${what}: output` });
    assertClose(av, bv, { rtol: 1e-6, atol: 1e-6, msg: `${what}: value` });
    ag.forEach((g, i) =>
      assertClose(g, bg[i], { rtol: 1e-6, atol: 1e-6, msg: `${what}: gradient ${"qkv"[i]}` })
    );
  }
});

Deno.test("attention: finite differences of the fused primitive (incl. the log-sum-exp output)", async (t) => {
  mj.setBackend("cpu");
  const shape = [1, 2, 5, 4];
  const w = input(shape, 5);
  const inputs = [0, 1, 2].map((i) => ({ data: randomArray(40, 20 + i, -1, 1), shape }));
  await t.step(
    "causal",
    () => checkGradFD((q, k, v) => mj.nn.attention(q, k, v).mul(w).sum(), inputs),
  );
  await t.step(
    "non-causal",
    () =>
      checkGradFD((q, k, v) => mj.nn.attention(q, k, v, { causal: false }).mul(w).sum(), inputs),
  );
  await t.step("a loss that uses the log-sum-exp column too", async () => {
    const { prim } = await import("../../src/ops/prim.ts");
    const lw = input([1, 2, 5, 5], 6);
    checkGradFD(
      (q, k, v) => prim("attention", [q, k, v], { causal: true, scale: 0.4 }).mul(lw).sum(),
      inputs,
    );
  });
});

/** Output, value and the three gradients on backend `b`, in one step. */
async function attentionValues(c: Case, b: mj.BackendName) {
  mj.setBackend(b);
  try {
    const r = attentionAndGrads(c, true, 31);
    return await Promise.all(
      (await mj.realize([r.out, r.value, ...r.grads])).map((t) => t.data()),
    );
  } finally {
    mj.setBackend("cpu");
  }
}

gpuTest(
  "attention: the kernels equal the interpreter (forward and both backward routines)",
  async () => {
    const cases: Case[] = [
      ...CASES,
      { lead: [2, 2], S: 33, Sk: 33, Dh: 16, causal: true },
      { lead: [1, 2], S: 130, Sk: 130, Dh: 64, causal: true },
      { lead: [1], S: 17, Sk: 40, Dh: 32, causal: false },
      { lead: [1, 1], S: 1500, Sk: 1500, Dh: 8, causal: true },
    ];
    for (const c of cases) {
      const want = await attentionValues(c, "cpu");
      const got = await attentionValues(c, backend());
      const what = JSON.stringify(c);
      // Sums of up to 1500 exponentials: relative f32 error of a few 1e-6, scaled by the terms.
      got.forEach((g, i) =>
        assertClose(g, want[i], {
          rtol: 1e-4,
          atol: 2e-4 * Math.sqrt(c.Sk),
          msg: `${what}: ${["out", "value", "dq", "dk", "dv"][i]}`,
        })
      );
    }
    mj.setBackend("cpu");
  },
);

Deno.test("attention: a compiled forward + backward never allocates an S×S buffer (the composite does)", () => {
  const lead = [2, 4], S = 96, Dh = 8;
  const scoresBytes = lead[0] * lead[1] * S * S * 4;
  const largest = (fused: boolean) => {
    const q = mj.randn([...lead, S, Dh], { seed: 1 }), k = mj.randn([...lead, S, Dh], { seed: 2 });
    const v = mj.randn([...lead, S, Dh], { seed: 3 });
    const f = (q: mj.Tensor, k: mj.Tensor, v: mj.Tensor) =>
      mj.nn.attention(q, k, v, { fused }).square().sum();
    const [loss, grads] = mj.valueAndGrad(f)(q, k, v);
    const prog = compileStep([loss, ...grads].map((t) => t.node), () => false, {
      fuse: true,
      maxBindings: 8,
    });
    return {
      bytes: Math.max(...prog.slots.map((s) => s.bytes)),
      kernels: prog.launches.map((l) => l.program.label),
    };
  };
  const fused = largest(true), composite = largest(false);
  assert.ok(
    fused.bytes < scoresBytes,
    `fused: a ${fused.bytes}-byte buffer (S×S is ${scoresBytes})`,
  );
  assert.ok(composite.bytes >= scoresBytes, `composite: largest buffer ${composite.bytes} bytes`);
  assert.equal(
    fused.kernels.filter((l) => /^attention(\+…)? →/.test(l)).length,
    1,
    fused.kernels.join("\n"),
  );
  assert.equal(
    fused.kernels.filter((l) => /^attentionBwd(Q|KV)(\+…)? →/.test(l)).length,
    2,
    fused.kernels.join("\n"),
  );
});

Deno.test("attention: bad input and unsupported requests are named", () => {
  const q = mj.zeros([1, 2, 4, 6]), k = mj.zeros([1, 2, 4, 6]);
  const throwsWith = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof mj.MoejitError && re.test(e.message));
  throwsWith(
    () => mj.nn.attention(q, k, k, { fused: true }),
    /nn\.attention: .*head size divisible by 4, got 6/,
  );
  throwsWith(
    () => mj.nn.attention(q, k, k, { causal: true, flash: true } as never),
    /unknown option "flash"; expected causal, fused/,
  );
  throwsWith(
    () => mj.nn.attention(mj.zeros([1, 5, 4]), mj.zeros([1, 3, 4]), mj.zeros([1, 3, 4])),
    /at least as many keys as queries, got S 5 and Sk 3/,
  );
  throwsWith(
    () => mj.nn.attention(q, mj.zeros([1, 2, 4, 8]), k),
    /expected f32 q \[\.\.\., S, Dh\]/,
  );
  // Odd head sizes fall back to the composite graph by default.
  assert.deepEqual(mj.nn.attention(q, k, k).shape, [1, 2, 4, 6]);
  // Second derivatives through the fused backward are refused with a way out.
  const x = mj.randn([1, 1, 3, 4], { seed: 1 });
  const gradOfGrad = () =>
    mj.grad((x: mj.Tensor) => {
      const [g] = mj.grad((y: mj.Tensor) => mj.nn.attention(y, y, y).square().sum())(x);
      return g.sum();
    })(x);
  throwsWith(gradOfGrad, /second derivatives through fused attention .* fused: false/);
});
