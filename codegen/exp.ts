/**
 * Scalar expressions: the body of a kernel for one output element. Expressions are interned
 * (identical expressions are one object, which gives CSE for free), constant-folded as they are
 * built, and carry an integer range so that index arithmetic from reshapes simplifies
 * (x % c → x when 0 ≤ x < c).
 */

export type ScalarType = "f32" | "i32" | "u32" | "bool";

export type ExpOp =
  | "const"
  | "var"
  | "load"
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "mod"
  | "max"
  | "min"
  | "pow"
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "recip"
  | "sin"
  | "cos"
  | "tanh"
  | "erf"
  | "abs"
  | "floor"
  | "not"
  | "lt"
  | "le"
  | "eq"
  | "ne"
  | "and"
  | "or"
  | "xor"
  | "select"
  | "cast"
  | "bitcast"
  | "isnan"
  | "threefry"
  | "check";

export class Exp {
  /** Inclusive integer range for i32/u32 values (±Infinity when unknown). */
  readonly lo: number;
  readonly hi: number;
  constructor(
    readonly op: ExpOp,
    readonly type: ScalarType,
    readonly args: readonly Exp[],
    /**
     * const: the value; var: the name; load: the binding slot; threefry: [key0, key1, stream];
     * check: [size, the kernel-local check id].
     */
    readonly attr: number | string | readonly number[] | null,
    readonly id: number,
    range: [number, number],
  ) {
    [this.lo, this.hi] = range;
  }
  get isConst(): boolean {
    return this.op === "const";
  }
  get value(): number {
    return this.attr as number;
  }
}

const table = new Map<string, Exp>();
let nextId = 0;

/** Empties the intern table (between kernels, so it does not grow without bound). */
export function resetExpTable(): void {
  table.clear();
}

function intern(
  op: ExpOp,
  type: ScalarType,
  args: readonly Exp[],
  attr: Exp["attr"],
  range?: [number, number],
): Exp {
  const a = Array.isArray(attr) ? attr.join(",") : Object.is(attr, -0) ? "-0" : String(attr);
  // A variable's range is part of its identity: kernels of one step share this table, and
  // `gidx` of a 3-element kernel must not lend its range [0, 2] to `gidx` of a 6-element one
  // (x % 3 would simplify to x). Other ranges follow from the arguments.
  const r = op === "var" && range ? `|${range[0]},${range[1]}` : "";
  const key = `${op}|${type}|${a}|${args.map((a) => a.id).join(",")}${r}`;
  let e = table.get(key);
  if (!e) {
    e = new Exp(op, type, args, attr, nextId++, range ?? [-Infinity, Infinity]);
    table.set(key, e);
  }
  return e;
}

function canonConst(v: number, type: ScalarType): number {
  switch (type) {
    case "i32":
      return v | 0;
    case "u32":
      return v >>> 0;
    case "bool":
      return v ? 1 : 0;
    default:
      return Math.fround(v);
  }
}

export function cst(v: number, type: ScalarType): Exp {
  const c = canonConst(v, type);
  // -0 is kept (its own intern entry): adding it leaves every float unchanged, unlike +0.
  return intern("const", type, [], c, [c, c]);
}

export const i32 = (v: number): Exp => cst(v, "i32");

/** A named variable (e.g. the invocation's element index), with its known range. */
export function variable(name: string, type: ScalarType, lo = -Infinity, hi = Infinity): Exp {
  return intern("var", type, [], name, [lo, hi]);
}

/** Reads element `index` of binding `slot` (whose element type is `type`). */
export function load(slot: number, type: ScalarType, index: Exp): Exp {
  return intern("load", type, [index], slot, type === "bool" ? [0, 1] : undefined);
}

const isInt = (t: ScalarType) => t === "i32" || t === "u32";

function wrapRange(type: ScalarType, lo: number, hi: number): [number, number] {
  if (type === "i32" && lo >= -2147483648 && hi <= 2147483647) return [lo, hi];
  if (type === "u32" && lo >= 0 && hi <= 4294967295) return [lo, hi];
  return [-Infinity, Infinity];
}

