/**
 * The fuzzer's own parts, on the CPU: the generator is deterministic, type-correct and covers
 * the ops and sizes it promises; the error estimates cover the f32 interpreter's distance from
 * float64 and still catch the bugs the fuzzer exists for (a reduction cut off at llvmpipe's loop
 * cap, an index off by one); the shrinker finds a minimal program; seeds come from the
 * environment as documented; the snippet of a program runs and prints every root.
 */
import assert from "node:assert/strict";
import * as mj from "../../mod.ts";
import { evaluate } from "../../src/interp/interpreter.ts";
import { backend, gpuTest } from "../webgpu/harness.ts";
import { compareRoot, DEFAULT_MODE, eager, SAFETY } from "./check.ts";
import { analyze } from "./error_bounds.ts";
import { generate, type SizeClass } from "./generate.ts";
import { live, type Op, type Program, runtimeScalars, shapesOf } from "./program.ts";
import { seedsFrom } from "./runner.ts";
import { failureKind, shrinkWith } from "./shrink.ts";
import { snippet } from "./snippet.ts";

const LOOP_CAP = 65_535;

/** The longest loop an op of the program implies: its reduction, scan, top-k row or matmul K. */
function longestExtent(p: Program): number {
  const info = shapesOf(p);
  let most = 0;
  p.nodes.forEach((op, i) => {
    const s = "x" in op ? info[op.x].shape : [];
    const norm = (a: number) => (a < 0 ? a + s.length : a);
    let n = 0;
    if (op.k === "reduce") {
      n = (op.axes ?? s.map((_, a) => a)).reduce((m, a) => m * s[norm(a)], 1);
    } else if (op.k === "softmax" || op.k === "cumsum" || op.k === "argmax") n = s[norm(op.axis)];
    else if (op.k === "topk") n = s[s.length - 1];
    else if (op.k === "matmul") n = info[op.a].shape.at(-1)!;
    void i;
    most = Math.max(most, n);
  });
  return most;
}

Deno.test("fuzz generator: deterministic, type-correct, and covering the ops and sizes", () => {
  const seen = new Set<string>();
  const classes: Record<SizeClass, number> = { small: 0, big: 0, long: 0 };
  let pastCap = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const p = generate(seed);
    assert.deepEqual(generate(seed), p, `seed ${seed} is not deterministic`);
    // Builds without an error: every op got operands of the right shapes and dtypes.
    const info = shapesOf(p);
    assert.ok(p.outputs.length >= 1 && p.outputs.every((o) => o < p.nodes.length));
    const size = Math.max(...info.map((t) => t.shape.reduce((a, b) => a * b, 1)));
    const cls: SizeClass = p.dims.some((d) => d > 65_535)
      ? "long"
      : p.dims.some((d) => d > 1000)
      ? "big"
      : "small";
    classes[cls]++;
    assert.ok(size <= 1 << 19, `seed ${seed}: a node of ${size} elements`);
    if (longestExtent(p) > LOOP_CAP) pastCap++;
    for (const op of p.nodes) seen.add(kindOf(op));
  }
  const expected = [
    "input f32",
    "input i32",
    "input bool",
    "index",
    ...[
      "neg",
      "abs",
      "exp",
      "log",
      "sqrt",
      "rsqrt",
      "reciprocal",
      "square",
      "sin",
      "cos",
      "tanh",
      "erf",
      "sigmoid",
      "relu",
      "gelu",
      "silu",
      "softplus",
      "floor",
      "sign",
      "clip",
      "logicalNot",
    ]
      .map((f) => `unary ${f}`),
    ...["add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "ge", "mod", "logicalAnd"]
      .map((f) => `binary ${f}`),
    ...["add", "sub", "mul", "div", "pow", "maximum", "gt", "mod"].map((f) => `scalar ${f}`),
    "where",
    "cast f32",
    "cast i32",
    "cast bool",
    ...["sum", "mean", "max", "min", "var", "logsumexp"].map((f) => `reduce ${f}`),
    "softmax softmax",
    "softmax logSoftmax",
    "argmax argmax",
    "argmax argmin",
    "topk values",
    "topk indices",
    "cumsum",
    "gather",
    "takeRows",
    "matmul",
    "reshape merge",
    "reshape split",
    "reshape flatten",
    "permute permute",
    "permute transpose",
    "permute swapAxes",
    "expand",
    "squeeze",
    "unsqueeze",
    "slice slice",
    "slice narrow",
    "slice index",
    "pad",
    "concat",
    "stack",
  ];
  const missing = expected.filter((k) => !seen.has(k));
  assert.deepEqual(missing, [], `ops never generated in 300 seeds: ${missing.join(", ")}`);
  assert.ok(classes.long >= 15 && classes.big >= 30, JSON.stringify(classes));
  assert.ok(pastCap >= 15, `only ${pastCap} programs loop past ${LOOP_CAP}`);
});

