/**
 * Renders scalar expressions as WGSL. Subexpressions used more than once become `let`s (CSE on
 * top of interning), each placed in the outermost code segment where all of its variables are
 * defined: loop-invariant work is hoisted out of reduction loops for free.
 */
import { type Exp, type ScalarType, walk } from "./exp.ts";

/**
 * WGSL text of an f32 constant. Non-finite values are spelled by their bits through a call of
 * the helper mj_f32_bits (the caller emits it): WGSL forbids const-expressions that evaluate to
 * ±inf or NaN, and Chromium's Tint rejects `bitcast<f32>(0x7f800000u)` (naga accepts it).
 */
export function f32Literal(v: number): string {
  if (Number.isNaN(v)) return "mj_f32_bits(0x7fc00000u)";
  if (v === Infinity) return "mj_f32_bits(0x7f800000u)";
  if (v === -Infinity) return "mj_f32_bits(0xff800000u)";
  const f = Math.fround(v);
  if (Object.is(f, -0)) return "(-0.0)";
  let s = String(f);
  if (Math.fround(Number(s)) !== f) s = f.toPrecision(9);
  if (!/[.e]/.test(s)) s += ".0";
  // A subnormal literal may be rejected as out of range; its bits are exact.
  if (f !== 0 && Math.abs(f) < 1.1754943508222875e-38) {
    const buf = new DataView(new ArrayBuffer(4));
    buf.setFloat32(0, f);
    return `bitcast<f32>(${buf.getUint32(0)}u)`;
  }
  return s.startsWith("-") ? `(${s})` : s;
}

export function literal(v: number, type: ScalarType): string {
  switch (type) {
    case "f32":
      return f32Literal(v);
    case "i32":
      return v === -2147483648 ? "(-2147483647i - 1i)" : v < 0 ? `(${v}i)` : `${v}i`;
    case "u32":
      return `${v >>> 0}u`;
    case "bool":
      return v ? "true" : "false";
  }
}

/** WGSL storage element type for a scalar type (bool is stored as u32). */
export function storageType(t: ScalarType): string {
  return t === "bool" ? "u32" : t;
}

