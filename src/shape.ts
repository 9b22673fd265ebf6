/** Shape helpers shared by the IR, the front end and the backends. */
export type Shape = readonly number[];

/**
 * The most elements a tensor may have: kernels index with 32-bit signed integers, so a larger
 * tensor would silently wrap (a sum of 1e10 ones came out 4230196224). Every backend refuses it
 * when the node is built.
 */
export const MAX_ELEMENTS = 2 ** 31 - 1;

export function prod(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function fmtShape(s: Shape): string {
  return `[${s.join(",")}]`;
}

/** NumPy broadcasting of two shapes; returns null when they are incompatible. */
export function broadcastShapes(a: Shape, b: Shape): number[] | null {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da === db || db === 1) out[i] = da;
    else if (da === 1) out[i] = db;
    else return null;
  }
  return out;
}

export function isIntegerDim(d: unknown): d is number {
  return typeof d === "number" && Number.isInteger(d) && d >= 0;
}
