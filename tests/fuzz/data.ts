/**
 * Input data of fuzz programs: deterministic functions of (count, seed, range), imported by the
 * printed reproduction snippets too, so that they see the same numbers.
 */

/** mulberry32: a 32-bit state PRNG giving uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n f32 values uniform in [lo, hi). */
export function uniform(n: number, seed: number, lo: number, hi: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** n i32 values uniform in [lo, hi]. */
export function uniformInts(n: number, seed: number, lo: number, hi: number): Int32Array {
  const r = mulberry32(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + Math.floor((hi - lo + 1) * r());
  return out;
}

/** n i32 indices uniform in [0, bound). */
export function indices(n: number, seed: number, bound: number): Int32Array {
  const r = mulberry32(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(bound * r());
  return out;
}