/** Helper functions emitted on demand. */
const HELPERS: Record<string, string> = {
  mj_f32_bits: `fn mj_f32_bits(b: u32) -> f32 {
  // A call is never a const-expression, so non-finite bit patterns are allowed here.
  return bitcast<f32>(b);
}`,
  mj_isnan: `fn mj_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }`,
  mj_erf: `fn mj_erf(x: f32) -> f32 {
  // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return select(-y, y, x >= 0.0);
}`,
  mj_fmax: `fn mj_fmax(a: f32, b: f32) -> f32 {
  // WGSL leaves max(NaN, x) unspecified; NaN propagates here, as in the interpreter. Equal
  // operands can only differ in the sign of zero, and +0 is the larger (JS Math.max).
  if (mj_isnan(a) || mj_isnan(b)) { return a + b; }
  if (a == b) { return bitcast<f32>(bitcast<u32>(a) & bitcast<u32>(b)); }
  return max(a, b);
}`,
  mj_fmin: `fn mj_fmin(a: f32, b: f32) -> f32 {
  if (mj_isnan(a) || mj_isnan(b)) { return a + b; }
  if (a == b) { return bitcast<f32>(bitcast<u32>(a) | bitcast<u32>(b)); }
  return min(a, b);
}`,
  mj_pow: `fn mj_pow(a: f32, b: f32) -> f32 {
  // WGSL pow is undefined for a <= 0 and for non-finite operands; this follows JS Math.pow (the
  // interpreter): x^NaN = NaN, x^±0 = 1, NaN^y = NaN, (±1)^±inf = NaN, integer exponents of
  // negative bases (-0 and -inf included) keep their sign. NaN is tested by bits: comparisons
  // with NaN are unreliable on some drivers.
  if (mj_isnan(b)) { return b; }
  if (b == 0.0) { return 1.0; }
  if (mj_isnan(a)) { return a; }
  let inf = mj_f32_bits(0x7f800000u);
  let m = abs(a);
  if ((bitcast<u32>(b) & 0x7fffffffu) == 0x7f800000u) {
    if (m == 1.0) { return mj_f32_bits(0x7fc00000u); }
    return select(0.0, inf, (m > 1.0) == (b > 0.0));
  }
  var r: f32;
  if (m == 0.0) {
    r = select(0.0, inf, b < 0.0);
  } else if (m == inf) {
    r = select(inf, 0.0, b < 0.0);
  } else {
    r = pow(m, b);
  }
  if ((bitcast<u32>(a) >> 31u) == 0u) { return r; }
  let integer = floor(b) == b;
  if (!integer) { return select(mj_f32_bits(0x7fc00000u), r, m == 0.0 || m == inf); }
  // An odd integer: half of it is not an integer (|b| >= 2^24 is always even).
  return select(r, -r, floor(b * 0.5) != b * 0.5);
}`,
  mj_tanh: `fn mj_tanh(x: f32) -> f32 {
  // Some drivers overflow in tanh for large |x|; tanh(±15) is ±1 in f32 already. clamp would
  // turn NaN into a bound, so NaN passes through first.
  if (mj_isnan(x)) { return x; }
  return tanh(clamp(x, -15.0, 15.0));
}`,
  mj_f2i: `fn mj_f2i(x: f32) -> i32 {
  if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0i; }
  if (x >= 2147483648.0) { return 2147483647i; }
  return i32(max(x, -2147483648.0));
}`,
  mj_f2u: `fn mj_f2u(x: f32) -> u32 {
  if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  if (x >= 4294967296.0) { return 4294967295u; }
  return u32(max(x, 0.0));
}`,
  mj_chk: `fn mj_chk(i: i32, n: i32, c: u32) -> i32 {
  // An out-of-range index is recorded, not clamped away: word 2c flags check c, word 2c + 1
  // keeps the complement of the smallest bad index as u32 (one atomic max, any thread order).
  if (i >= 0i && i < n) { return i; }
  atomicOr(&mj_err[2u * c], 1u);
  atomicMax(&mj_err[2u * c + 1u], ~bitcast<u32>(i));
  return 0i;
}`,
  mj_threefry: `fn mj_rotl(x: u32, r: u32) -> u32 { return (x << r) | (x >> (32u - r)); }
fn mj_threefry(k0: u32, k1: u32, c0: u32, c1: u32) -> u32 {
  // Threefry-2x32, 20 rounds; identical to src/rng.ts.
  let k2 = k0 ^ k1 ^ 0x1bd11bdau;
  var x0 = c0 + k0;
  var x1 = c1 + k1;
  x0 += x1; x1 = mj_rotl(x1, 13u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 15u); x1 ^= x0;
  x0 += x1; x1 = mj_rotl(x1, 26u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 6u); x1 ^= x0;
  x0 += k1; x1 += k2 + 1u;
  x0 += x1; x1 = mj_rotl(x1, 17u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 29u); x1 ^= x0;
  x0 += x1; x1 = mj_rotl(x1, 16u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 24u); x1 ^= x0;
  x0 += k2; x1 += k0 + 2u;
  x0 += x1; x1 = mj_rotl(x1, 13u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 15u); x1 ^= x0;
  x0 += x1; x1 = mj_rotl(x1, 26u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 6u); x1 ^= x0;
  x0 += k0; x1 += k1 + 3u;
  x0 += x1; x1 = mj_rotl(x1, 17u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 29u); x1 ^= x0;
  x0 += x1; x1 = mj_rotl(x1, 16u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 24u); x1 ^= x0;
  x0 += k1; x1 += k2 + 4u;
  x0 += x1; x1 = mj_rotl(x1, 13u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 15u); x1 ^= x0;
  x0 += x1; x1 = mj_rotl(x1, 26u); x1 ^= x0; x0 += x1; x1 = mj_rotl(x1, 6u); x1 ^= x0;
  x0 += k2; x1 += k0 + 5u;
  return x0;
}`,
};

interface Segment {
  loop: boolean;
  lines: string[];
  /** Variables first defined in this segment. */
  defines: Set<string>;
}

/**
 * Emits expressions into an ordered list of code segments, for any target language: a
 * subexpression used more than once becomes a named value (CSE on top of interning), placed in
 * the outermost segment where all of its variables are defined, so loop-invariant work is
 * hoisted out of reduction loops. A top-level segment's values are visible to every later
 * segment; a loop segment's only inside that loop. Subclasses spell the operations.
 */
