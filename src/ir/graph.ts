/** Graph walks over interned nodes. Iterative, so deep graphs never hit the stack limit. */
import type { Node } from "./node.ts";

/**
 * Nodes reachable from `roots`, sources before users, in a deterministic order (depth-first
 * post-order, sources visited left to right). `stop(n)` prunes a node's sources (the node itself
 * is still listed): used to stop at already-realized values.
 */
export function toposort(roots: readonly Node[], stop?: (n: Node) => boolean): Node[] {
  const order: Node[] = [];
  const state = new Map<Node, 1 | 2>(); // 1 = on the stack, 2 = done
  const stack: [Node, number][] = [];
  for (const r of roots) {
    if (state.has(r)) continue;
    stack.push([r, 0]);
    state.set(r, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [n, i] = top;
      const srcs = stop?.(n) ? [] : n.src;
      if (i < srcs.length) {
        top[1]++;
        const s = srcs[i];
        if (!state.has(s)) {
          state.set(s, 1);
          stack.push([s, 0]);
        }
      } else {
        stack.pop();
        state.set(n, 2);
        order.push(n);
      }
    }
  }
  return order;
}

/** For each node in `order`, the nodes in `order` that use it (with multiplicity). */
export function consumers(order: readonly Node[]): Map<Node, Node[]> {
  const m = new Map<Node, Node[]>();
  for (const n of order) m.set(n, []);
  for (const n of order) for (const s of n.src) m.get(s)?.push(n);
  return m;
}
