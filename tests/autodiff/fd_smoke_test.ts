import type * as mj from "../../mod.ts";
import { checkGradFD, randomArray } from "../helpers.ts";

Deno.test("fd: softmax-weighted matmul passes finite differences", () => {
  checkGradFD(
    (x, w) => x.matmul(w).softmax(-1).mul(x.matmul(w)).sum(),
    [{ data: randomArray(6, 1), shape: [2, 3] }, { data: randomArray(12, 2), shape: [3, 4] }],
  );
});

Deno.test("fd: gelu/erf, tanh form, silu, sigmoid", () => {
  for (
    const f of [
      (x: mj.Tensor) => x.gelu().sum(),
      (x: mj.Tensor) => x.gelu("tanh").sum(),
      (x: mj.Tensor) => x.silu().sum(),
      (x: mj.Tensor) => x.sigmoid().mul(x).sum(),
    ]
  ) checkGradFD(f, [{ data: randomArray(7, 3, -3, 3), shape: [7] }]);
});
