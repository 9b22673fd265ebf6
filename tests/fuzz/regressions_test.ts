/**
 * Bugs the random-graph check found, each reduced to a focused case and compared between
 * WebGPU (fused and unfused) and the interpreter. A case whose fix lies in the compiler is
 * marked with `knownBug` (ignored, with the reason in its name) while a fix is pending. The seeds
 * named are those of the generator at the time (a later generator draws other graphs from them).
 */
import { check, f32, gpuTest, mj } from "../webgpu/harness.ts";

// Fuzz seed 100115. Lowering a matmul whose elementwise epilogue is followed by a reshape that
// inserts a size-1 axis throws "Cannot read properties of undefined (reading 'id')" in
// codegen/lower.ts (Lowerer.lower, via lowerEpilogue in src/passes/compile.ts). Without the
// elementwise op, or with the reshape before it, it compiles. The same kernel arises from the
// gradient of x.mean(1).matmul(v) for x [1, 1, 2]: mean's backward divides the matmul's result
// and reshapes it back to x's shape.
gpuTest(
  "a matmul epilogue followed by a reshape that adds a size-1 axis",
  async () => {
    const a = f32([2, 3], 1), b = f32([3, 3], 2);
    await check("mul then reshape", () => a().matmul(b()).mul(3).reshape([2, 1, 3]));
    await check("div then reshape", () => a().matmul(b()).div(3).reshape([2, 1, 3]));
    const x = f32([1, 1, 2], 3), v = f32([2], 4);
    await check("gradient of mean then matmul with a vector", () => {
      const [dx] = mj.grad((x: mj.Tensor) => x.mean([1]).matmul(v()).sum())(x());
      return dx;
    });
  },
);

// Fuzz seed 200057. A matmul whose fused epilogue ends in a cast to i32 or a comparison (a
// result that is not f32) fails WGSL validation: the epilogue function is declared `-> f32` and
// returns the i32/bool value (src/passes/compile.ts lowerEpilogue, codegen's matmul template).
// A cast alone, not fused, compiles.
gpuTest(
  "a matmul epilogue whose result is i32 or bool",
  async () => {
    const a = f32([2, 3], 5), b = f32([3, 2], 6);
    await check("scale then cast to i32", () => a().matmul(b()).mul(4).cast("i32"));
    await check("scale then compare", () => a().matmul(b()).mul(0.5).gt(0));
  },
);

// Fuzz seeds 700243 and 100222. A matmul with a fused elementwise epilogue whose result is then
// expanded along a size-1 axis (a batch axis, or one a reshape added) writes only as many
// elements as the matmul has, contiguously: the rest reads 0 (or whatever the pooled buffer held
// before), silently. Gradients do this whenever a reduction feeds a matmul: the gradient of
// x.mean(2).matmul(w) or x.logsumexp(0, true).matmul(w) with respect to x comes back with its
// values in the wrong places and zeros after them.
gpuTest(
  "a matmul epilogue followed by an expand along a size-1 axis",
  async () => {
    const a = f32([1, 3, 4], 7), b = f32([1, 4, 5], 8), z = f32([3, 3, 5], 9);
    await check("exp then expand", () => a().matmul(b()).exp().expand([3, 3, 5]));
    await check("exp, expand, mul", () => a().matmul(b()).exp().expand([3, 3, 5]).mul(z()));
    await check(
      "div, reshape, expand along the last axis",
      () => a().matmul(b()).div(2).reshape([1, 3, 5, 1]).expand([1, 3, 5, 4]),
    );
    const h = f32([2, 3, 4], 16), w = f32([3, 2], 17);
    await check("gradient of mean over features, then matmul", () => {
      const [dh] = mj.grad((h: mj.Tensor) => h.mean([2]).matmul(w()).sum())(h());
      return dh;
    });
    const x = f32([2, 2, 2], 10), v = f32([1, 2, 1], 11), c = f32([2, 1], 12);
    await check("gradient of logsumexp, matmul, maximum", () => {
      const [dx] = mj.grad((x: mj.Tensor) => x.logsumexp([0], true).matmul(v()).maximum(c()).sum())(
        x(),
      );
      return dx;
    });
    // Without the maximum, the gradient goes wrong when it is computed in one step with the
    // forward value (as a training step does).
    await check("value and gradient of logsumexp, matmul", () => {
      const [value, [dx]] = mj.valueAndGrad((x: mj.Tensor) =>
        x.logsumexp([0], true).matmul(v()).mul(c()).sum()
      )(x());
      return { value, dx };
    });
  },
);

// Fuzz seed 700136. Lowering the gradient of x [2] through both
// x.unsqueeze(-2).matmul(b) and x.slice([[0, -1]]) throws "Cannot read properties of undefined
// (reading '0')" at codegen/lower.ts (a pad's per-axis pairs read at the rank of the matmul's
// coordinates), via lowerEpilogue in src/passes/compile.ts: the matmul's epilogue takes in the
// pad of the slice's gradient, which has another rank.
gpuTest(
  "a matmul epilogue that adds a padded value of another rank",
  async () => {
    const x = f32([2], 13), b = f32([2, 1], 14), w = f32([1, 2], 15);
    await check("gradient through unsqueeze+matmul and slice", () => {
      const [dx] = mj.grad((x: mj.Tensor) => {
        const row = x.unsqueeze(-2);
        return row.matmul(b()).mul(2).sum().add(row.mul(w()).sum()).add(
          x.slice([[0, -1]]).mul(5).sum(),
        );
      })(x());
      return dx;
    });
  },
);
