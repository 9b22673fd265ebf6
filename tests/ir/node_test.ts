/**
 * The graph IR: interned nodes with content (Merkle) keys, the SSA printer, graph walks, and the
 * op registry's shape/dtype rules that keep inconsistent nodes from ever existing.
 */
import * as mj from "../../mod.ts";
import { consumers, toposort } from "../../src/ir/graph.ts";
import { argText, internedCount, makeNode, type Node } from "../../src/ir/node.ts";
import { type Category, categoryOf, IDENTITY_OPS, type OpName, OPS } from "../../src/ir/ops.ts";
import { printGraph } from "../../src/ir/print.ts";
import { VJP_RULES } from "../../src/autodiff/vjp.ts";
import { assert } from "../helpers.ts";

const i32 = (data: number[][]) => mj.tensor(data, undefined, { dtype: "i32" });

// ---- interning and keys --------------------------------------------------------------------

Deno.test("interning: the same expression built twice is the same node with the same key", () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  const build = () => x.mul(2).add(1).exp().sum(0).softmax(-1);
  const a = build(), b = build();
  assert.equal(a.node, b.node);
  assert.equal(a.node.key, b.node.key);
  // Front-end spellings that mean the same primitives intern to the same node, too.
  assert.equal(mj.add(mj.mul(x, 2), 1).node, x.mul(2).add(1).node);
  assert.equal(x.transpose().node, x.permute([1, 0]).node);
  assert.equal(x.swapAxes(0, 1).node, x.permute([1, 0]).node);
});

Deno.test("interning: the build order of independent branches does not matter", () => {
  const x = mj.tensor([1, 2, 3]);
  const g1 = (() => {
    const a = x.exp();
    const b = x.sin();
    return a.add(b);
  })();
  const g2 = (() => {
    const b = x.sin();
    const a = x.exp();
    return a.add(b);
  })();
  assert.equal(g1.node, g2.node);
});

Deno.test("keys: different constants, ops or arguments give different keys", () => {
  const x = mj.tensor([[1, 2], [3, 4]]);
  const variants = [
    x.mul(2),
    x.mul(3),
    x.add(2),
    x.sub(2),
    x.mul(2).exp(),
    x.sum(0),
    x.sum(1),
    x.sum(0, true),
    x.max(0),
    x.cumsum(0),
    x.cumsum(0, { reverse: true }),
    x.cumsum(0, { exclusive: true }),
    x.permute([1, 0]),
    x.pad([[1, 0], [0, 0]]),
    x.pad([[1, 0], [0, 0]], 1),
    x.reshape([4]),
    x.reshape([4, 1]),
    mj.full([2, 2], 0),
    mj.full([2, 2], -0),
    mj.full([2, 2], 0, { dtype: "i32" }),
    mj.full([2, 2], NaN),
    mj.full([2, 2], Infinity),
    mj.full([2, 2], -Infinity),
  ];
  const keys = variants.map((t) => t.node.key);
  assert.equal(new Set(keys).size, keys.length, "every variant has its own key");
  assert.equal(new Set(variants.map((t) => t.node)).size, variants.length);
  // NaN constants are equal for interning even though NaN !== NaN.
  assert.equal(mj.full([2], NaN).node, mj.full([2], NaN).node);
});

Deno.test("keys: content-based, computed over the whole sub-graph", () => {
  const x = mj.tensor([1, 2, 3]);
  // A different leaf below changes every key above it (a Merkle key).
  const y = mj.tensor([1, 2, 3]);
  assert.notEqual(x.node.key, y.node.key, "buffers are identities, not their data");
  assert.notEqual(x.mul(2).exp().node.key, y.mul(2).exp().node.key);
  // Keys are short, printable and stable in form.
  assert.match(x.exp().node.key, /^[0-9a-z]{22}$/);
  // The key depends on content only: argument objects with reordered fields are one node.
  const n = x.node;
  const s1 = makeNode("slice", [n], { starts: [1], ends: [3] });
  const s2 = makeNode("slice", [n], { ends: [3], starts: [1] });
  assert.equal(s1, s2);
  assert.equal(s1.key, x.slice([[1, 3]]).node.key);
});

