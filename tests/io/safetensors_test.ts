/**
 * safetensors: every dtype round-trips (F16/BF16 rounded from f32 to nearest even), 0-d and empty
 * tensors, and each kind of corrupt or truncated file is rejected with the file named.
 */
import * as io from "../../src/io/index.ts";
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "../../src/io/safetensors.ts";
import { assert } from "../helpers.ts";
import { tempDir } from "./util.ts";

Deno.test("safetensors: a second test round-trips every dtype, 0-d and empty tensors", async () => {
  const f32 = new Float32Array([1.5, -2.25, 3.1415927, 0, -0, Infinity, 1e-30, 65504]);
  const tensors: Record<string, io.SafetensorsInput> = {
    f32: { dtype: "F32", shape: [2, 4], data: f32 },
    f16: { dtype: "F16", shape: [8], data: f32 },
    bf16: { dtype: "BF16", shape: [2, 2, 2], data: f32 },
    i32: { dtype: "I32", shape: [3], data: new Int32Array([-(2 ** 31), 0, 2 ** 31 - 1]) },
    u32: { dtype: "U32", shape: [3], data: new Uint32Array([0, 1, 2 ** 32 - 1]) },
    bool: { dtype: "BOOL", shape: [5], data: new Uint8Array([1, 0, 0, 1, 1]) },
    u8: { dtype: "U8", shape: [1, 3], data: new Uint8Array([0, 128, 255]) },
    f64: { dtype: "F64", shape: [2], data: new Float64Array([Math.PI, -1e300]) },
    i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 62n), 5n]) },
    i8: { dtype: "I8", shape: [2], data: new Int8Array([-128, 127]) },
    i16: { dtype: "I16", shape: [2], data: new Int16Array([-300, 300]) },
    u16: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
    empty: { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
    emptyBool: { dtype: "BOOL", shape: [0], data: new Uint8Array(0) },
  };
  const { dir, cleanup } = await tempDir();
  try {
    await io.writeSafetensors(`${dir}/all.safetensors`, tensors, { note: "hi" });
    const { metadata, tensors: back } = await io.readSafetensors(`${dir}/all.safetensors`);
    assert.deepEqual(metadata, { format: "pt", note: "hi" });
    assert.deepEqual(Object.keys(back).sort(), Object.keys(tensors).sort());
    for (const [k, t] of Object.entries(tensors)) {
      assert.equal(back[k].dtype, t.dtype, k);
      assert.deepEqual(back[k].shape, t.shape, k);
    }
    assert.deepEqual(back.f32.data, f32);
    // F16/BF16 come back as Float32Array, rounded: exact where representable.
    assert.ok(back.f16.data instanceof Float32Array && back.bf16.data instanceof Float32Array);
    assert.deepEqual(Array.from(back.f16.data), [1.5, -2.25, 3.140625, 0, -0, Infinity, 0, 65504]);
    assert.deepEqual(Array.from(back.bf16.data), [
      1.5,
      -2.25,
      3.140625,
      0,
      -0,
      Infinity,
      9.98402083170343e-31,
      65536,
    ]);
    assert.deepEqual(back.i32.data, tensors.i32.data);
    assert.deepEqual(back.u32.data, tensors.u32.data);
    assert.deepEqual(back.bool.data, tensors.bool.data);
    assert.deepEqual(back.u8.data, tensors.u8.data);
    assert.deepEqual(back.f64.data, tensors.f64.data);
    assert.deepEqual(back.i64.data, tensors.i64.data);
    assert.deepEqual(back.i8.data, tensors.i8.data);
    assert.deepEqual(back.i16.data, tensors.i16.data);
    assert.deepEqual(back.u16.data, tensors.u16.data);
    assert.deepEqual(back.scalar.data, new Float32Array([42]));
    assert.equal(back.empty.data.length, 0);
    assert.equal(back.emptyBool.data.length, 0);
    // Every tensor is aligned to its element size in the file (largest elements laid out first).
    const bytes = await Deno.readFile(`${dir}/all.safetensors`);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal((8 + n) % 8, 0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const size: Record<string, number> = {
      F64: 8,
      I64: 8,
      F32: 4,
      I32: 4,
      U32: 4,
      F16: 2,
      BF16: 2,
      I16: 2,
      U16: 2,
    };
    for (const [k, v] of Object.entries(header)) {
      if (k === "__metadata__") continue;
      const { dtype, data_offsets } = v as { dtype: string; data_offsets: number[] };
      assert.equal(data_offsets[0] % (size[dtype] ?? 1), 0, k);
    }
    // moejit dtype mapping
    assert.equal(io.safetensorsDtype("bool"), "BOOL");
    assert.equal(io.moejitDtype("BF16"), "f32");
    assert.equal(io.moejitDtype("I64"), "i32");
    assert.deepEqual(
      io.toMoejitData({ dtype: "I64", shape: [2], data: new BigInt64Array([-7n, 5n]) }),
      new Int32Array([-7, 5]),
    );
    assert.throws(() => io.toMoejitData(back.i64, "t"), /does not fit i32/);
  } finally {
    await cleanup();
  }
});

