/**
 * Elementwise ops on WebGPU against the interpreter: every unary and binary op in every dtype it
 * accepts, odd shapes, size-1 dims, scalars, broadcasting both ways, non-contiguous (permuted)
 * operands, and the special values the semantics pin down (NaN, ±inf, -0, integer wraparound,
 * division by zero, saturating casts).
 */
import { anyOf, bool, check, f32, gpuTest, i32, type Input, mj, u32, vals } from "./harness.ts";
import type { DType } from "../../src/dtype.ts";

const NUMERIC: DType[] = ["f32", "i32", "u32"];

/**
 * Float tolerance for transcendental functions: llvmpipe's exp/log/sin/cos/pow are a few ulps
 * from correctly rounded JS Math (WGSL only bounds them at 3 ulps + 2 for exp/pow's
 * argument reduction), so 4e-6 relative plus a small absolute floor near zero crossings.
 */
const TRANS = { rtol: 4e-6, atol: 2e-6 };

gpuTest("unary float ops on odd shapes (incl. size-1 dims and scalars)", async (t) => {
  const shapes = [[7, 13], [1, 13], [129], []];
  const any = shapes.map((s, i) => f32(s, 10 + i, -4, 4));
  const pos = shapes.map((s, i) => f32(s, 20 + i, 0.01, 9));
  const ops: [string, (x: mj.Tensor) => mj.Tensor, Input[], object?][] = [
    ["neg", (x) => x.neg(), any, { exact: true }],
    ["abs", (x) => x.abs(), any, { exact: true }],
    ["floor", (x) => x.floor(), any, { exact: true }],
    ["sign", (x) => x.sign(), any, { exact: true }],
    ["relu", (x) => x.relu(), any, { exact: true }],
    ["exp", (x) => x.exp(), any, TRANS],
    ["log", (x) => x.log(), pos, TRANS],
    ["sqrt", (x) => x.sqrt(), pos, TRANS],
    ["rsqrt", (x) => x.rsqrt(), pos, TRANS],
    ["reciprocal", (x) => x.reciprocal(), any, TRANS],
    ["sin", (x) => x.sin(), any, TRANS],
    ["cos", (x) => x.cos(), any, TRANS],
    ["tanh", (x) => x.tanh(), any, TRANS],
    // A&S 7.1.26 on the GPU: |error| < 1.5e-7 plus f32 rounding of the polynomial.
    ["erf", (x) => x.erf(), any, { rtol: 0, atol: 5e-7 }],
    ["sigmoid", (x) => x.sigmoid(), any, TRANS],
    ["silu", (x) => x.silu(), any, TRANS],
    ["softplus", (x) => x.softplus(), any, TRANS],
    ["gelu (erf)", (x) => x.gelu(), any, { rtol: 4e-6, atol: 2e-6 }],
    ["gelu (tanh)", (x) => x.gelu("tanh"), any, TRANS],
    ["square", (x) => x.square(), any],
    ["clip", (x) => x.clip(-0.5, 0.75), any, { exact: true }],
    ["cast f32→f32", (x) => x.cast("f32"), any, { exact: true }],
  ];
  for (const [name, op, inputs, o] of ops) {
    await t.step(name, async () => {
      for (const x of inputs) {
        await check(`${name} ${JSON.stringify(x.shape)}`, () => op(x()), {
          fusion: x.shape.length === 1 ? "both" : "fused",
          ...o,
        });
      }
    });
  }
});

gpuTest("unary float ops on special values (NaN, ±inf, ±0, huge, tiny)", async () => {
  const sp = [NaN, Infinity, -Infinity, 0, -0, 1e30, -1e30, 1e-30, -1e-30, 88.8, -104, 1, -1, 0.5];
  const x = vals(sp);
  const xPos = vals(sp.map(Math.abs));
  await check("specials", () => {
    const a = x(), p = xPos();
    return {
      neg: a.neg(),
      abs: a.abs(),
      floor: a.floor(),
      sign: a.sign(),
      relu: a.relu(),
      exp: a.exp(),
      log: p.log(),
      sqrt: p.sqrt(),
      recip: a.reciprocal(),
      tanh: a.tanh(),
      erf: a.erf(),
      sigmoid: a.sigmoid(),
      softplus: a.softplus(),
      isnan: a.isnan(),
      clip: a.clip(-2, 3),
    };
  }, {
    per: {
      neg: { exact: true },
      abs: { exact: true },
      floor: { exact: true },
      sign: { exact: true },
      relu: { exact: true },
      clip: { exact: true },
      exp: TRANS,
      log: TRANS,
      sqrt: TRANS,
      tanh: TRANS,
      sigmoid: TRANS,
      softplus: TRANS,
      erf: { rtol: 0, atol: 5e-7 },
    },
  });
});