Deno.test("keys: makeNode copies and freezes its arguments, never the caller's", () => {
  const x = mj.tensor([1, 2, 3, 4]);
  const shape = [2, 2];
  const n = makeNode("reshape", [x.node], { shape });
  shape.push(1); // the caller's array stays mutable...
  assert.deepEqual(n.arg.shape, [2, 2]); // ...and the node does not see the change
  assert.ok(Object.isFrozen(n.arg) && Object.isFrozen(n.arg.shape) && Object.isFrozen(n.shape));
  assert.ok(Object.isFrozen(n.src));
});

Deno.test("interning: building a node again does not grow the table", () => {
  const x = mj.tensor([1, 2]);
  const build = () => x.mul(7).add(x.mul(7).exp());
  const keep = build();
  const before = internedCount();
  for (let i = 0; i < 50; i++) assert.equal(build().node, keep.node);
  assert.equal(internedCount(), before);
});

Deno.test("argText: stable text for op arguments", () => {
  assert.equal(argText({ b: [1, 2], a: "s", c: true }), '{a:"s",b:[1,2],c:true}');
  assert.equal(argText([NaN, Infinity, -Infinity, -0, 0]), "[NaN,Inf,-Inf,-0,0]");
  assert.equal(argText(null), "");
});

// ---- printer ----------------------------------------------------------------------------------

Deno.test("printer: SSA text, one node per line, sources first", () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  const y = x.mul(2).add(1);
  const id = (x.node.arg as { id: number }).id;
  assert.equal(
    mj.debug.graph(y),
    [
      `%0 = buffer[id=${id}] : f32[2,3]`,
      "%1 = const[value=2] : f32[2,3]",
      "%2 = mul %0, %1 : f32[2,3]",
      "%3 = const[value=1] : f32[2,3]",
      "%4 = add %2, %3 : f32[2,3]",
    ].join("\n"),
  );
});

Deno.test("printer: several roots, shared nodes printed once, op arguments shown", () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  const e = x.exp();
  const text = mj.debug.graph([e.add(e), x.sum(0), x.gather(1, i32([[0], [2]])), x.cast("i32")]);
  const lines = text.split("\n");
  assert.equal(lines.filter((l) => / = exp /.test(l)).length, 1);
  assert.ok(lines.includes("%1 = exp %0 : f32[2,3]"), text);
  assert.ok(lines.includes("%2 = add %1, %1 : f32[2,3]"), text);
  assert.ok(lines.includes('%3 = reduce[axes=[0], op="sum"] %0 : f32[1,3]'), text);
  assert.ok(lines.includes("%4 = reshape %3 : f32[3]"), text);
  assert.ok(lines.some((l) => /^%6 = checkIndex\[size=3\] %5 : i32\[2,1\]$/.test(l)), text);
  assert.ok(lines.some((l) => /^%7 = gather\[axis=1\] %0, %6 : f32\[2,1\]$/.test(l)), text);
  assert.ok(lines.includes('%8 = cast[dtype="i32"] %0 : i32[2,3]'), text);
  assert.equal(lines[lines.length - 1], "return %2, %4, %7, %8");
  // Every operand is defined on an earlier line.
  lines.forEach((l, i) => {
    for (const [, k] of l.matchAll(/ %(\d+)(?=[,\s]|$)/g)) {
      if (!l.startsWith("return")) assert.ok(Number(k) < i, `line ${i} uses %${k}: ${l}`);
    }
  });
  // The object and array forms of mj.debug.graph agree with the printer.
  assert.equal(mj.debug.graph({ a: e }), printGraph([e.node]));
});

// ---- graph walks --------------------------------------------------------------------------------

Deno.test("toposort: sources first, each node once, deterministic", () => {
  const x = mj.tensor([1, 2, 3]), w = mj.tensor([3, 2, 1]);
  const h = x.mul(w).exp();
  const out = h.add(h.sin()).mul(x).sum();
  const order = toposort([out.node]);
  const pos = new Map(order.map((n, i) => [n, i]));
  assert.equal(pos.size, order.length, "no duplicates");
  for (const n of order) for (const s of n.src) assert.ok(pos.get(s)! < pos.get(n)!);
  assert.equal(order[order.length - 1], out.node);
  assert.deepEqual(toposort([out.node]), order);
  // Sources are visited left to right, depth first.
  assert.equal(order[0], x.node);
  assert.equal(order[1], w.node);
});

