/**
 * User-facing errors: each names the op, what was given and what was expected, and points at
 * the line of the user's code that made the bad call, not at library internals.
 */
import * as mj from "../mod.ts";
import { assert } from "./helpers.ts";

const THIS_FILE = import.meta.url;
const SOURCE_LINES = Deno.readTextFileSync(new URL(import.meta.url)).split("\n");

/**
 * Runs `f` and checks the MoejitError it throws: the op, the message, and that both the
 * "at your call:" site and the first stack frame are in this file, on a line containing `call`.
 */
function expectUserError(f: () => unknown, op: string, re: RegExp, call: string): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof mj.MoejitError, `expected a MoejitError, got ${err}`);
  assert.ok(err instanceof Error);
  assert.equal(err.op, op);
  assert.ok(err.message.startsWith(`${op}: `), err.message);
  assert.match(err.message, re);

  const site = err.message.match(/\n\s*at your call: (\S+)$/)?.[1];
  assert.ok(site, `no call site in: ${err.message}`);
  assert.ok(site.startsWith(`${THIS_FILE}:`), `call site ${site} is not in this file`);
  const line = Number(site.slice(THIS_FILE.length + 1).split(":")[0]);
  assert.ok(
    SOURCE_LINES[line - 1]?.includes(call),
    `call site line ${line} (${SOURCE_LINES[line - 1]?.trim()}) does not contain ${call}`,
  );

  const stack = err.stack ?? "";
  // The stack repeats the message without its call-site line (runtimes print both).
  const head = err.message.replace(/\n\s*at your call: \S+$/, "");
  assert.ok(stack.startsWith(`MoejitError: ${head}\n`), stack);
  assert.ok(!stack.includes("at your call"), stack);
  const frames = stack.slice(`MoejitError: ${head}`.length).split("\n")
    .map((l) => l.trim()).filter((l) => l.startsWith("at "));
  assert.ok(frames.length > 0, stack);
  assert.ok(frames[0].includes(`${THIS_FILE}:${line}:`), `first frame: ${frames[0]}`);
  assert.ok(!/\/src\//.test(stack), `library frames left in the stack:\n${stack}`);
}

const x23 = () => mj.tensor([[1, 2, 3], [4, 5, 6]]);
const idx = (d: number[][]) => mj.tensor(d, undefined, { dtype: "i32" });

Deno.test("errors: shape mismatches name the op and both shapes", () => {
  const x = x23();
  expectUserError(
    () => x.add(mj.ones([4])),
    "add",
    /shapes \[2,3\] and \[4\] cannot be broadcast together; expected equal sizes or 1/,
    "x.add(mj.ones([4]))",
  );
  expectUserError(
    () => mj.mul(mj.ones([3, 2]), x),
    "mul",
    /shapes \[3,2\] and \[2,3\] cannot be broadcast/,
    "mj.mul(mj.ones([3, 2]), x)",
  );
  expectUserError(
    () => x.matmul(mj.ones([4, 5])),
    "matmul",
    /inner dimensions differ: f32\[2,3\] @ f32\[4,5\]; expected the left operand's last dim \(3\) to equal the right operand's second-to-last dim \(4\)/,
    "x.matmul(mj.ones([4, 5]))",
  );
  expectUserError(
    () => x.reshape([4]),
    "reshape",
    /cannot reshape f32\[2,3\] \(6 elements\) to \[4\] \(4 elements\); expected the same number of elements/,
    "x.reshape([4])",
  );
  expectUserError(
    () => x.broadcastTo([3, 3]),
    "broadcastTo",
    /cannot broadcast f32\[2,3\] to \[3,3\]/,
    "x.broadcastTo([3, 3])",
  );
  expectUserError(
    () => mj.concat([x, mj.ones([2, 2])], 0),
    "concat",
    /element 1 has shape \[2,2\], element 0 has \[2,3\]; expected equal shapes except along axis 0/,
    "mj.concat([x, mj.ones([2, 2])], 0)",
  );
  expectUserError(
    () => x.gather(1, idx([[0, 1]])),
    "gather",
    /index shape \[1,2\] does not fit f32\[2,3\] along axis 1; expected rank 2 and sizes equal to x's on every axis but 1/,
    "x.gather(1, idx([[0, 1]]))",
  );
});