function kindOf(op: Op): string {
  switch (op.k) {
    case "input":
      return `input ${op.dtype}`;
    case "unary":
    case "binary":
    case "scalar":
    case "reduce":
    case "softmax":
    case "argmax":
      return `${op.k} ${op.f}`;
    case "cast":
      return `cast ${op.dtype}`;
    case "topk":
      return `topk ${op.part}`;
    case "reshape":
      return `reshape ${op.how}`;
    case "permute":
    case "slice":
      return `${op.k} ${op.form}`;
    default:
      return op.k;
  }
}

Deno.test("fuzz error estimates cover the f32 interpreter's distance from float64", () => {
  mj.setBackend("cpu");
  let checked = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const p = generate(seed);
    if (p.dims.some((d) => d > 65_535)) continue;
    const roots = eager(p, true);
    const nodes = roots.tensors.map((t) => t.node);
    const a = analyze(nodes, SAFETY);
    if (a.hazards.length || a.nonFinite) continue;
    const wide = evaluate(nodes, { wide: true });
    roots.tensors.forEach((t, k) => {
      const c = compareRoot(
        wide[k] as ArrayLike<number>,
        a.values[k] as ArrayLike<number>,
        a.errors[k],
        t.dtype,
        t.shape,
      );
      assert.equal(
        c.bad,
        0,
        `seed ${seed}, ${roots.names[k]}: float64 lies outside the estimate\n${c.lines.join("\n")}`,
      );
    });
    checked++;
  }
  assert.ok(checked >= 40, `only ${checked} programs were well-conditioned`);
});

/** The analysis of one op over data, and a comparison of `got` with its interpreter value. */
function judge(
  build: () => mj.Tensor,
  got: (x: Float32Array) => ArrayLike<number>,
  x: Float32Array,
) {
  mj.setBackend("cpu");
  const t = build();
  const a = analyze([t.node], SAFETY);
  return compareRoot(got(x), a.values[0] as ArrayLike<number>, a.errors[0], t.dtype, t.shape);
}

Deno.test("fuzz tolerances catch a reduction cut off at llvmpipe's loop cap", () => {
  const n = 70_001;
  const x = Float32Array.from({ length: n }, (_, i) => 0.25 + ((i * 7919) % 1000) / 1000);
  const head = x.subarray(0, LOOP_CAP);
  const sum = (v: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i];
    return s;
  };
  // The exact sum passes, the truncated one does not; likewise the mean and a softmax row.
  assert.equal(judge(() => mj.tensor(x).sum(), () => [sum(x)], x).bad, 0);
  assert.equal(judge(() => mj.tensor(x).sum(), () => [sum(head)], x).bad, 1);
  assert.equal(judge(() => mj.tensor(x).mean(), () => [sum(head) / n], x).bad, 1);
  const truncatedSoftmax = (v: Float32Array) => {
    const z = sum(Array.from(head, Math.exp));
    return Array.from(v, (e) => Math.exp(e) / z);
  };
  assert.ok(judge(() => mj.tensor(x).softmax(0), truncatedSoftmax, x).bad > 0);
  // A cumulative sum whose loop stopped: the tail repeats the last value reached, and all but
  // the first few of those elements (where one missing term is within the rounding of a sum of
  // 65,535) are caught.
  const cum = new Float64Array(n), stopped = new Float64Array(n);
  x.forEach((v, i) => {
    cum[i] = (i ? cum[i - 1] : 0) + v;
    stopped[i] = (i ? stopped[i - 1] : 0) + (i < LOOP_CAP ? v : 0);
  });
  assert.equal(judge(() => mj.tensor(x).cumsum(0), () => cum, x).bad, 0);
  const caught = judge(() => mj.tensor(x).cumsum(0), () => stopped, x).bad;
  assert.ok(caught > 0.99 * (n - LOOP_CAP), `${caught} of ${n - LOOP_CAP}`);
});

Deno.test("fuzz tolerances catch an index off by one", () => {
  const x = Float32Array.from({ length: 65 }, (_, i) => Math.sin(i));
  const idx = Int32Array.from({ length: 65 }, (_, i) => (i * 17) % 65);
  const build = () => mj.tensor(x).gather(0, mj.tensor(idx)).exp();
  const shifted = () => Array.from(idx, (j) => Math.exp(x[Math.min(64, j + 1)]));
  assert.ok(judge(build, shifted, x).bad > 50);
});

