import { fail } from "./errors.ts";

/**
 * Element types. (Half precision is not supported: `checkDType` refuses "f16" with a clear
 * error, and safetensors F16/BF16 tensors are read as f32.)
 */
export type DType = "f32" | "i32" | "u32" | "bool";

/** The dtypes tensors may have today. */
export const DTYPES: readonly DType[] = ["f32", "i32", "u32", "bool"];

/** Host storage for each dtype. bool is one byte per element on the host. */
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export function isFloat(d: DType): boolean {
  return d === "f32";
}

export function isInt(d: DType): boolean {
  return d === "i32" || d === "u32";
}

/** Bytes per element in device storage (bool is stored as u32 on the device). */
export function deviceItemSize(_d: DType): number {
  return 4;
}

/** Allocates host storage for `n` elements; `wide` stores floats as f64 (the oracle's mode). */
export function allocHost(d: DType, n: number, wide = false): TypedArray {
  switch (d) {
    case "f32":
      return wide ? new Float64Array(n) : new Float32Array(n);
    case "i32":
      return new Int32Array(n);
    case "u32":
      return new Uint32Array(n);
    case "bool":
      return new Uint8Array(n);
  }
}

export function checkDType(d: unknown, op: string): DType {
  if (d === "f32" || d === "i32" || d === "u32" || d === "bool") return d;
  if (d === "f16") fail(op, "dtype f16 is reserved for later; use f32");
  return fail(op, `unknown dtype ${JSON.stringify(d)}; expected one of f32, i32, u32, bool`);
}