Deno.test("errors: dtype mismatches name the op and both dtypes", () => {
  const x = x23();
  const i = mj.ones([2, 3], { dtype: "i32" });
  expectUserError(
    () => x.add(i),
    "add",
    /dtype mismatch: f32\[2,3\] and i32\[2,3\]; expected equal dtypes/,
    "x.add(i)",
  );
  expectUserError(
    () => x.matmul(i.transpose()),
    "matmul",
    /expected f32 operands, got f32\[2,3\] and i32\[3,2\]/,
    "x.matmul(i.transpose())",
  );
  expectUserError(
    () => i.exp(),
    "exp",
    /expected a float tensor, got i32\[2,3\]/,
    "i.exp()",
  );
  expectUserError(
    () => mj.where(x, 1, 0),
    "where",
    /expected a bool condition, got f32\[2,3\]/,
    "mj.where(x, 1, 0)",
  );
  expectUserError(
    () => x.gather(0, mj.zeros([1, 3])),
    "gather",
    /expected an i32 index tensor, got f32\[1,3\]/,
    "x.gather(0, mj.zeros([1, 3]))",
  );
  expectUserError(
    () => i.add(1.5),
    "add",
    /the number 1\.5 is not an integer, but the other operand is i32/,
    "i.add(1.5)",
  );
});

Deno.test({
  name: "errors: an unknown dtype name is a MoejitError naming the valid dtypes",
  fn() {
    expectUserError(
      () => x23().cast("f64" as mj.DType),
      "cast",
      /unknown dtype "f64"; expected one of f32, i32, u32, bool/,
      'x23().cast("f64" as mj.DType)',
    );
  },
});

Deno.test("errors: bad axes name the op, the axis and the valid range", () => {
  const x = x23();
  expectUserError(
    () => x.sum(3),
    "sum",
    /axis 3 is out of range for a tensor of rank 2 \(shape \[2,3\]\); expected an integer in -2\.\.1/,
    "x.sum(3)",
  );
  expectUserError(
    () => x.mean([0, -3]),
    "mean",
    /axis -3 is out of range for a tensor of rank 2 \(shape \[2,3\]\)/,
    "x.mean([0, -3])",
  );
  expectUserError(
    () => x.sum([1, -1]),
    "sum",
    /axis list \[1,-1\] repeats an axis/,
    "x.sum([1, -1])",
  );
  expectUserError(
    () => x.softmax(2),
    "softmax",
    /axis 2 is out of range for a tensor of rank 2/,
    "x.softmax(2)",
  );
  expectUserError(
    () => x.cumsum(1.5),
    "cumsum",
    /axis 1\.5 is out of range .* expected an integer in -2\.\.1/,
    "x.cumsum(1.5)",
  );
  expectUserError(
    () => mj.concat([x, x], 2),
    "concat",
    /axis 2 is out of range for a tensor of rank 2/,
    "mj.concat([x, x], 2)",
  );
  expectUserError(
    () => x.squeeze(0),
    "squeeze",
    /axis 0 of f32\[2,3\] has size 2, not 1/,
    "x.squeeze(0)",
  );
  expectUserError(
    () => x.permute([0, 0]),
    "permute",
    /\[0,0\] is not a permutation \(an axis repeats\)/,
    "x.permute([0, 0])",
  );
});

