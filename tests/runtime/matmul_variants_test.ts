/**
 * The matmul template's layouts (NN, TN, NT and the strided scalar kernel for the rest) against
 * the interpreter on each compiled backend (on native, the same layouts as BLAS calls):
 * transposed operands are read in place, batches broadcast with a zero stride, and fused
 * epilogues apply per element.
 */
import * as mj from "../../mod.ts";
import { assert, assertClose, randomArray } from "../helpers.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";

function operand(shape: number[], seed: number, transposed: boolean): mj.Tensor {
  const stored = transposed
    ? [...shape.slice(0, -2), shape[shape.length - 1], shape[shape.length - 2]]
    : shape;
  const t = mj.tensor(randomArray(stored.reduce((a, b) => a * b, 1), seed), stored);
  return transposed ? t.swapAxes(-2, -1) : t;
}

async function both(f: () => mj.Tensor): Promise<[Float32Array, Float32Array]> {
  mj.setBackend(backend());
  const g = (await f().data()) as Float32Array;
  mj.setBackend("cpu");
  const c = (await f().data()) as Float32Array;
  return [g, c];
}

const cases: { name: string; a: number[]; b: number[] }[] = [
  { name: "square", a: [64, 64], b: [64, 64] },
  { name: "tall", a: [129, 36], b: [36, 20] },
  { name: "odd", a: [7, 13], b: [13, 5] },
  { name: "batched", a: [3, 17, 12], b: [3, 12, 24] },
  { name: "broadcast batch", a: [4, 9, 16], b: [16, 8] },
  { name: "broadcast left", a: [16, 24], b: [2, 24, 12] },
];

for (const c of cases) {
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    gpuTest(
      `matmul ${c.name} ${ta ? "T" : "N"}${tb ? "T" : "N"} matches the interpreter`,
      async () => {
        const seedA = c.a.length * 7 + (ta ? 1 : 0), seedB = c.b.length * 11 + (tb ? 1 : 0);
        const [g, r] = await both(() => {
          const A = operand(c.a, seedA, ta), B = operand(c.b, seedB, tb);
          const bias = mj.tensor(randomArray(c.b[c.b.length - 1], 5), [c.b[c.b.length - 1]]);
          return A.matmul(B).add(bias).gelu();
        });
        assertClose(g, r, { rtol: 1e-4, atol: 1e-5 });
      },
    );
  }
}

Deno.test("matmul: a large x·Wᵀ runs NN on a copied Wᵀ; a small one reads W transposed in place", async () => {
  const { compileStep } = await import("../../src/passes/compile.ts");
  const labels = (m: number) => {
    const x = mj.randn([m, 128], { seed: 1 }), w = mj.randn([128, 128], { seed: 2 });
    const prog = compileStep([x.matmul(w.transpose()).node], () => false, {
      fuse: true,
      maxBindings: 8,
    });
    return prog.launches.map((l) => l.program.label).join("\n");
  };
  assert.match(labels(2048), /\(NN /);
  assert.doesNotMatch(labels(2048), /\(NT /);
  assert.match(labels(16), /\(NT /);
});
