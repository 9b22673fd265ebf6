/**
 * The safetensors format (https://github.com/huggingface/safetensors), implemented here:
 *
 * ```
 * [8 bytes: N, little-endian u64] [N bytes: UTF-8 JSON header, space-padded] [byte buffer]
 * header = { "__metadata__"?: { string: string },
 *            name: { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, … }
 * ```
 *
 * Offsets are relative to the start of the byte buffer, which the tensors cover exactly (no
 * holes, no overlaps, nothing after the last one). Values are little-endian, row-major.
 *
 * The writer pads the header with spaces so the buffer starts 8-aligned, lists the names sorted,
 * and lays the data out by element size (largest first), then name, so every tensor is aligned
 * to its element size (the layout of the Rust implementation). The reader checks every rule
 * above and names the file and the problem when one is broken.
 *
 * Everything here works on bytes in memory (the browser bundle has it); reading and writing files
 * is in safetensors_file.ts.
 */
import { fail, formatValue } from "../errors.ts";
import type { DType } from "../dtype.ts";

/** Element types of the format (all of them can be read; see {@link encodeSafetensors}). */
export type SafetensorsDtype =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Host arrays the reader returns and the writer accepts. */
export type HostArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | BigUint64Array;

/** A tensor to write: `data` holds the elements in row-major order. */
export interface SafetensorsInput {
  /** The dtype to store. */
  dtype: SafetensorsDtype;
  /** The shape (`[]` for a scalar). */
  shape: readonly number[];
  /**
   * F32/F64/F16/BF16: a Float32Array or Float64Array (F16 and BF16 are rounded from f32 to the
   * nearest even; a Uint16Array is taken as the raw 16-bit patterns). Integer types: an integer
   * typed array (values are range-checked), I64/U64 also a BigInt64Array/BigUint64Array.
   * BOOL/U8: a Uint8Array (BOOL stores 0 or 1, one byte each).
   */
  data: HostArray;
}

/** A tensor read from a file. */
export interface SafetensorsTensor {
  /** The dtype in the file. */
  dtype: SafetensorsDtype;
  /** The shape (`[]` for a scalar). */
  shape: number[];
  /**
   * F32/F16/BF16 → Float32Array; F64 → Float64Array; I32 → Int32Array; U32 → Uint32Array;
   * I16/U16/I8/U8 → their arrays; BOOL → Uint8Array of 0/1; I64/U64 → BigInt64Array/BigUint64Array.
   */
  data: HostArray;
}

/** A decoded file. */
export interface Safetensors {
  /** The `__metadata__` map ({} when absent). */
  metadata: Record<string, string>;
  /** Tensors by name, in the header's name order. */
  tensors: Record<string, SafetensorsTensor>;
}

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

const DTYPES = Object.keys(DTYPE_SIZE) as SafetensorsDtype[];

/**
 * The safetensors dtype of a moejit dtype (f32→F32, i32→I32, u32→U32, bool→BOOL).
 *
 * @example
 * ```ts
 * mj.io.safetensorsDtype("bool"); // "BOOL"
 * ```
 */
export function safetensorsDtype(d: DType): SafetensorsDtype {
  switch (d) {
    case "f32":
      return "F32";
    case "i32":
      return "I32";
    case "u32":
      return "U32";
    case "bool":
      return "BOOL";
    default:
      return fail("safetensors", `dtype ${d} has no safetensors counterpart yet`);
  }
}

/**
 * The moejit dtype a safetensors dtype loads as: F32/F16/BF16/F64 → f32, I32/I16/I8/I64 → i32,
 * U32/U16/U8/U64 → u32, BOOL → bool (64-bit integers are range-checked on conversion).
 *
 * @example
 * ```ts
 * mj.io.moejitDtype("BF16"); // "f32"
 * ```
 */