gpuTest("binary arithmetic in every numeric dtype, broadcasting both ways", async (t) => {
  const pairs: [number[], number[]][] = [
    [[7, 13], [7, 13]],
    [[7, 1], [1, 13]], // both sides broadcast
    [[13], [7, 13]], // rank extension on the left
    [[3, 1, 5], [1]],
    [[], [7, 13]], // scalar with a matrix
    [[1, 1], [1, 1]],
  ];
  for (const dt of NUMERIC) {
    await t.step(dt, async () => {
      for (const [sa, sb] of pairs) {
        const a = anyOf(dt, sa, 31), b = anyOf(dt, sb, 32);
        // Divisors away from zero for floats (the x/0 cases are tested on their own).
        const d = dt === "f32"
          ? f32(sb, 33, 0.5, 3)
          : dt === "i32"
          ? i32(sb, 34, -9, 9)
          : u32(sb, 35, 0, 9);
        await check(`${dt} ${JSON.stringify(sa)} ∘ ${JSON.stringify(sb)}`, () => {
          const x = a(), y = b(), z = d();
          return {
            add: x.add(y),
            sub: x.sub(y),
            mul: x.mul(y),
            div: x.div(z),
            rdiv: y.div(x.add(dt === "f32" ? 4 : 0)),
            max: x.maximum(y),
            min: mj.minimum(y, x),
            lt: x.lt(y),
            le: x.le(y),
            gt: x.gt(y),
            ge: x.ge(y),
            eq: x.eq(y),
            ne: x.ne(y),
            num: x.mul(3).sub(mj.add(2, y)),
          };
        }, {
          fusion: sa.length === 2 && sb.length === 2 && sa[0] === 7 ? "both" : "fused",
          // WGSL allows 2.5 ulp for f32 division, plus the oracle's own rounding.
          per: { div: { rtol: 4e-7, atol: 0 }, rdiv: { rtol: 4e-7, atol: 0 } },
          exact: false,
          rtol: 1e-6,
        });
      }
    });
  }
});

gpuTest("integer ops: wraparound, division and mod by zero, bitwise logic", async () => {
  const big = [2147483647, -2147483648, -1, 0, 1, 123456789, -987654321, 65536, 46341, -7, 7, 3];
  const other = [1, -1, 2, 0, 0, 100000, 3, 65536, 46341, 2, -2, 0];
  const ai = vals(big, "i32"), bi = vals(other, "i32");
  const au = vals(big, "u32"), bu = vals(other, "u32");
  await check("i32 edge cases", () => {
    const a = ai(), b = bi();
    return {
      add: a.add(b),
      sub: a.sub(b),
      mul: a.mul(b),
      div: a.div(b),
      mod: a.mod(b),
      neg: a.neg(),
      abs: a.abs(),
      sign: a.sign(),
      max: a.maximum(b),
      min: a.minimum(b),
      and: a.logicalAnd(b),
      or: a.logicalOr(b),
      xor: a.logicalXor(b),
      not: a.logicalNot(),
      lt: a.lt(b),
      clip: a.clip(-1000, 1000),
      toU: a.cast("u32"),
      toF: a.cast("f32"),
      toB: a.cast("bool"),
    };
  });
  await check("u32 edge cases", () => {
    const a = au(), b = bu();
    return {
      add: a.add(b),
      sub: a.sub(b),
      mul: a.mul(b),
      div: a.div(b),
      mod: a.mod(b),
      neg: a.neg(),
      abs: a.abs(),
      sign: a.sign(),
      max: a.maximum(b),
      min: a.minimum(b),
      and: a.logicalAnd(b),
      or: a.logicalOr(b),
      xor: a.logicalXor(b),
      not: a.logicalNot(),
      lt: a.lt(b),
      clip: a.clip(5, 123456789),
      toI: a.cast("i32"),
      toF: a.cast("f32"),
      toB: a.cast("bool"),
    };
  });
  // Random operands with broadcasting, incl. negative dividends and divisors (truncation).
  for (const dt of ["i32", "u32"] as const) {
    const a = dt === "i32" ? i32([7, 13], 41, -1000, 1000) : u32([7, 13], 41, 0, 5000);
    const b = dt === "i32" ? i32([1, 13], 42, -12, 12) : u32([1, 13], 42, 0, 12);
    await check(`${dt} div/mod (zero divisors included)`, () => {
      const x = a(), y = b();
      return { div: x.div(y), mod: x.mod(y), rmod: mj.mod(y, x.add(1)) };
    });
  }
});

