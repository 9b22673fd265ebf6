/**
 * Graph nodes: immutable and interned. Building the same (op, args, sources) twice returns the
 * same object, whose `key` is a content hash over the whole sub-graph (a Merkle key). Keys
 * identify compiled steps and kernels in the caches.
 */
import type { DType, TypedArray } from "../dtype.ts";
import type { Shape } from "../shape.ts";
import { type Inferred, type OpArgs, type OpName, OPS } from "./ops.ts";
import { calledOp, fail } from "../errors.ts";
import { recordSite } from "../numerics.ts";
import { fmtShape, MAX_ELEMENTS, prod } from "../shape.ts";

let nextSerial = 0;

export class Node<K extends OpName = OpName> {
  /** Content key: equal keys mean equal computations. */
  readonly key: string;
  /** Creation order; stable within a process, used for deterministic orderings. */
  readonly serial: number;
  /** Host data for `buffer` leaves created from user data; not part of the key. */
  host?: TypedArray;

  constructor(
    readonly op: K,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly src: readonly Node[],
    readonly arg: OpArgs[K],
    key: string,
  ) {
    this.key = key;
    this.serial = nextSerial++;
    Object.freeze(this.shape);
    Object.freeze(this.src);
  }

  get size(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }
}

/** Stable text for an op argument: sorted keys, and numbers that JSON cannot spell. */
export function argText(a: unknown): string {
  if (a === null || a === undefined) return "";
  if (typeof a === "number") {
    if (Number.isNaN(a)) return "NaN";
    if (a === Infinity) return "Inf";
    if (a === -Infinity) return "-Inf";
    if (Object.is(a, -0)) return "-0";
    return String(a);
  }
  if (typeof a === "string") return JSON.stringify(a);
  if (typeof a === "boolean") return a ? "true" : "false";
  if (Array.isArray(a)) return `[${a.map(argText).join(",")}]`;
  const o = a as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${k}:${argText(o[k])}`).join(",")}}`;
}

/** cyrb53-style 53-bit hash; two seeds give ~106 bits of key. */
function hash53(str: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed, h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** A 106-bit content hash of a string, as 22 base-36 characters. */
export function contentHash(s: string): string {
  return hash53(s, 0).toString(36).padStart(11, "0") + hash53(s, 0x9e3779b9).toString(36)
    .padStart(11, "0");
}

const interned = new Map<string, WeakRef<Node>>();
const finalizer = new FinalizationRegistry<string>((desc) => {
  const ref = interned.get(desc);
  if (ref && ref.deref() === undefined) interned.delete(desc);
});

const createHooks = new Map<OpName, (n: Node) => void>();

/**
 * Runs `hook` on every node of `op` when it is created (not when an existing node is found), so
 * that side tables keyed by node can follow a node rebuilt over new sources by a graph rewrite.
 */
export function onCreate<K extends OpName>(op: K, hook: (n: Node<K>) => void): void {
  createHooks.set(op, hook as (n: Node) => void);
}

/**
 * Creates (or finds) the node for `op` over `src` with `arg`. The shape/dtype rule of the op
 * registry runs here, so an inconsistent node can never exist.
 */
export function makeNode<K extends OpName>(op: K, src: readonly Node[], arg: OpArgs[K]): Node<K> {
  const def = OPS[op];
  if (def.arity >= 0 && src.length !== def.arity) {
    throw new Error(`IR invariant violated in ${op}: ${src.length} sources, expected ${def.arity}`);
  }
  const inf: Inferred = def.infer(src, arg);
  const size = prod(inf.shape);
  if (size > MAX_ELEMENTS) {
    fail(
      calledOp() ?? op,
      `the result would have shape ${fmtShape(inf.shape)}, ${size.toLocaleString("en-US")} ` +
        `elements; moejit indexes tensors with 32-bit integers, so a tensor holds at most ` +
        `${MAX_ELEMENTS.toLocaleString("en-US")} elements`,
    );
  }
  const desc = `${op}|${inf.dtype}|${inf.shape.join(",")}|${argText(arg)}|${
    src.map((s) => s.key).join(",")
  }`;
  const found = interned.get(desc)?.deref();
  if (found) return found as Node<K>;
  const node = new Node(op, inf.dtype, [...inf.shape], src, freeze(arg), contentHash(desc));
  interned.set(desc, new WeakRef(node));
  finalizer.register(node, desc);
  createHooks.get(op)?.(node);
  recordSite(node);
  return node;
}

/** A deep, frozen copy, so that a caller's arrays are never frozen or shared. */
function freeze<T>(a: T): T {
  if (Array.isArray(a)) return Object.freeze(a.map(freeze)) as T;
  if (a && typeof a === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(a)) o[k] = freeze(v);
    return Object.freeze(o) as T;
  }
  return a;
}

/** Number of live interned nodes (for tests and debugging). */
export function internedCount(): number {
  return interned.size;
}
