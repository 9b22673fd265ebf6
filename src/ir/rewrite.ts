/** Bottom-up graph rewriting over interned nodes. */
import { toposort } from "./graph.ts";
import { makeNode, type Node } from "./node.ts";
import { indexCheckLabel, labelIndexCheck } from "./checks.ts";
import { copySite } from "../numerics.ts";

/**
 * Rebuilds the graph of `roots` bottom-up. Each node is first rebuilt over its rewritten sources
 * (the same object when nothing below changed), then `rule` may replace it (return undefined to
 * keep it). `stop(n)` marks nodes whose sources are left alone. Returns the rewritten roots and
 * the full old → new map.
 */
export function rewriteGraph(
  roots: readonly Node[],
  rule: (n: Node) => Node | undefined,
  stop?: (n: Node) => boolean,
): { roots: Node[]; map: Map<Node, Node> } {
  const map = new Map<Node, Node>();
  for (const n of toposort(roots, stop)) {
    let m = n;
    if (!stop?.(n) && n.src.length) {
      const src = n.src.map((s) => map.get(s) ?? s);
      if (src.some((s, i) => s !== n.src[i])) {
        m = makeNode(n.op, src, n.arg);
        // Side tables keyed by node follow the rebuilt node.
        if (n.op === "checkIndex") labelIndexCheck(m, indexCheckLabel(n), true);
      }
    }
    const r = rule(m) ?? m;
    copySite(n, r);
    map.set(n, r);
  }
  return { roots: roots.map((r) => map.get(r)!), map };
}