gpuTest("float division by zero, pow special cases, NaN through max/min", async () => {
  // JS Math.pow's special cases (the interpreter's), and signed zeros for maximum/minimum.
  const a = [
    1,
    -1,
    0,
    -0,
    NaN,
    Infinity,
    -2,
    -2,
    -2,
    -8,
    0,
    0,
    2,
    -0.5,
    3,
    NaN,
    1,
    -Infinity,
    -0,
    -0,
    -0,
    -0,
    -2,
    -0.5,
    -Infinity,
    -Infinity,
    -Infinity,
    Infinity,
    -1,
    0.5,
    2,
    0,
    -0,
    1e30,
    -3,
  ];
  const b = [
    0,
    0,
    0,
    0,
    1,
    0,
    3,
    2,
    0.5,
    1 / 3,
    -1,
    2,
    -2,
    -3,
    NaN,
    0,
    Infinity,
    3,
    3,
    -1,
    -2,
    0.5,
    Infinity,
    -Infinity,
    3,
    -3,
    0.5,
    -1,
    -Infinity,
    Infinity,
    -Infinity,
    -0,
    0,
    2,
    1e30,
  ];
  const x = vals(a), y = vals(b);
  await check("div/pow/max/min specials", () => {
    const p = x(), q = y();
    return {
      div: p.div(q),
      pow: p.pow(q),
      max: p.maximum(q),
      min: p.minimum(q),
      lt: p.lt(q),
      eq: p.eq(q),
      ne: p.ne(q),
      isnan: p.isnan(),
    };
  }, { per: { pow: TRANS, max: { exact: true }, min: { exact: true } } });
  // pow with negative bases and integer exponents keeps the sign; non-integer gives NaN.
  const base = f32([7, 13], 51, -3, 3);
  const ex = vals([-3, -2, -1, 0, 1, 2, 3, 4, 5, 0.5, -0.5, 1.5, 2.25], "f32", [1, 13]);
  await check("pow broadcast with negative bases", () => base().pow(ex()), TRANS);
  await check("pow with a number exponent", () => ({
    cube: base().pow(3),
    sq: mj.pow(base(), 2),
    inv: base().abs().add(0.1).pow(-1.5),
    rev: mj.pow(2, base()),
  }), TRANS);
});

gpuTest("comparisons and logic on every dtype they accept", async () => {
  for (const dt of ["i32", "u32", "bool"] as const) {
    const a = anyOf(dt, [7, 13], 61), b = anyOf(dt, [1, 13], 62);
    await check(`logic ${dt}`, () => {
      const x = a(), y = b();
      return {
        and: x.logicalAnd(y),
        or: mj.logicalOr(x, y),
        xor: x.logicalXor(y),
        not: x.logicalNot(),
        eq: x.eq(y),
        ne: x.ne(y),
      };
    });
  }
  // Comparisons against plain numbers, incl. -0 == 0 and NaN never equal.
  const f = vals([0, -0, NaN, 1, -1, Infinity, -Infinity, 0.5]);
  await check("comparisons with numbers", () => {
    const x = f();
    return { eq0: x.eq(0), ne0: x.ne(0), lt: x.lt(0.5), le: x.le(0.5), gt: x.gt(-1), ge: x.ge(1) };
  });
});

gpuTest("where: every branch dtype, broadcast condition and branches", async () => {
  for (const dt of ["f32", "i32", "u32", "bool"] as const) {
    const c = bool([7, 1], 71), a = anyOf(dt, [1, 13], 72), b = anyOf(dt, [7, 13], 73);
    await check(`where ${dt}`, () => ({
      w: mj.where(c(), a(), b()),
      scalar: mj.where(c(), a(), dt === "bool" ? true : 5),
      computed: dt === "bool" ? mj.where(a(), b(), c()) : mj.where(a().lt(b()), b(), a()),
    }), { exact: true });
  }
});

