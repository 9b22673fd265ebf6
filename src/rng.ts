/**
 * Counter-based random bits: Threefry-2x32 with 20 rounds (the generator JAX uses). Element i of
 * a draw with key (k0, k1) and stream s is threefry(k0, k1; i, s)[0]. Only 32-bit adds, xors and
 * rotations are involved, so the WGSL backend computes bit-identical values.
 */

const ROT_A = [13, 15, 26, 6];
const ROT_B = [17, 29, 16, 24];

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

/** First output word of Threefry-2x32 for key (k0, k1) and counter (c0, c1). */
export function threefry2x32(k0: number, k1: number, c0: number, c1: number): number {
  const k2 = (k0 ^ k1 ^ 0x1bd11bda) >>> 0;
  const ks = [k0 >>> 0, k1 >>> 0, k2];
  let x0 = (c0 + ks[0]) >>> 0;
  let x1 = (c1 + ks[1]) >>> 0;
  for (let block = 0; block < 5; block++) {
    const rot = block % 2 === 0 ? ROT_A : ROT_B;
    for (let r = 0; r < 4; r++) {
      x0 = (x0 + x1) >>> 0;
      x1 = rotl(x1, rot[r]);
      x1 = (x1 ^ x0) >>> 0;
    }
    x0 = (x0 + ks[(block + 1) % 3]) >>> 0;
    x1 = (x1 + ks[(block + 2) % 3] + block + 1) >>> 0;
  }
  return x0;
}

let globalSeed = 0;
let drawCounter = 0;

/**
 * Sets the seed for random draws that are not given one, and restarts their sequence.
 *
 * @example
 * ```ts
 * mj.seed(42);
 * const a = mj.randn([2, 3]); // same numbers on every run and every backend
 * ```
 */
export function seed(s: number): void {
  if (!Number.isInteger(s) || s < 0) {
    throw new Error(`seed: expected a non-negative integer, got ${s}`);
  }
  globalSeed = s >>> 0;
  drawCounter = 0;
}

/** The Threefry key of a draw: an explicit seed, or the next key of the global sequence. */
export function drawKey(explicit?: number): [number, number] {
  if (explicit !== undefined) {
    return [explicit >>> 0, Math.floor(explicit / 4294967296) >>> 0];
  }
  drawCounter++;
  return [globalSeed, (0x80000000 | drawCounter) >>> 0];
}