export function moejitDtype(d: SafetensorsDtype): DType {
  if (d === "BOOL") return "bool";
  if (d[0] === "F" || d === "BF16") return "f32";
  return d[0] === "I" ? "i32" : "u32";
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function swapInPlace(bytes: Uint8Array, size: number): void {
  if (LITTLE_ENDIAN || size === 1) return;
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 16-bit floats

/** f32 bit patterns → IEEE half bit patterns, rounding to nearest even. */
export function f32ToF16Bits(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf, or a quiet NaN
      continue;
    }
    const e = exp - 112; // rebias 127 → 15
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00; // overflow → inf
    } else if (e > 0) {
      let h = (e << 10) | (mant >>> 13);
      const rest = mant & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into inf: correct
      out[i] = sign | h;
    } else {
      const shift = 14 - e; // subnormal half: m = M·2^(e−14) with the implicit bit restored
      if (shift > 24) {
        out[i] = sign;
        continue;
      }
      const M = mant | 0x800000;
      let m = M >>> shift;
      const rest = M & ((1 << shift) - 1), half = 1 << (shift - 1);
      if (rest > half || (rest === half && (m & 1))) m++;
      out[i] = sign | m;
    }
  }
  return out;
}

/** IEEE half bit patterns → f32. */
export function f16BitsToF32(h: Uint16Array): Float32Array {
  const out = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i];
    const sign = (v & 0x8000) << 16;
    const exp = (v >>> 10) & 0x1f;
    let mant = v & 0x3ff;
    if (exp === 0x1f) {
      out[i] = sign | 0x7f800000 | (mant << 13);
    } else if (exp !== 0) {
      out[i] = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant === 0) {
      out[i] = sign;
    } else {
      let e = 113; // normalise the subnormal
      while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
      }
      out[i] = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
  }
  return new Float32Array(out.buffer);
}

/** f32 → bfloat16 bit patterns (the upper 16 bits, rounded to nearest even). */
export function f32ToBf16Bits(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) {
      out[i] = (b >>> 16) | 0x40; // keep NaN a (quiet) NaN
    } else {
      out[i] = Math.floor((b + 0x7fff + ((b >>> 16) & 1)) / 65536) & 0xffff;
    }
  }
  return out;
}

/** bfloat16 bit patterns → f32. */
export function bf16BitsToF32(h: Uint16Array): Float32Array {
  const out = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = h[i] << 16;
  return new Float32Array(out.buffer);
}

// ---------------------------------------------------------------------------------------------
// Writing

function describeArray(a: unknown): string {
  return a && typeof a === "object" ? (a.constructor?.name ?? "object") : typeof a;
}

const INT_RANGE: Partial<Record<SafetensorsDtype, [number, number]>> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  U32: [0, 2 ** 32 - 1],
  I16: [-(2 ** 15), 2 ** 15 - 1],
  U16: [0, 2 ** 16 - 1],
  I8: [-128, 127],
  U8: [0, 255],
  I64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  U64: [0, Number.MAX_SAFE_INTEGER],
};

const ARRAY_OF: Record<
  SafetensorsDtype,
  { new (n: number): HostArray; new (b: ArrayBuffer): HostArray }
> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U64: BigUint64Array,
  U32: Uint32Array,
  U16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