/** Evaluates an ALU op on constants exactly as the device does. */
function foldBinary(op: ExpOp, a: number, b: number, type: ScalarType): number | undefined {
  const int = isInt(type);
  switch (op) {
    case "add":
      return a + b;
    case "sub":
      return a - b;
    case "mul":
      return int ? Math.imul(a, b) : a * b;
    case "div":
      if (!int) return a / b;
      if (b === 0) return a;
      return Math.trunc(a / b);
    case "mod":
      return b === 0 ? 0 : a % b;
    case "max":
      return Math.max(a, b);
    case "min":
      return Math.min(a, b);
    case "lt":
      return a < b ? 1 : 0;
    case "le":
      return a <= b ? 1 : 0;
    case "eq":
      return a === b ? 1 : 0;
    case "ne":
      return a !== b ? 1 : 0;
    case "and":
      return a & b;
    case "or":
      return a | b;
    case "xor":
      return a ^ b;
  }
  return undefined;
}

const COMPARE = new Set<ExpOp>(["lt", "le", "eq", "ne"]);

/** A binary ALU expression, folded and simplified where it is safe. */
export function bin(op: ExpOp, a: Exp, b: Exp): Exp {
  const type: ScalarType = COMPARE.has(op) ? "bool" : a.type;
  if (a.isConst && b.isConst) {
    const v = foldBinary(op, a.value, b.value, a.type);
    if (v !== undefined) return cst(v, type);
  }
  if (isInt(a.type)) {
    const r = simplifyInt(op, a, b);
    if (r) return r;
  } else if (a.type === "f32") {
    // Only identities that hold for every float, signed zeros included: x·1, x/1, x + (-0),
    // x - (+0).
    if (op === "mul" && b.isConst && b.value === 1) return a;
    if (op === "mul" && a.isConst && a.value === 1) return b;
    if (op === "add" && b.isConst && Object.is(b.value, -0)) return a;
    if (op === "add" && a.isConst && Object.is(a.value, -0)) return b;
    if (op === "sub" && b.isConst && Object.is(b.value, 0)) return a;
    if (op === "div" && b.isConst && b.value === 1) return a;
  } else if (a.type === "bool") {
    if (op === "and") {
      if (a.isConst) return a.value ? b : a;
      if (b.isConst) return b.value ? a : b;
    }
    if (op === "or") {
      if (a.isConst) return a.value ? a : b;
      if (b.isConst) return b.value ? b : a;
    }
  }
  let range: [number, number] | undefined;
  if (isInt(type)) range = intRange(op, a, b, type);
  else if (type === "bool") {
    const known = compareKnown(op, a, b);
    if (known !== undefined) return cst(known, "bool");
    range = [0, 1];
  }
  // Commutative ops get a canonical operand order so that a+b and b+a intern to one node.
  if (
    (op === "add" || op === "mul" || op === "max" || op === "min" || op === "eq" ||
      op === "ne" || op === "and" || op === "or" || op === "xor") && a.id > b.id && !b.isConst
  ) {
    [a, b] = [b, a];
  }
  if ((op === "add" || op === "mul") && a.isConst && !b.isConst) [a, b] = [b, a];
  return intern(op, type, [a, b], null, range);
}

/** Decides integer comparisons from ranges (e.g. index bounds checks that always hold). */
function compareKnown(op: ExpOp, a: Exp, b: Exp): number | undefined {
  if (!isInt(a.type)) return undefined;
  if (op === "lt") {
    if (a.hi < b.lo) return 1;
    if (a.lo >= b.hi) return 0;
  }
  if (op === "le") {
    if (a.hi <= b.lo) return 1;
    if (a.lo > b.hi) return 0;
  }
  return undefined;
}

function intRange(op: ExpOp, a: Exp, b: Exp, type: ScalarType): [number, number] {
  switch (op) {
    case "add":
      return wrapRange(type, a.lo + b.lo, a.hi + b.hi);
    case "sub":
      return wrapRange(type, a.lo - b.hi, a.hi - b.lo);
    case "mul": {
      const c = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi].filter((v) =>
        !Number.isNaN(v)
      );
      return c.length === 4
        ? wrapRange(type, Math.min(...c), Math.max(...c))
        : [-Infinity, Infinity];
    }
    case "div":
      if (b.isConst && b.value > 0 && a.lo >= 0) {
        return [Math.floor(a.lo / b.value), Math.floor(a.hi / b.value)];
      }
      return [-Infinity, Infinity];
    case "mod":
      if (b.isConst && b.value > 0 && a.lo >= 0) return [0, Math.min(a.hi, b.value - 1)];
      return [-Infinity, Infinity];
    case "max":
      return [Math.max(a.lo, b.lo), Math.max(a.hi, b.hi)];
    case "min":
      return [Math.min(a.lo, b.lo), Math.min(a.hi, b.hi)];
    case "and":
      if (a.lo >= 0 && b.lo >= 0) return [0, Math.min(a.hi, b.hi)];
      return [-Infinity, Infinity];
    default:
      return [-Infinity, Infinity];
  }
}