export abstract class ExpEmitter {
  /** Helper functions the emitted code calls (the target decides what that means). */
  readonly helpers = new Set<string>();
  readonly #segments: Segment[] = [];
  readonly #placed = new Map<Exp, { seg: number; name: string }>();
  readonly #uses = new Map<Exp, number>();
  #counted = new Set<Exp>();
  #next = 0;
  /** Name of the binding for a load slot. */
  constructor(readonly bindingName: (slot: number) => string) {}

  /** Starts a new segment; returns its index. `defines` are the variables it introduces. */
  segment(loop: boolean, defines: readonly string[] = []): number {
    this.#segments.push({ loop, lines: [], defines: new Set(defines) });
    return this.#segments.length - 1;
  }

  /** Appends a raw statement to a segment. */
  line(seg: number, text: string): void {
    this.#segments[seg].lines.push(text);
  }

  lines(seg: number): string[] {
    return this.#segments[seg].lines;
  }

  /** Registers how often each sub-expression of `roots` is used (call before rendering them). */
  count(roots: readonly Exp[]): void {
    walk(roots, (e) => {
      if (this.#counted.has(e)) return;
      this.#counted.add(e);
      for (const a of e.args) this.#uses.set(a, (this.#uses.get(a) ?? 0) + 1);
    });
    for (const r of roots) this.#uses.set(r, (this.#uses.get(r) ?? 0) + 1);
  }

  /** The earliest segment, no later than `at`, in which every variable of `e` is defined. */
  #home(e: Exp, at: number, memo: Map<Exp, number>): number {
    const m = memo.get(e);
    if (m !== undefined) return m;
    let seg = 0;
    if (e.op === "var") {
      const name = e.attr as string;
      seg = -1;
      for (let i = 0; i <= at; i++) if (this.#segments[i].defines.has(name)) seg = i;
      if (seg < 0) seg = 0; // globals (e.g. builtins) are defined everywhere
    }
    for (const a of e.args) seg = Math.max(seg, this.#home(a, at, memo));
    // A let in a loop segment is invisible to later segments: only the loop itself may hold it.
    memo.set(e, seg);
    return seg;
  }

  /** The text of `e` as used in segment `at`. */
  render(e: Exp, at: number): string {
    return this.#render(e, at, new Map());
  }

  #visible(seg: number, at: number): boolean {
    if (seg === at) return true;
    if (seg > at) return false;
    return !this.#segments[seg].loop;
  }

  #render(e: Exp, at: number, memo: Map<Exp, number>): string {
    const placed = this.#placed.get(e);
    if (placed && this.#visible(placed.seg, at)) return placed.name;
    const text = this.text(e, (x) => this.#render(x, at, memo));
    const trivial = e.op === "const" || e.op === "var";
    if (trivial || (this.#uses.get(e) ?? 0) < 2) return text;
    let home = this.#home(e, at, memo);
    // Hoisting into an earlier loop segment would hide it from `at`; use `at` instead.
    if (home !== at && this.#segments[home].loop) home = at;
    const name = `t${this.#next++}`;
    this.#segments[home].lines.push(this.declare(name, e, text));
    this.#placed.set(e, { seg: home, name });
    return name;
  }

  /** The text of `e` itself; `r` renders its arguments. */
  protected abstract text(e: Exp, r: (x: Exp) => string): string;

  /** A statement naming `text` (the value of `e`). */
  protected abstract declare(name: string, e: Exp, text: string): string;
}

/** Emits WGSL. */
export class Emitter extends ExpEmitter {
  protected declare(name: string, _e: Exp, text: string): string {
    return `let ${name} = ${text};`;
  }

  protected text(e: Exp, r: (x: Exp) => string): string {
    const [a, b, c] = e.args;
    switch (e.op) {
      case "const":
        if (e.type === "f32" && !Number.isFinite(e.value)) this.helpers.add("mj_f32_bits");
        return literal(e.value, e.type);
      case "var":
        return e.attr as string;
      case "load": {
        const t = `${this.bindingName(e.attr as number)}[${r(a)}]`;
        return e.type === "bool" ? `(${t} != 0u)` : t;
      }
      case "add":
        return `(${r(a)} + ${r(b)})`;
      case "sub":
        return `(${r(a)} - ${r(b)})`;
      case "mul":
        return `(${r(a)} * ${r(b)})`;
      case "div":
        return `(${r(a)} / ${r(b)})`;
      case "mod":
        return `(${r(a)} % ${r(b)})`;
      case "max":
      case "min":
        if (a.type === "f32") {
          this.helpers.add("mj_isnan");
          this.helpers.add(e.op === "max" ? "mj_fmax" : "mj_fmin");
          return `${e.op === "max" ? "mj_fmax" : "mj_fmin"}(${r(a)}, ${r(b)})`;
        }
        return `${e.op}(${r(a)}, ${r(b)})`;
      case "pow":
        this.helpers.add("mj_isnan");
        this.helpers.add("mj_f32_bits");
        this.helpers.add("mj_pow");
        return `mj_pow(${r(a)}, ${r(b)})`;
      case "neg":
        // WGSL has no unary minus on u32; 0u - x wraps the same way.
        return a.type === "u32" ? `(0u - ${r(a)})` : `(-${r(a)})`;
      case "exp":
      case "log":
      case "sqrt":
      case "sin":
      case "cos":
      case "abs":
      case "floor":
        return `${e.op}(${r(a)})`;
      case "recip":
        return `(1.0 / ${r(a)})`;
      case "tanh":
        this.helpers.add("mj_isnan");
        this.helpers.add("mj_tanh");
        return `mj_tanh(${r(a)})`;
      case "erf":
        this.helpers.add("mj_erf");
        return `mj_erf(${r(a)})`;
      case "not":
        return a.type === "bool" ? `(!${r(a)})` : `(~${r(a)})`;
      case "lt":
        return `(${r(a)} < ${r(b)})`;
      case "le":
        return `(${r(a)} <= ${r(b)})`;
      case "eq":
        return `(${r(a)} == ${r(b)})`;
      case "ne":
        if (a.type === "f32") {
          // naga emits an ordered not-equal (false when either side is NaN); NaN != y is true.
          this.helpers.add("mj_isnan");
          const x = r(a), y = r(b);
          return `((${x} != ${y}) || mj_isnan(${x}) || mj_isnan(${y}))`;
        }
        return `(${r(a)} != ${r(b)})`;
      case "and":
        return `(${r(a)} & ${r(b)})`;
      case "or":
        return `(${r(a)} | ${r(b)})`;
      case "xor":
        return a.type === "bool" ? `(${r(a)} != ${r(b)})` : `(${r(a)} ^ ${r(b)})`;
      case "select":
        return `select(${r(c)}, ${r(b)}, ${r(a)})`;
      case "isnan":
        this.helpers.add("mj_isnan");
        return `mj_isnan(${r(a)})`;
      case "cast":
        return this.#cast(r(a), a.type, e.type);
      case "bitcast":
        return `bitcast<${e.type}>(${r(a)})`;
      case "check": {
        this.helpers.add("mj_chk");
        const [size, id] = e.attr as number[];
        return `mj_chk(${r(a)}, ${literal(size, "i32")}, ${id}u)`;
      }
      case "threefry": {
        this.helpers.add("mj_threefry");
        const attr = e.attr as number[];
        if (e.args.length === 3) return `mj_threefry(${r(b)}, ${r(c)}, ${r(a)}, ${attr[0]}u)`;
        const [k0, k1, s] = attr;
        return `mj_threefry(${k0}u, ${k1}u, ${r(a)}, ${s}u)`;
      }
    }
  }

  #cast(x: string, from: ScalarType, to: ScalarType): string {
    if (to === "bool") {
      if (from === "f32") return `((bitcast<u32>(${x}) & 0x7fffffffu) != 0u)`;
      return `(${x} != ${from === "i32" ? "0i" : "0u"})`;
    }
    if (from === "bool") return `select(${literal(0, to)}, ${literal(1, to)}, ${x})`;
    if (to === "f32") return `f32(${x})`;
    if (from === "f32") {
      const h = to === "i32" ? "mj_f2i" : "mj_f2u";
      this.helpers.add(h);
      return `${h}(${x})`;
    }
    return `bitcast<${to}>(${x})`;
  }

  /** The helper functions used so far. */
  helperText(): string {
    return helperText(this.helpers);
  }
}

/** The text of helper functions by name (several emitters of one shader share one copy). */
export function helperText(names: Iterable<string>): string {
  // Helpers may call each other; WGSL allows any order, but keep the base ones first.
  const order = Object.keys(HELPERS);
  return [...names].sort((x, y) => order.indexOf(x) - order.indexOf(y)).map((h) => HELPERS[h])
    .join("\n");
}