Deno.test("safetensors: f16/bf16 rounding is to nearest even, with subnormals, overflow and NaN", () => {
  const x = new Float32Array([
    1 + 2 ** -11, // tie → even (1)
    1 + 3 * 2 ** -11, // tie → even (1 + 2^-9)
    2 ** -24, // smallest subnormal
    2 ** -25, // tie with 0 → 0
    3 * 2 ** -26, // above the tie → smallest subnormal
    2 ** -14 - 2 ** -25, // rounds up to the smallest normal
    65520, // rounds to inf
    -1e10,
    NaN,
  ]);
  const h = f32ToF16Bits(x);
  assert.deepEqual(Array.from(h), [
    0x3c00,
    0x3c02,
    0x0001,
    0x0000,
    0x0001,
    0x0400,
    0x7c00,
    0xfc00,
    h[8],
  ]);
  assert.ok(Number.isNaN(f16BitsToF32(h)[8]));
  // Every f16 pattern round-trips through f32.
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16Bits(f16BitsToF32(all));
  for (let i = 0; i < 65536; i++) {
    if ((i & 0x7c00) === 0x7c00 && (i & 0x3ff)) continue; // NaNs stay NaNs, payload may change
    assert.equal(back[i], i, `f16 0x${i.toString(16)}`);
  }
  const b = f32ToBf16Bits(
    new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, NaN, 3.4e38]),
  );
  assert.deepEqual(Array.from(b.subarray(0, 3)), [0x3f80, 0x3f82, 0x3f81]);
  assert.equal(b[3] & 0x7f80, 0x7f80);
  assert.ok(b[3] & 0x7f);
  assert.equal(b[4], 0x7f80); // rounds past the largest bf16 → inf
});

Deno.test("safetensors: encoding checks names, shapes, data and metadata", () => {
  assert.throws(
    () => io.encodeSafetensors({ a: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }),
    /tensor "a": shape \[2,2\] needs 4 elements, data has 3/,
  );
  assert.throws(
    () =>
      io.encodeSafetensors({
        a: { dtype: "F8" as io.SafetensorsDtype, shape: [1], data: new Float32Array(1) },
      }),
    /unknown dtype "F8"/,
  );
  assert.throws(
    () => io.encodeSafetensors({ a: { dtype: "I32", shape: [1], data: new Float32Array(1) } }),
    /integer typed array/,
  );
  assert.throws(
    () => io.encodeSafetensors({ a: { dtype: "U8", shape: [1], data: new Int32Array([300]) } }),
    /element 0 \(300\) does not fit U8/,
  );
  assert.throws(
    () => io.encodeSafetensors({}, { n: 3 as unknown as string }),
    /__metadata__ value "n" must be a string/,
  );
  assert.throws(
    () =>
      io.encodeSafetensors({
        __metadata__: { dtype: "F32", shape: [], data: new Float32Array(1) },
      }),
    /invalid tensor name/,
  );
});

// ---------------------------------------------------------------------------------------------
// Corrupt files: each case names the file and the problem.

const enc = new TextEncoder();