Deno.test("fuzz shrinker reduces a failing program to the op that fails", async () => {
  // Pretend that softmax is wrong whenever its axis has 2 or more elements.
  const fails = (p: Program) => {
    const info = shapesOf(p);
    return Promise.resolve(
      live(p).some((i) => {
        const op = p.nodes[i];
        if (op.k !== "softmax") return false;
        const s = info[op.x].shape;
        return s[op.axis < 0 ? op.axis + s.length : op.axis] >= 2;
      }),
    );
  };
  let seed = 1;
  while (!(await fails(generate(seed))) || live(generate(seed)).length < 10) seed++;
  const r = await shrinkWith(generate(seed), fails);
  const p = r.program;
  assert.ok(await fails(p));
  const kinds = live(p).map((i) => p.nodes[i].k);
  assert.deepEqual(kinds, ["input", "softmax"], `seed ${seed}: shrunk to ${JSON.stringify(p)}`);
  const inputShape = shapesOf(p)[live(p)[0]].shape;
  assert.equal(inputShape.reduce((a, b) => a * b, 1), 2, `input shape ${inputShape}`);
});

Deno.test("fuzz shrinker keeps the kind of failure it started from", () => {
  const fail = (what: string, detail: string) =>
    ({ status: "fail", mode: DEFAULT_MODE, what, detail }) as const;
  const shader = (kernel: string) =>
    fail("webgpu threw", `ShaderError: WGSL compilation failed for kernel "${kernel}":\n…`);
  // The same bug at other sizes is the same kind; another exception or a mismatch is not.
  assert.equal(failureKind(shader("matmul → i32[17,9]")), failureKind(shader("matmul → i32[1,1]")));
  assert.notEqual(
    failureKind(shader("matmul → i32[1,1]")),
    failureKind(fail("webgpu threw", "MoejitError: gather: index 7 is out of range")),
  );
  assert.notEqual(
    failureKind(shader("x")),
    failureKind(fail("t3", "f32[2]: 1 of 2 elements differ")),
  );
  assert.equal(
    failureKind(fail("t3", "f32[2]: 1 of 2 elements differ")),
    failureKind(fail("grad of t0", "f32[7]: 7 of 7 elements differ")),
  );
  // An exception on the native backend is an exception too, not a mismatch.
  assert.notEqual(
    failureKind(fail("native threw", "MoejitError: gather: index 7 is out of range")),
    failureKind(fail("t3", "f32[2]: 1 of 2 elements differ")),
  );
});

Deno.test("fuzz seeds: the tier's defaults, or MOEJIT_FUZZ_SEED and MOEJIT_FUZZ_COUNT", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  assert.deepEqual(seedsFrom({ first: 1, count: 32 }, env({})), {
    first: 1,
    count: 32,
    chosen: false,
  });
  assert.deepEqual(
    seedsFrom({ first: 1, count: 32 }, env({ MOEJIT_FUZZ_SEED: "1234" })),
    { first: 1234, count: 1, chosen: true },
  );
  assert.deepEqual(
    seedsFrom({ first: 1, count: 32 }, env({ MOEJIT_FUZZ_SEED: "7", MOEJIT_FUZZ_COUNT: "500" })),
    { first: 7, count: 500, chosen: true },
  );
  assert.throws(
    () => seedsFrom({ first: 1, count: 32 }, env({ MOEJIT_FUZZ_SEED: "x" })),
    /MOEJIT_FUZZ_SEED=x is not a non-negative integer/,
  );
});

gpuTest(
  "fuzz snippet: runs on the interpreter and the compiled backend, and prints every root",
  async () => {
    // A small program with a runtime scalar (a number argument of the step under mj.jit).
    let seed = 1;
    while (!runtimeScalars(generate(seed)).length || generate(seed).dims.some((d) => d > 65)) {
      seed++;
    }
    const p = generate(seed);
    const root = new URL("../../", import.meta.url).href;
    for (const mode of [DEFAULT_MODE, { fusion: false, jit: true, grads: true }]) {
      const file = await Deno.makeTempFile({ prefix: "moejit-fuzz-", suffix: ".ts" });
      try {
        const code = snippet(p, { seed, mode, root, backend: backend() });
        if (mode.jit) assert.match(code, /mj\.jit\(\(xs: mj\.Tensor\[\], s: number\[\]\)/);
        await Deno.writeTextFile(file, code);
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", file],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const lines = text.trim().split("\n");
        const gradInputs = p.nodes.filter((op, i) =>
          op.k === "input" && op.dtype === "f32" && op.grad && live(p).includes(i)
        ).length;
        assert.equal(lines.length, p.outputs.length + 1 + gradInputs, text);
        for (const l of lines) {
          assert.match(l, new RegExp(`max \\|cpu − ${backend()}\\| = [0-9.e-]+ at flat index`));
        }
      } finally {
        await Deno.remove(file);
      }
    }
  },
);