Deno.test("toposort: stop prunes below a node but keeps the node", () => {
  const x = mj.tensor([1, 2]);
  const mid = x.exp().sin();
  const top = mid.mul(mid).neg();
  const order = toposort([top.node], (n) => n === mid.node);
  assert.ok(order.includes(mid.node));
  assert.ok(!order.includes(x.node));
  assert.ok(!order.includes(x.exp().node));
});

Deno.test("toposort: deep graphs do not hit the stack limit", () => {
  let t = mj.tensor([1]);
  for (let i = 0; i < 20000; i++) t = t.add(i % 7);
  const order = toposort([t.node]);
  assert.ok(order.length > 20000);
  assert.equal(order[order.length - 1], t.node);
});

Deno.test("consumers: users listed with multiplicity", () => {
  const x = mj.tensor([1, 2]);
  const sq = x.mul(x);
  const order = toposort([sq.add(x).node]);
  const users = consumers(order);
  assert.equal(users.get(x.node)!.length, 3);
  assert.deepEqual(users.get(sq.add(x).node), []);
});

// ---- the op registry -----------------------------------------------------------------------------

Deno.test("registry: 40+ primitives, each with a category, an arity and an infer rule", () => {
  const names = Object.keys(OPS) as OpName[];
  assert.ok(names.length >= 40, `only ${names.length} primitives`);
  const categories: Category[] = [
    "leaf",
    "unary",
    "binary",
    "ternary",
    "reduce",
    "movement",
    "routine",
    "random",
    "meta",
  ];
  for (const op of names) {
    const def = OPS[op];
    assert.ok(categories.includes(def.category), `${op}: category ${def.category}`);
    assert.equal(categoryOf(op), def.category);
    assert.equal(typeof def.infer, "function", `${op}: infer`);
    assert.ok(Number.isInteger(def.arity) && def.arity >= -1, `${op}: arity ${def.arity}`);
    if (def.category === "leaf") assert.equal(def.arity, 0, op);
    if (def.category === "unary") assert.equal(def.arity, 1, op);
    if (def.category === "binary") assert.equal(def.arity, 2, op);
  }
  // Every category is used, and every primitive has a VJP rule (null rules included).
  assert.deepEqual([...new Set(names.map(categoryOf))].sort(), [...categories].sort());
  assert.deepEqual(Object.keys(VJP_RULES).sort(), [...names].sort());
  for (const op of IDENTITY_OPS) assert.equal(OPS[op].category, "meta");
});

Deno.test("registry: infer rules give the result shape and dtype", () => {
  const x = mj.tensor([[1, 2, 3], [4, 5, 6]]);
  const cases: [mj.Tensor, number[], mj.DType][] = [
    [x.lt(2), [2, 3], "bool"],
    [x.sum(1, true), [2, 1], "f32"],
    [x.matmul(x.transpose()), [2, 2], "f32"],
    [x.topk(2).indices, [2, 2], "i32"],
    [x.pad([[1, 2], [0, 1]]), [5, 4], "f32"],
    [x.slice([null, [1, 3]]), [2, 2], "f32"],
    [mj.scatterAdd(x, 1, i32([[0, 1, 1], [2, 0, 3]]), [2, 4]), [2, 4], "f32"],
    [x.cast("u32"), [2, 3], "u32"],
  ];
  for (const [t, shape, dtype] of cases) {
    assert.deepEqual(t.shape, shape, mj.debug.graph(t));
    assert.equal(t.dtype, dtype);
  }
});