Deno.test("errors: unknown options name the option and the expected ones", () => {
  const x = x23();
  expectUserError(
    () => mj.tensor([1, 2], undefined, { dtyp: "f32" } as { dtype?: mj.DType }),
    "tensor",
    /unknown option "dtyp"; expected dtype/,
    "mj.tensor([1, 2], undefined, { dtyp:",
  );
  expectUserError(
    () => x.cumsum(0, { revers: true } as { reverse?: boolean }),
    "cumsum",
    /unknown option "revers"; expected reverse or exclusive/,
    "x.cumsum(0, { revers: true }",
  );
  expectUserError(
    () => mj.rand([2], { sed: 1 } as { seed?: number }),
    "rand",
    /unknown option "sed"; expected seed, key, dtype/,
    "mj.rand([2], { sed: 1 }",
  );
  expectUserError(
    () => mj.valueAndGrad((a: mj.Tensor) => a.sum(), { has_aux: true } as { hasAux?: false }),
    "valueAndGrad",
    /unknown option "has_aux"; expected hasAux/,
    "mj.valueAndGrad((a: mj.Tensor) => a.sum(), { has_aux: true }",
  );
  expectUserError(
    () => x.gelu("fast" as "tanh"),
    "gelu",
    /unknown approximate "fast"; expected "none" or "tanh"/,
    'x.gelu("fast" as "tanh")',
  );
});

Deno.test("errors: grad of a non-scalar names the shape given and the one expected", () => {
  const x = x23();
  expectUserError(
    () => mj.grad((a: mj.Tensor) => a.mul(2))(x),
    "grad",
    /f must return a scalar float Tensor \(shape \[\] or one element\), got f32\[2,3\]; reduce it first/,
    "mj.grad((a: mj.Tensor) => a.mul(2))(x)",
  );
  expectUserError(
    () => mj.grad((a: mj.Tensor) => a.sum().cast("i32"))(x),
    "grad",
    /f must return a scalar float Tensor \(shape \[\] or one element\), got i32\[\]/,
    'mj.grad((a: mj.Tensor) => a.sum().cast("i32"))(x)',
  );
  expectUserError(
    () => mj.grad((() => 3) as unknown as (a: mj.Tensor) => mj.Tensor)(x),
    "grad",
    /f must return a scalar Tensor, got number/,
    "mj.grad((() => 3) as unknown",
  );
  expectUserError(
    () =>
      mj.valueAndGrad((a: mj.Tensor) => [a.sum()] as unknown as [mj.Tensor, 0], { hasAux: true })(
        x,
      ),
    "valueAndGrad",
    /with hasAux, f must return \[loss, aux\]/,
    "mj.valueAndGrad((a: mj.Tensor) => [a.sum()]",
  );
});

Deno.test("errors: inside a function given to grad, the site is the bad line in that function", () => {
  const x = x23();
  expectUserError(
    () =>
      mj.grad((a: mj.Tensor) => {
        const h = a.exp();
        return h.matmul(a).sum(); // [2,3] @ [2,3]
      })(x),
    "matmul",
    /inner dimensions differ: f32\[2,3\] @ f32\[2,3\]/,
    "return h.matmul(a).sum();",
  );
});

Deno.test("errors: raised deep inside the backward sweep, the site is still the user's call", () => {
  // The check runs a dozen frames down (grad → backward → custom backward → callbacks), past
  // V8's default stack depth of 10.
  const bad = mj.customVjp({
    name: "test.errors.badShape",
    fwd: (a: mj.Tensor) => a.mul(2),
    bwd: (_s, g) => [g.sum()],
  });
  const run = (fn: () => unknown) => [1].map(() => [2].map(() => fn()));
  expectUserError(
    () => run(() => mj.grad((a: mj.Tensor) => bad(a).sum())(x23())),
    "customVjp",
    /bwd returned f32\[\] for argument 0, expected f32\[2,3\]/,
    "mj.grad((a: mj.Tensor) => bad(a).sum())(x23())",
  );
});

Deno.test("errors: MOEJIT_DEBUG keeps the library frames", () => {
  const prev = Deno.env.get("MOEJIT_DEBUG");
  Deno.env.set("MOEJIT_DEBUG", "1");
  try {
    const err = (() => {
      try {
        x23().sum(3);
      } catch (e) {
        return e as Error;
      }
    })();
    assert.ok(err instanceof mj.MoejitError);
    assert.match(err.stack ?? "", /\/src\/ops\//);
    // The message still names the user's call.
    assert.match(err.message, new RegExp(`at your call: ${THIS_FILE.replace(/[.]/g, "\\.")}:`));
  } finally {
    if (prev === undefined) Deno.env.delete("MOEJIT_DEBUG");
    else Deno.env.set("MOEJIT_DEBUG", prev);
  }
});