/** The little-endian bytes of one tensor (a fresh array), checking the data against the dtype. */
function tensorBytes(name: string, t: SafetensorsInput): Uint8Array {
  const op = "encodeSafetensors";
  const where = `tensor ${JSON.stringify(name)}`;
  if (!DTYPES.includes(t.dtype)) {
    fail(
      op,
      `${where}: unknown dtype ${JSON.stringify(t.dtype)}; expected one of ${DTYPES.join(", ")}`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(op, `${where}: shape must be non-negative integers, got ${formatValue(t.shape)}`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  const d = t.data;
  if (!ArrayBuffer.isView(d) || d instanceof DataView) {
    fail(op, `${where}: data must be a typed array, got ${describeArray(d)}`);
  }
  if (d.length !== n) {
    fail(op, `${where}: shape [${t.shape}] needs ${n} elements, data has ${d.length}`);
  }
  const isBig = d instanceof BigInt64Array || d instanceof BigUint64Array;
  const isFloatData = d instanceof Float32Array || d instanceof Float64Array;
  let typed: HostArray;
  switch (t.dtype) {
    case "F32":
    case "F64":
      if (!isFloatData) {
        fail(
          op,
          `${where}: ${t.dtype} data must be a Float32Array or Float64Array, got ${
            describeArray(d)
          }`,
        );
      }
      typed = d.constructor === ARRAY_OF[t.dtype]
        ? d
        : (ARRAY_OF[t.dtype] as Float32ArrayConstructor).from(d as Float32Array);
      break;
    case "F16":
    case "BF16":
      if (d instanceof Uint16Array) {
        typed = d;
      } else if (isFloatData) {
        const f = d instanceof Float32Array ? d : Float32Array.from(d as Float64Array);
        typed = t.dtype === "F16" ? f32ToF16Bits(f) : f32ToBf16Bits(f);
      } else {
        return fail(
          op,
          `${where}: ${t.dtype} data must be a Float32Array, Float64Array or Uint16Array (raw bits), got ${
            describeArray(d)
          }`,
        );
      }
      break;
    case "BOOL": {
      if (!(d instanceof Uint8Array)) {
        fail(op, `${where}: BOOL data must be a Uint8Array, got ${describeArray(d)}`);
      }
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = d[i] ? 1 : 0;
      typed = b;
      break;
    }
    default: {
      // Integers: copy through, checking the range when the source type is wider or signed.
      if (isFloatData) {
        fail(
          op,
          `${where}: ${t.dtype} data must be an integer typed array, got ${describeArray(d)}`,
        );
      }
      const Ctor = ARRAY_OF[t.dtype];
      if (d.constructor === Ctor) {
        typed = d;
        break;
      }
      const [lo, hi] = INT_RANGE[t.dtype]!;
      const big = t.dtype === "I64" || t.dtype === "U64";
      const out = new Ctor(n);
      for (let i = 0; i < n; i++) {
        const v = Number(d[i]);
        if (!(v >= lo && v <= hi) || (isBig && BigInt(v) !== d[i])) {
          fail(op, `${where}: element ${i} (${d[i]}) does not fit ${t.dtype}`);
        }
        (out as unknown as (number | bigint)[])[i] = big ? BigInt(v) : v;
      }
      typed = out;
    }
  }
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength).slice();
  swapInPlace(bytes, typed.BYTES_PER_ELEMENT);
  return bytes;
}

function checkMetadata(op: string, where: string, m: unknown): Record<string, string> {
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    fail(op, `${where}: __metadata__ must be an object of strings, got ${formatValue(m)}`);
  }
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== "string") {
      fail(
        op,
        `${where}: __metadata__ value ${JSON.stringify(k)} must be a string, got ${formatValue(v)}`,
      );
    }
  }
  return m as Record<string, string>;
}

/**
 * Encodes tensors as a safetensors file. The header lists the names sorted, with
 * `__metadata__ = {"format": "pt", ...metadata}` (a `format` key in `metadata` replaces "pt").
 *
 * @example
 * ```ts
 * const bytes = mj.io.encodeSafetensors(
 *   { w: { dtype: "BF16", shape: [3], data: new Float32Array([1, 2, 3]) } },
 *   { tokenizer: "cl100k_base" },
 * );
 * ```
 */