Deno.test("makeNode: inconsistent sources are an internal invariant error", () => {
  // Not constants: the front end folds some ops on constants.
  const f23 = mj.ones([2, 3]).exp().node;
  const f32t = mj.ones([3, 2]).exp().node;
  const i23 = mj.ones([2, 3], { dtype: "i32" }).neg().node;
  const b23 = mj.ones([2, 3]).exp().gt(1).node;
  const cases: [string, () => Node, RegExp][] = [
    [
      "add shapes",
      () => makeNode("add", [f23, f32t], null),
      /in add: operands differ: f32\[2,3\] vs f32\[3,2\]/,
    ],
    [
      "mul dtypes",
      () => makeNode("mul", [f23, i23], null),
      /in mul: operands differ: f32\[2,3\] vs i32\[2,3\]/,
    ],
    ["arity", () => makeNode("add", [f23], null), /in add: 1 sources, expected 2/],
    [
      "float-only unary",
      () => makeNode("exp", [i23], null),
      /in exp: needs a float operand, got i32\[2,3\]/,
    ],
    [
      "where condition",
      () => makeNode("where", [f23, f23, f23], null),
      /in where: condition must be bool/,
    ],
    ["where branches", () => makeNode("where", [b23, f23, i23], null), /in where: operands differ/],
    ["reshape size", () => makeNode("reshape", [f23], { shape: [4] }), /in reshape: size changes/],
    [
      "expand rank",
      () => makeNode("expand", [f23], { shape: [1, 2, 3] }),
      /in expand: rank changes/,
    ],
    ["expand non-1", () => makeNode("expand", [f23], { shape: [4, 3] }), /in expand: non-1 dim/],
    ["matmul inner", () => makeNode("matmul", [f23, f23], null), /in matmul: inner dims/],
    [
      "matmul rank",
      () => makeNode("matmul", [f23, mj.ones([2, 3, 2]).exp().node], null),
      /in matmul: rank/,
    ],
    [
      "gather index",
      () => makeNode("gather", [f23, f23], { axis: 0 }),
      /in gather: index must be i32/,
    ],
    [
      "gather axis",
      () => makeNode("gather", [f23, i23], { axis: 2 }),
      /in gather: axis 2 is not in 0\.\.1/,
    ],
    ["reduce axis", () => makeNode("reduce", [f23], { op: "sum", axes: [2] }), /in reduce: axis 2/],
    [
      "reduce repeated",
      () => makeNode("reduce", [f23], { op: "sum", axes: [1, 1] }),
      /in reduce: repeated axis/,
    ],
    [
      "permute",
      () => makeNode("permute", [f23], { perm: [0, 0] }),
      /in permute: \[0,0\] is not a permutation of 2 axes/,
    ],
    [
      "slice range",
      () => makeNode("slice", [f23], { starts: [0, 2], ends: [2, 4] }),
      /in slice: range \[2, 4\) does not fit axis 1 of size 3/,
    ],
    [
      "slice rank",
      () => makeNode("slice", [f23], { starts: [0], ends: [1] }),
      /in slice: 1 ranges for a source of rank 2/,
    ],
    [
      "pad rank",
      () => makeNode("pad", [f23], { pads: [[1, 1]], value: 0 }),
      /in pad: one pair per axis/,
    ],
    [
      "pad negative",
      () => makeNode("pad", [f23], { pads: [[0, 0], [-1, 0]], value: 0 }),
      /in pad: pads must be integers >= 0/,
    ],
    [
      "scatterAdd",
      () => makeNode("scatterAdd", [f23, i23], { axis: 1, shape: [3, 3] }),
      /in scatterAdd: non-axis dims/,
    ],
    [
      "topk k",
      () => makeNode("topk", [f23], { k: 4 }),
      /in topk: k = 4 for a source of shape \[2,3\]/,
    ],
    [
      "cumsum axis",
      () => makeNode("cumsum", [f23], { axis: -1, reverse: false, exclusive: false }),
      /in cumsum: axis -1/,
    ],
    [
      "custom sources",
      () =>
        makeNode("custom", [f23], {
          name: "x",
          index: 0,
          nOut: 1,
          nIn: 1,
          nSaved: 0,
          group: "g",
          estimator: false,
        }),
      /in custom: 1 sources, expected 1 \+ 1 \+ 0/,
    ],
  ];
  for (const [name, build, re] of cases) {
    assert.throws(build, (e: unknown) => {
      assert.ok(e instanceof Error, name);
      // An IR invariant is a library bug, not a user error: it must not look like one.
      assert.ok(!(e instanceof mj.MoejitError), `${name}: should not be a MoejitError`);
      assert.match(e.message, /^IR invariant violated in /, name);
      assert.match(e.message, re, name);
      return true;
    }, name);
  }
});
