/**
 * Value leaves: `buffer` nodes stand for computed or uploaded data. Each gets a fresh id, so two
 * buffers never intern to one node even when their contents are equal.
 */
import type { DType, TypedArray } from "../dtype.ts";
import { makeNode, type Node } from "./node.ts";

let nextBufferId = 1;

/** A new buffer leaf; `host` holds its data when it lives on the host. */
export function newBufferNode(
  shape: readonly number[],
  dtype: DType,
  host?: TypedArray,
): Node<"buffer"> {
  const node = makeNode("buffer", [], { id: nextBufferId++, shape: [...shape], dtype });
  if (host) node.host = host;
  return node;
}

/**
 * Ways to fetch a buffer's value to the host when it lives elsewhere (the WebGPU backend
 * registers one), so any backend can read any value.
 */
const hostFetchers: ((n: Node) => Promise<TypedArray> | undefined)[] = [];

export function registerHostFetcher(f: (n: Node) => Promise<TypedArray> | undefined): void {
  hostFetchers.push(f);
}

/** Makes sure `n.host` is set for a buffer leaf, fetching it from a device if needed. */
export async function ensureHost(n: Node): Promise<void> {
  if (n.op !== "buffer" || n.host) return;
  for (const f of hostFetchers) {
    const p = f(n);
    if (p) {
      n.host = await p;
      return;
    }
  }
  throw new Error(`internal: buffer ${n.dtype}[${n.shape}] has no value anywhere`);
}