export function encodeSafetensors(
  tensors: Record<string, SafetensorsInput>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const op = "encodeSafetensors";
  checkMetadata(op, "metadata", metadata);
  const names = Object.keys(tensors).sort();
  const blobs = new Map<string, Uint8Array>();
  for (const name of names) {
    if (name === "" || name === "__metadata__") {
      fail(op, `invalid tensor name ${JSON.stringify(name)}`);
    }
    blobs.set(name, tensorBytes(name, tensors[name]));
  }
  // Largest elements first so that every tensor is aligned to its element size.
  const layout = [...names].sort((a, b) =>
    DTYPE_SIZE[tensors[b].dtype] - DTYPE_SIZE[tensors[a].dtype] || (a < b ? -1 : a > b ? 1 : 0)
  );
  const offsets = new Map<string, [number, number]>();
  let off = 0;
  for (const name of layout) {
    const len = blobs.get(name)!.length;
    offsets.set(name, [off, off + len]);
    off += len;
  }
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  for (const name of names) {
    header[name] = {
      dtype: tensors[name].dtype,
      shape: [...tensors[name].shape],
      data_offsets: offsets.get(name),
    };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const hlen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + hlen + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hlen), true);
  out.fill(0x20, 8, 8 + hlen);
  out.set(json, 8);
  for (const name of layout) out.set(blobs.get(name)!, 8 + hlen + offsets.get(name)![0]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** The top-level keys of a JSON object text, in order, to detect duplicates JSON.parse hides. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      if (depth === 1) {
        let j = i + 1;
        while (j < text.length && /\s/.test(text[j])) j++;
        if (text[j] === ":") keys.push(JSON.parse(text.slice(start, i + 1)));
      }
    } else if (c === "{" || c === "[") {
      depth++;
    } else if (c === "}" || c === "]") {
      depth--;
    }
  }
  return keys;
}

function decodeData(dtype: SafetensorsDtype, bytes: Uint8Array): HostArray {
  const copy = bytes.slice(); // aligned, owned
  swapInPlace(copy, DTYPE_SIZE[dtype]);
  switch (dtype) {
    case "F16":
      return f16BitsToF32(new Uint16Array(copy.buffer));
    case "BF16":
      return bf16BitsToF32(new Uint16Array(copy.buffer));
    case "BOOL":
      for (let i = 0; i < copy.length; i++) copy[i] = copy[i] ? 1 : 0;
      return copy;
    default:
      return new ARRAY_OF[dtype](copy.buffer);
  }
}

/**
 * Decodes a safetensors file's bytes. `sourceName` (usually the path) starts every error
 * message, e.g. `model.safetensors: data ends at byte 4096 but the file holds 4000 (truncated?)`.
 *
 * @example
 * ```ts
 * const { tensors } = mj.io.decodeSafetensors(bytes, "upload.safetensors");
 * const w = mj.tensor(mj.io.toMoejitData(tensors.w), tensors.w.shape);
 * ```
 */
