/**
 * What a `checkIndex` node guards, for the error it raises: the op the user called, the axis the
 * index addresses, and the user's call site. Labels live beside the graph, not in it, so that
 * equal computations from different call sites still share one node, one kernel and one compiled
 * step (the first label stays).
 */
import type { Node } from "./node.ts";

export interface IndexCheckLabel {
  /** The op the user called (`takeRows`, `moe.route`, …). */
  op: string;
  /** What the index addresses, e.g. "axis 0" or "the experts". */
  axis: string;
  /** Where the user called it ("file:line:col"), when known. */
  site?: string;
}

const labels = new WeakMap<Node, IndexCheckLabel>();

/**
 * Attaches `label` to a checkIndex node unless it has one already, or always with `replace`
 * (a backend renames its inputs, and the renamed node — shared by every call of the same shape —
 * should speak for the latest call).
 */
export function labelIndexCheck(n: Node, label: IndexCheckLabel, replace = false): void {
  if ((replace || !labels.has(n)) && label !== UNLABELLED) labels.set(n, label);
}

/** The label of a checkIndex node (a generic one for nodes built without a label). */
export function indexCheckLabel(n: Node): IndexCheckLabel {
  return labels.get(n) ?? UNLABELLED;
}

const UNLABELLED: IndexCheckLabel = { op: "checkIndex", axis: "an axis" };

/** The message every backend raises for an out-of-range index. */
export function indexErrorText(label: IndexCheckLabel, index: number, size: number): string {
  return `index ${index} is out of range for ${label.axis} (size ${size}); ` +
    `expected an integer in 0..${size - 1}`;
}

/**
 * The bad index every backend reports when several are out of range: the smallest as an
 * unsigned 32-bit number (so the smallest index past the end, or else the negative one nearest
 * to 0). A device records it with one atomic max over the complemented bits, whatever the order
 * its threads run in.
 */
export function reportedIndex(bad: Iterable<number>): number | undefined {
  let best: number | undefined;
  for (const v of bad) {
    const u = v >>> 0;
    if (best === undefined || u < best) best = u;
  }
  return best === undefined ? undefined : best | 0;
}