/** Index-arithmetic rewrites, guided by ranges. */
function simplifyInt(op: ExpOp, a: Exp, b: Exp): Exp | undefined {
  const bc = b.isConst ? b.value : undefined;
  const ac = a.isConst ? a.value : undefined;
  switch (op) {
    case "add":
      if (bc === 0) return a;
      if (ac === 0) return b;
      // (x + c1) + c2 → x + (c1 + c2)
      if (bc !== undefined && a.op === "add" && a.args[1].isConst) {
        return bin("add", a.args[0], cst(a.args[1].value + bc, a.type));
      }
      // (x / c) * c + x % c → x   (both orders of the addition)
      {
        const r = divModRecombine(a, b) ?? divModRecombine(b, a);
        if (r) return r;
      }
      break;
    case "sub":
      if (bc === 0) return a;
      if (a === b) return cst(0, a.type);
      break;
    case "mul":
      if (bc === 1) return a;
      if (ac === 1) return b;
      if (bc === 0 || ac === 0) return cst(0, a.type);
      break;
    case "div":
      if (bc === 1) return a;
      if (bc !== undefined && bc > 0 && a.lo >= 0 && a.hi < bc) return cst(0, a.type);
      if (bc !== undefined && bc > 0 && a.type === "i32") {
        const r = divModAffine(a, bc, "div");
        if (r) return r;
      }
      // (x * c) / c → x when x*c cannot wrap
      if (
        bc !== undefined && bc > 0 && a.op === "mul" && a.args[1].isConst &&
        a.args[1].value === bc &&
        a.lo >= 0
      ) return a.args[0];
      // (x / c1) / c2 → x / (c1·c2) for non-negative x
      if (
        bc !== undefined && bc > 0 && a.op === "div" && a.args[1].isConst && a.args[1].value > 0 &&
        a.args[0].lo >= 0 && a.args[1].value * bc <= 2147483647
      ) {
        return bin("div", a.args[0], cst(a.args[1].value * bc, a.type));
      }
      break;
    case "mod":
      if (bc === 1) return cst(0, a.type);
      if (bc !== undefined && bc > 0 && a.lo >= 0 && a.hi < bc) return a;
      if (bc !== undefined && bc > 0 && a.type === "i32") {
        const r = divModAffine(a, bc, "mod");
        if (r) return r;
      }
      // (x * c1) % c2 → 0 when c2 divides c1
      if (
        bc !== undefined && bc > 0 && a.op === "mul" && a.args[1].isConst &&
        a.args[1].value % bc === 0 &&
        a.lo >= 0
      ) return cst(0, a.type);
      // (x % c1) % c2 → x % c2 when c2 divides c1
      if (
        bc !== undefined && bc > 0 && a.op === "mod" && a.args[1].isConst &&
        a.args[1].value % bc === 0 &&
        a.args[0].lo >= 0
      ) return bin("mod", a.args[0], b);
      break;
    case "max":
      if (a === b) return a;
      if (a.lo >= b.hi) return a;
      if (b.lo >= a.hi) return b;
      break;
    case "min":
      if (a === b) return a;
      if (a.hi <= b.lo) return a;
      if (b.hi <= a.lo) return b;
      break;
  }
  return undefined;
}