export function decodeSafetensors(bytes: Uint8Array, sourceName = "<bytes>"): Safetensors {
  const op = "readSafetensors";
  const bad = (msg: string): never => fail(op, `${sourceName}: ${msg}`);
  if (bytes.length < 8) {
    bad(
      `the file is ${bytes.length} bytes, shorter than the 8-byte header length (truncated or not a safetensors file)`,
    );
  }
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(bytes.length - 8)) {
    bad(
      `the header length ${n64} runs past the end of the file (${bytes.length} bytes; truncated or not a safetensors file)`,
    );
  }
  const n = Number(n64);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    return bad(`the ${n}-byte header is not valid UTF-8`);
  }
  if (!text.startsWith("{")) bad(`the header does not start with "{" (not a safetensors file?)`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return bad(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    bad(
      `the header must be a JSON object, got ${
        Array.isArray(header) ? "an array" : JSON.stringify(header)
      }`,
    );
  }
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) bad(`the header lists ${JSON.stringify(k)} twice`);
    seen.add(k);
  }
  const h = header as Record<string, unknown>;
  const metadata = "__metadata__" in h ? checkMetadata(op, sourceName, h.__metadata__) : {};
  const bufLen = bytes.length - 8 - n;
  const entries: {
    name: string;
    dtype: SafetensorsDtype;
    shape: number[];
    begin: number;
    end: number;
  }[] = [];
  for (const [name, info] of Object.entries(h)) {
    if (name === "__metadata__") continue;
    const where = `tensor ${JSON.stringify(name)}`;
    if (info === null || typeof info !== "object" || Array.isArray(info)) {
      bad(`${where}: expected {dtype, shape, data_offsets}, got ${JSON.stringify(info)}`);
    }
    const { dtype, shape, data_offsets: offs } = info as Record<string, unknown>;
    if (typeof dtype !== "string" || !DTYPES.includes(dtype as SafetensorsDtype)) {
      bad(`${where}: unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(", ")}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(
        `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]
    ) {
      bad(
        `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${
          JSON.stringify(offs)
        }`,
      );
    }
    const [begin, end] = offs as number[];
    const need = (shape as number[]).reduce((a, b) => a * b, 1) *
      DTYPE_SIZE[dtype as SafetensorsDtype];
    if (end - begin !== need) {
      bad(
        `${where}: data_offsets [${begin}, ${end}] hold ${
          end - begin
        } bytes but ${dtype}[${shape}] needs ${need}`,
      );
    }
    entries.push({ name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0, prev = "the start of the buffer";
  for (const e of sorted) {
    if (e.begin < pos) {
      bad(
        `tensor ${
          JSON.stringify(e.name)
        } (bytes ${e.begin}..${e.end}) overlaps ${prev} (ends at ${pos})`,
      );
    }
    if (e.begin > pos) {
      bad(
        `a gap of ${e.begin - pos} bytes lies between ${prev} (ends at ${pos}) and tensor ${
          JSON.stringify(e.name)
        } (starts at ${e.begin})`,
      );
    }
    pos = e.end;
    prev = `tensor ${JSON.stringify(e.name)}`;
  }
  if (pos > bufLen) {
    bad(
      `the tensor data ends at byte ${pos} of the buffer but the file holds only ${bufLen} bytes after the header (truncated: ${
        8 + n + pos
      } bytes expected, ${bytes.length} found)`,
    );
  }
  if (pos < bufLen) {
    bad(
      `${bufLen - pos} trailing bytes after the last tensor (${
        8 + n + pos
      } bytes expected, ${bytes.length} found)`,
    );
  }
  const tensors: Record<string, SafetensorsTensor> = {};
  const base = 8 + n;
  for (const e of entries) {
    tensors[e.name] = {
      dtype: e.dtype,
      shape: [...e.shape],
      data: decodeData(e.dtype, bytes.subarray(base + e.begin, base + e.end)),
    };
  }
  return { metadata: { ...metadata }, tensors };
}

/**
 * Converts a decoded tensor's data to moejit host storage for {@link moejitDtype}: floats to
 * Float32Array, integers to Int32Array/Uint32Array (range-checked), BOOL to a Uint8Array.
 *
 * @example
 * ```ts
 * const { tensors } = await mj.io.readSafetensors("state.safetensors");
 * const t = tensors.counts; // e.g. I64 from PyTorch
 * const counts = mj.tensor(mj.io.toMoejitData(t), t.shape, { dtype: mj.io.moejitDtype(t.dtype) });
 * ```
 */
export function toMoejitData(
  t: SafetensorsTensor,
  where = "tensor",
): Float32Array | Int32Array | Uint32Array | Uint8Array {
  const d = t.data;
  switch (moejitDtype(t.dtype)) {
    case "f32":
      return d instanceof Float32Array ? d : Float32Array.from(d as Float64Array);
    case "bool":
      return d as Uint8Array;
    case "i32":
    case "u32": {
      const i32 = moejitDtype(t.dtype) === "i32";
      if (d instanceof (i32 ? Int32Array : Uint32Array)) return d as Int32Array | Uint32Array;
      const out = i32 ? new Int32Array(d.length) : new Uint32Array(d.length);
      const [lo, hi] = INT_RANGE[i32 ? "I32" : "U32"]!;
      for (let i = 0; i < d.length; i++) {
        const v = Number(d[i]);
        if (!(v >= lo && v <= hi)) {
          fail(
            "readSafetensors",
            `${where}: element ${i} (${d[i]}) of ${t.dtype} does not fit ${i32 ? "i32" : "u32"}`,
          );
        }
        out[i] = v;
      }
      return out;
    }
    default:
      return fail("readSafetensors", `${where}: cannot convert ${t.dtype}`);
  }
}