/** A file from a header (object or raw text) and a data buffer of `dataLen` bytes. */
function craft(
  header: unknown,
  dataLen: number,
  opts: { headerLen?: bigint; raw?: Uint8Array } = {},
): Uint8Array {
  const json = opts.raw ?? enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, opts.headerLen ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const ok = {
  __metadata__: { format: "pt" },
  a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
  b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
};
const with_ = (patch: Record<string, unknown>) => ({ ...ok, ...patch });

const corrupt: [string, Uint8Array, RegExp][] = [
  ["shorter than 8 bytes", new Uint8Array(5), /5 bytes, shorter than the 8-byte header length/],
  [
    "header length past the end",
    craft(ok, 12, { headerLen: 10_000n }),
    /header length 10000 runs past the end of the file/,
  ],
  [
    "non-UTF-8 header",
    craft(null, 0, { raw: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }),
    /header is not valid UTF-8/,
  ],
  ["invalid JSON header", craft('{"a": ', 0), /header is not valid JSON/],
  [
    "header not an object",
    craft("[1, 2]", 0),
    /header does not start with "\{"|header must be a JSON object/,
  ],
  ["header JSON null-ish", craft("{}", 0, { raw: enc.encode("{} extra") }), /not valid JSON/],
  [
    "unknown dtype",
    craft(with_({ b: { dtype: "F8", shape: [1], data_offsets: [8, 12] } }), 12),
    /tensor "b": unknown dtype "F8"/,
  ],
  [
    "shape not integers",
    craft(with_({ b: { dtype: "F32", shape: [1.5], data_offsets: [8, 12] } }), 12),
    /tensor "b": shape must be an array of non-negative integers/,
  ],
  [
    "data_offsets wrong size",
    craft(with_({ b: { dtype: "F32", shape: [2], data_offsets: [8, 12] } }), 12),
    /tensor "b": data_offsets \[8, 12\] hold 4 bytes but F32\[2\] needs 8/,
  ],
  [
    "data_offsets malformed",
    craft(with_({ b: { dtype: "F32", shape: [1], data_offsets: [12, 8] } }), 12),
    /data_offsets must be \[begin, end\]/,
  ],
  [
    "overlapping offsets",
    craft(with_({ b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }), 8),
    /tensor "b" \(bytes 4\.\.8\) overlaps tensor "a"/,
  ],
  [
    "gapped offsets",
    craft(with_({ b: { dtype: "F32", shape: [1], data_offsets: [12, 16] } }), 16),
    /a gap of 4 bytes lies between tensor "a" .* and tensor "b"/,
  ],
  [
    "truncated data",
    craft(ok, 10),
    /data ends at byte 12 of the buffer but the file holds only 10 bytes .*truncated/,
  ],
  ["trailing bytes", craft(ok, 20), /8 trailing bytes after the last tensor/],
  [
    "metadata not strings",
    craft(with_({ __metadata__: { format: "pt", step: 3 } }), 12),
    /__metadata__ value "step" must be a string/,
  ],
  [
    "metadata not an object",
    craft(with_({ __metadata__: ["pt"] }), 12),
    /__metadata__ must be an object of strings/,
  ],
  [
    "entry not an object",
    craft(with_({ b: 3 }), 12),
    /tensor "b": expected \{dtype, shape, data_offsets\}/,
  ],
  [
    "duplicate names",
    craft(
      '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
      4,
    ),
    /lists "a" twice/,
  ],
];

Deno.test("safetensors: the well-formed base file decodes", () => {
  const { tensors } = io.decodeSafetensors(craft(ok, 12), "base.safetensors");
  assert.deepEqual(Object.keys(tensors), ["a", "b"]);
});

for (const [what, bytes, re] of corrupt) {
  Deno.test(`safetensors: corrupt file rejected with its name: ${what}`, async () => {
    assert.throws(() => io.decodeSafetensors(bytes, "bad.safetensors"), (e: Error) => {
      assert.match(e.message, /^readSafetensors: bad\.safetensors: /);
      assert.match(e.message, re);
      return true;
    });
    const { dir, cleanup } = await tempDir();
    try {
      await Deno.writeFile(`${dir}/f.safetensors`, bytes);
      await assert.rejects(() => io.readSafetensors(`${dir}/f.safetensors`), (e: Error) => {
        assert.ok(e.message.includes(`${dir}/f.safetensors: `), e.message);
        assert.match(e.message, re);
        return true;
      });
    } finally {
      await cleanup();
    }
  });
}

Deno.test("safetensors: a missing file is named", async () => {
  await assert.rejects(
    () => io.readSafetensors("/nonexistent/x.safetensors"),
    /\/nonexistent\/x\.safetensors: no such file/,
  );
});

Deno.test("safetensors: reads a file written by the reference implementation (safetensors 0.8.0, numpy)", async () => {
  // Written by: save_file({'a': arange(6, f32).reshape(2,3), 'h': [1.5,-2,65504] f16, 'i': [1,-2] i64,
  //   'b': [True,False], 'z': zeros((0,2), f32), 's': array(3.0, f64), 'u': [7] u16},
  //   metadata={'format':'pt','k':'v'})
  const path = new URL("./fixtures/reference_numpy.safetensors", import.meta.url);
  const { metadata, tensors: t } = await io.readSafetensors(path.pathname);
  assert.deepEqual(metadata, { format: "pt", k: "v" });
  assert.deepEqual(t.a.shape, [2, 3]);
  assert.deepEqual(t.a.data, new Float32Array([0, 1, 2, 3, 4, 5]));
  assert.deepEqual(t.h.data, new Float32Array([1.5, -2, 65504]));
  assert.deepEqual(t.i.data, new BigInt64Array([1n, -2n]));
  assert.deepEqual(t.b.data, new Uint8Array([1, 0]));
  assert.deepEqual(t.z.shape, [0, 2]);
  assert.deepEqual(t.s.shape, []);
  assert.deepEqual(t.s.data, new Float64Array([3]));
  assert.deepEqual(t.u.data, new Uint16Array([7]));
});