gpuTest("casts between all dtypes, incl. saturation, NaN → 0 and -0", async () => {
  const fs = [
    NaN,
    Infinity,
    -Infinity,
    0,
    -0,
    0.7,
    -0.7,
    1.5,
    -1.5,
    2147483520,
    2147483648,
    3e9,
    -2147483648,
    -3e9,
    4294967040,
    4294967296,
    1e20,
    -1e-20,
    123456.789,
  ];
  const x = vals(fs);
  await check("f32 → *", () => {
    const v = x();
    return { i: v.cast("i32"), u: v.cast("u32"), b: v.cast("bool") };
  });
  for (const dt of ["i32", "u32", "bool"] as const) {
    const v = anyOf(dt, [7, 13], 81);
    await check(`${dt} → *`, () => {
      const t = v();
      return {
        f: t.cast("f32"),
        i: t.cast("i32"),
        u: t.cast("u32"),
        b: t.cast("bool"),
        // Through f32 and back: large ints round to f32 first.
        round: t.cast("f32").mul(1).cast(dt),
      };
    }, { exact: true });
  }
  // int → f32 rounding of values above 2^24.
  const big = vals([16777217, 2147483647, -2147483647, 33554435, -16777219], "i32");
  await check("i32 → f32 rounding", () => big().cast("f32"), { exact: true });
  const bigU = vals([4294967295, 16777217, 3000000001], "u32");
  await check("u32 → f32 rounding", () => bigU().cast("f32"), { exact: true });
});

gpuTest("fused chains over permuted and broadcast operands", async () => {
  const a = f32([5, 7, 3], 91), b = f32([3, 7], 92), c = f32([7], 93, 0.5, 2);
  await check("permute + broadcast chain", () => {
    const x = a().permute([2, 1, 0]); // [3, 7, 5]
    const y = b().reshape([3, 7, 1]);
    return x.mul(y).add(c().reshape([1, 7, 1])).tanh().mul(
      x.transpose([0, 2, 1]).transpose([0, 2, 1]),
    );
  }, TRANS);
  await check("shared subexpressions, several outputs", () => {
    const x = a(), s = x.sigmoid();
    return { s, g: s.mul(x).add(s.square()), h: x.exp().div(s.add(1)) };
  }, TRANS);
  await check("size-0 tensors", () => {
    const e = mj.zeros([0, 3]).add(mj.tensor(new Float32Array(0), [0, 3]));
    return { e, i: mj.zeros([3, 0], { dtype: "i32" }).add(1) };
  });
});

gpuTest("kernels that would bind more buffers than the device allows are split", async () => {
  // 40 inputs in one expression: llvmpipe allows 32 storage buffers per stage.
  const xs = Array.from({ length: 40 }, (_, i) => f32([3, 5], 200 + i));
  const w = f32([5, 5], 250);
  await check("40 inputs", () => {
    const ts = xs.map((x) => x());
    return {
      sum: ts.reduce((a, b) => a.add(b.mul(b))),
      concat: mj.concat(ts, 0),
      stack: mj.stack(ts, 1).max(1),
      epilogue: ts[0].matmul(w()).add(ts.slice(1).reduce((a, b) => a.sub(b))),
    };
  }, { rtol: 1e-5, atol: 1e-5, fusion: "fused" });
});

gpuTest("creation ops: full/zeros/ones/arange in every dtype, *Like", async () => {
  await check("creation", () => {
    const x = f32([7, 13], 101)();
    return {
      full: mj.full([7, 13], 2.5).add(x),
      zerosI: mj.zeros([3, 5], { dtype: "i32" }).add(mj.tensor(3, [], { dtype: "i32" })),
      onesU: mj.ones([5], { dtype: "u32" }).mul(mj.tensor(7, [], { dtype: "u32" })),
      fullB: mj.full([4], 1, { dtype: "bool" }).logicalXor(mj.tensor([true, false, true, false])),
      ar: mj.arange(129).add(mj.tensor(0, [], { dtype: "i32" })),
      arF: mj.arange(0.5, 20, 0.75).add(x.sum()),
      arU: mj.arange(3, 40, 4, { dtype: "u32" }).add(mj.tensor(1, [], { dtype: "u32" })),
      like: mj.fullLike(x, -1.25).add(mj.onesLike(x)).sub(mj.zerosLike(x)).mul(x),
    };
  }, { rtol: 1e-6 });
});
