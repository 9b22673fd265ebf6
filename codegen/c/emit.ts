/**
 * Renders scalar expressions as C (C99 with GNU builtins), with the interpreter's semantics
 * through the prelude's helpers (codegen/c/prelude.ts). Values of type bool are C ints (0/1);
 * stored bools are bytes.
 */
import { ExpEmitter } from "../emit.ts";
import type { Exp, ScalarType } from "../exp.ts";

/** The C type a value of `t` is held in. */
export function cValueType(t: ScalarType): string {
  return t === "f32" ? "float" : t === "i32" ? "int32_t" : t === "u32" ? "uint32_t" : "int";
}

/** The C element type a buffer of `t` stores (bool: one byte, as on the host). */
export function cStorageType(t: ScalarType): string {
  return t === "bool" ? "uint8_t" : cValueType(t);
}

/** A C literal of `v` as `t`; f32 values round-trip exactly (nine significant digits). */
export function cLiteral(v: number, t: ScalarType): string {
  switch (t) {
    case "f32": {
      if (Number.isNaN(v)) return "mj_as_f32(0x7fc00000u)";
      if (v === Infinity) return "mj_as_f32(0x7f800000u)";
      if (v === -Infinity) return "mj_as_f32(0xff800000u)";
      const f = Math.fround(v);
      if (Object.is(f, -0)) return "(-0.0f)";
      if (Number.isInteger(f) && Math.abs(f) < 1e7) {
        return `${f < 0 ? `(${f}` : f}.0f${f < 0 ? ")" : ""}`;
      }
      // Always with an exponent: toPrecision(9) writes 400000000 without one, and `400000000f`
      // is not a C literal.
      const s = f.toExponential(8);
      return f < 0 ? `(${s}f)` : `${s}f`;
    }
    case "i32":
      return v === -2147483648 ? "INT32_MIN" : v < 0 ? `(${v})` : `${v}`;
    case "u32":
      return `${v >>> 0}u`;
    case "bool":
      return v ? "1" : "0";
  }
}

/**
 * Whether `e` is index arithmetic computed in 64 bits: an i32 sum, difference or product whose
 * range is known (so it cannot wrap: the exact value is the i32 value), or the quotient or
 * remainder of a non-negative one by a positive constant. The kernels are compiled with -fwrapv
 * (i32 arithmetic wraps, as in the interpreter), and GCC cannot prove that wrapping int32 index
 * arithmetic stays affine, so loads through it kept loops scalar; in int64_t the same values
 * vectorize.
 */
function wide(e: Exp): boolean {
  if (e.type !== "i32" || !(e.lo > -Infinity && e.hi < Infinity)) return false;
  if (e.op === "add" || e.op === "sub" || e.op === "mul") return true;
  const [a, b] = e.args;
  return (e.op === "div" || e.op === "mod") && a.lo >= 0 && b.isConst && b.value > 0;
}

export class CEmitter extends ExpEmitter {
  protected declare(name: string, e: Exp, text: string): string {
    return `const ${wide(e) ? "int64_t" : cValueType(e.type)} ${name} = ${text};`;
  }

  protected text(e: Exp, r: (x: Exp) => string): string {
    const [a, b, c] = e.args;
    const f = a?.type === "f32";
    const int = a?.type === "i32";
    if (wide(e)) {
      const op = { add: "+", sub: "-", mul: "*", div: "/", mod: "%" }[e.op as string];
      return `((int64_t)${r(a)} ${op} ${r(b)})`;
    }
    switch (e.op) {
      case "const":
        return cLiteral(e.value, e.type);
      case "var":
        return e.attr as string;
      case "load": {
        const t = `${this.bindingName(e.attr as number)}[${r(a)}]`;
        return e.type === "bool" ? `(${t} != 0)` : t;
      }
      case "add":
        return `(${r(a)} + ${r(b)})`;
      case "sub":
        return `(${r(a)} - ${r(b)})`;
      case "mul":
        return `(${r(a)} * ${r(b)})`;
      case "div":
        return f ? `(${r(a)} / ${r(b)})` : `${int ? "mj_idiv" : "mj_udiv"}(${r(a)}, ${r(b)})`;
      case "mod":
        return `${f ? "mj_fmod" : int ? "mj_imod" : "mj_umod"}(${r(a)}, ${r(b)})`;
      case "max":
      case "min": {
        const kind = f ? "f" : int ? "i" : a.type === "u32" ? "u" : "i";
        return `mj_${kind}${e.op}(${r(a)}, ${r(b)})`;
      }
      case "pow":
        return `mj_pow(${r(a)}, ${r(b)})`;
      case "neg":
        return a.type === "u32"
          ? `(0u - ${r(a)})`
          : int
          ? `((int32_t)(0u - (uint32_t)${r(a)}))`
          : `(-${r(a)})`;
      case "exp":
      case "erf":
        return `mj_${e.op}f(${r(a)})`;
      case "log":
      case "sqrt":
      case "sin":
      case "cos":
      case "tanh":
      case "floor":
        return `${e.op}f(${r(a)})`;
      case "abs":
        return f ? `fabsf(${r(a)})` : int ? `mj_iabs(${r(a)})` : r(a);
      case "recip":
        return `(1.0f / ${r(a)})`;
      case "not":
        return a.type === "bool" ? `(!${r(a)})` : `(~${r(a)})`;
      case "lt":
        return `(${r(a)} < ${r(b)})`;
      case "le":
        return `(${r(a)} <= ${r(b)})`;
      case "eq":
        return `(${r(a)} == ${r(b)})`;
      case "ne":
        return `(${r(a)} != ${r(b)})`;
      case "and":
        return `(${r(a)} & ${r(b)})`;
      case "or":
        return `(${r(a)} | ${r(b)})`;
      case "xor":
        return a.type === "bool" ? `(${r(a)} != ${r(b)})` : `(${r(a)} ^ ${r(b)})`;
      case "select":
        // Through a function, so both arms are evaluated whatever the condition (every load the
        // lowering emits is in range, as WGSL's select needs too): a conditional load in a
        // vectorized loop becomes a masked load, which GCC 12.2 miscompiles in loops of 2–16
        // iterations (tests/native/select_c_test.ts keeps the reproducer).
        return `mj_sel_${e.type}(${r(a)}, ${r(b)}, ${r(c)})`;
      case "isnan":
        return `mj_isnan(${r(a)})`;
      case "cast":
        return castText(r(a), a.type, e.type);
      case "bitcast":
        if (e.type === "f32") return `mj_as_f32((uint32_t)${r(a)})`;
        if (a.type === "f32") return `(${cValueType(e.type)})mj_as_u32(${r(a)})`;
        return `((${cValueType(e.type)})${r(a)})`;
      case "check": {
        const [size, id] = e.attr as number[];
        return `mj_chk(${r(a)}, ${size}, ${id}u, mj_err)`;
      }
      case "threefry": {
        const attr = e.attr as number[];
        if (e.args.length === 3) return `mj_threefry(${r(b)}, ${r(c)}, ${r(a)}, ${attr[0]}u)`;
        const [k0, k1, s] = attr;
        return `mj_threefry(${k0}u, ${k1}u, ${r(a)}, ${s}u)`;
      }
    }
  }
}

function castText(x: string, from: ScalarType, to: ScalarType): string {
  if (to === "bool") return from === "f32" ? `(${x} != 0.0f)` : `(${x} != 0)`;
  if (from === "bool") return `((${cValueType(to)})(${x} ? 1 : 0))`;
  if (to === "f32") return `((float)${x})`;
  if (from === "f32") return to === "i32" ? `mj_f2i(${x})` : `mj_f2u(${x})`;
  return `((${cValueType(to)})${x})`;
}