/** An i32 sum as terms (expression, positive coefficient) and a constant, or null. */
function affineTerms(e: Exp): { terms: [Exp, number][]; c: number } | null {
  const terms: [Exp, number][] = [];
  let c = 0;
  const visit = (x: Exp, k: number): boolean => {
    if (x.isConst) c += k * x.value;
    else if (x.op === "add") return visit(x.args[0], k) && visit(x.args[1], k);
    else if (x.op === "mul" && x.args[1].isConst && x.args[1].value > 0) {
      return visit(x.args[0], k * x.args[1].value);
    } else terms.push([x, k]);
    return true;
  };
  return visit(e, 1) ? { terms, c } : null;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * x / d and x % d for a non-negative sum x = Σ cᵢ·xᵢ + c (every xᵢ ≥ 0, no wrap) whose terms
 * split into "big" ones, all multiples of some g, and "small" ones (the constant's remainder
 * included) that stay within [0, g): with d a multiple of g, x / d = B / (d/g) and
 * x % d = (B % (d/g))·g + small, where B = Σ_big (cᵢ/g)·xᵢ + c div g; with g a multiple of d,
 * any non-negative small works: x / d = B·(g/d) + small / d, x % d = small % d. This is what
 * splitting a loop into outer·L + inner needs: (o·L + i) / L = o, (o·L + i) % L = i,
 * (o·L + i) / (L·m) = o / m.
 */
function divModAffine(x: Exp, d: number, op: "div" | "mod"): Exp | undefined {
  if (x.lo < 0 || x.hi > 2147483647 || (x.op !== "add" && x.op !== "mul")) return undefined;
  const parts = affineTerms(x);
  if (!parts || parts.c < 0 || parts.terms.some(([t]) => t.lo < 0 || !(t.hi < Infinity))) {
    return undefined;
  }
  // Try each coefficient (largest first) as the boundary between big and small terms.
  const coefs = [...new Set(parts.terms.map(([, k]) => k))].sort((a, b) => b - a);
  for (let j = 1; j <= coefs.length; j++) {
    const bigCoefs = coefs.slice(0, j);
    const g = bigCoefs.reduce(gcd);
    if (d % g !== 0 && g % d !== 0) continue;
    const step = Math.min(g, d);
    if (step === 1) continue; // nothing to take out (and B / d would be x / d again)
    const big = parts.terms.filter(([, k]) => k % step === 0 && bigCoefs.includes(k));
    const small = parts.terms.filter((t) => !big.includes(t));
    let smallHi = parts.c % step;
    for (const [t, k] of small) smallHi += k * t.hi;
    if (big.length === 0 || (step < d && smallHi >= step)) continue;
    let b = cst(Math.floor(parts.c / step), "i32");
    for (const [t, k] of big) b = bin("add", b, bin("mul", t, cst(k / step, "i32")));
    let rest = cst(parts.c % step, "i32");
    for (const [t, k] of small) rest = bin("add", rest, bin("mul", t, cst(k, "i32")));
    // step = d (g a multiple of d): x / d = B + small / d, x % d = small % d, for any
    // non-negative small; step = g < d needs small < g: x / d = B / (d/g).
    if (step === d) {
      return op === "div"
        ? bin("add", b, bin("div", rest, cst(d, "i32")))
        : bin("mod", rest, cst(d, "i32"));
    }
    const q = d / step;
    return op === "div"
      ? bin("div", b, cst(q, "i32"))
      : bin("add", bin("mul", bin("mod", b, cst(q, "i32")), cst(step, "i32")), rest);
  }
  return undefined;
}

/** Recognizes (x / c) * c and x % c over the same non-negative x. */
function divModRecombine(p: Exp, q: Exp): Exp | undefined {
  if (p.op !== "mul" || q.op !== "mod") return undefined;
  const [d, c] = p.args;
  if (!c.isConst || d.op !== "div" || !d.args[1].isConst || d.args[1].value !== c.value) {
    return undefined;
  }
  const x = d.args[0];
  if (q.args[0] !== x || !q.args[1].isConst || q.args[1].value !== c.value || x.lo < 0) {
    return undefined;
  }
  return x;
}

const FLOAT_UNARY: Record<string, (v: number) => number> = {
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  recip: (v) => 1 / v,
  sin: Math.sin,
  cos: Math.cos,
  tanh: Math.tanh,
  abs: Math.abs,
  floor: Math.floor,
  neg: (v) => -v,
};

/** A unary ALU expression. */
export function un(op: ExpOp, a: Exp): Exp {
  if (a.isConst && op in FLOAT_UNARY && a.type === "f32") {
    return cst(FLOAT_UNARY[op](a.value), "f32");
  }
  if (a.isConst && op === "neg") return cst(-a.value, a.type);
  if (a.isConst && op === "not") {
    return cst(a.type === "bool" ? (a.value ? 0 : 1) : ~a.value, a.type);
  }
  if (op === "neg" && a.op === "neg") return a.args[0];
  if (op === "not" && a.op === "not") return a.args[0];
  const type: ScalarType = op === "isnan" ? "bool" : a.type;
  let range: [number, number] | undefined;
  if (op === "neg" && a.type === "i32") range = wrapRange("i32", -a.hi, -a.lo);
  if (op === "abs" && a.type === "i32" && a.lo > -2147483648) {
    range = [a.lo >= 0 ? a.lo : a.hi <= 0 ? -a.hi : 0, Math.max(Math.abs(a.lo), Math.abs(a.hi))];
  }
  return intern(op, type, [a], null, range);
}

/** `c ? a : b`. */
export function select(c: Exp, a: Exp, b: Exp): Exp {
  if (c.isConst) return c.value ? a : b;
  if (a === b) return a;
  return intern("select", a.type, [c, a, b], null, [Math.min(a.lo, b.lo), Math.max(a.hi, b.hi)]);
}

/** A dtype conversion with moejit's semantics (see the interpreter's `convert`). */
export function cast(a: Exp, to: ScalarType): Exp {
  if (a.type === to) return a;
  if (a.isConst) {
    const v = a.value;
    if (to === "bool") return cst(v !== 0 ? 1 : 0, "bool");
    if (to === "f32") return cst(v, "f32");
    if (a.type === "f32") {
      if (Number.isNaN(v)) return cst(0, to);
      const t = Math.trunc(v);
      return cst(
        to === "i32"
          ? Math.min(Math.max(t, -2147483648), 2147483647)
          : Math.min(Math.max(t, 0), 4294967295),
        to,
      );
    }
    return cst(to === "i32" ? v | 0 : v >>> 0, to);
  }
  let range: [number, number] | undefined;
  if (
    (to === "i32" || to === "u32") && (a.type === "i32" || a.type === "u32" || a.type === "bool")
  ) {
    range = wrapRange(to, a.lo, a.hi);
  }
  return intern("cast", to, [a], to, range);
}

/** Reinterprets the 32 bits of a value as another 32-bit type. */
export function bitcast(a: Exp, to: ScalarType): Exp {
  if (a.type === to) return a;
  if (a.isConst) {
    const buf = new DataView(new ArrayBuffer(4));
    if (a.type === "f32") buf.setFloat32(0, a.value);
    else buf.setUint32(0, a.value >>> 0);
    return cst(
      to === "f32" ? buf.getFloat32(0) : to === "i32" ? buf.getInt32(0) : buf.getUint32(0),
      to,
    );
  }
  return intern("bitcast", to, [a], to);
}

/** First word of Threefry-2x32 with a fixed key, counter (c0, stream). */
export function threefry(key0: number, key1: number, stream: number, c0: Exp): Exp {
  return intern("threefry", "u32", [c0], [key0 >>> 0, key1 >>> 0, stream >>> 0]);
}

/** Threefry-2x32 with a key computed at run time (two u32 expressions). */
export function threefryKeyed(k0: Exp, k1: Exp, stream: number, c0: Exp): Exp {
  return intern("threefry", "u32", [c0, k0, k1], [stream >>> 0]);
}

/**
 * An index that must lie in [0, size): its value when it does; otherwise the kernel records the
 * kernel-local check `id` as failed (with the index) in the step's error buffer and reads
 * element 0 instead. Indices whose range is known to fit need no check.
 */
export function checkedIndex(index: Exp, size: number, id: () => number): Exp {
  if (index.lo >= 0 && index.hi < size) return index;
  return intern("check", "i32", [index], [size, id()], [0, Math.max(0, size - 1)]);
}

/** Visits every sub-expression once, sources first. */
export function walk(roots: readonly Exp[], f: (e: Exp) => void): void {
  const seen = new Set<Exp>();
  const stack: [Exp, number][] = roots.map((r) => [r, 0]);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [e, i] = top;
    if (seen.has(e) && i === 0) {
      stack.pop();
      continue;
    }
    if (i < e.args.length) {
      top[1]++;
      if (!seen.has(e.args[i])) stack.push([e.args[i], 0]);
    } else {
      stack.pop();
      if (!seen.has(e)) {
        seen.add(e);
        f(e);
      }
    }
  }
}
