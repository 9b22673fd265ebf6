/** Prints a graph as SSA text, one node per line, sources first. */
import { argText, type Node } from "./node.ts";
import { toposort } from "./graph.ts";

function fmtArg(n: Node): string {
  const a = n.arg as Record<string, unknown> | null;
  if (!a) return "";
  const parts: string[] = [];
  for (const k of Object.keys(a).sort()) {
    // The node's own dtype and shape are printed after the colon already.
    if ((k === "shape" || k === "dtype") && n.op !== "scatterAdd" && n.op !== "cast") continue;
    parts.push(`${k}=${argText(a[k])}`);
  }
  return parts.length ? `[${parts.join(", ")}]` : "";
}

/**
 * SSA text for the graph of `roots`, e.g.
 * ```
 * %0 = buffer[id=1] : f32[2,3]
 * %1 = const[value=2] : f32[2,3]
 * %2 = mul %0, %1 : f32[2,3]
 * ```
 */
export function printGraph(roots: readonly Node[]): string {
  const order = toposort(roots);
  const name = new Map<Node, string>();
  const lines: string[] = [];
  order.forEach((n, i) => {
    name.set(n, `%${i}`);
    const srcs = n.src.map((s) => name.get(s)).join(", ");
    lines.push(
      `%${i} = ${n.op}${fmtArg(n)}${srcs ? " " + srcs : ""} : ${n.dtype}[${n.shape.join(",")}]`,
    );
  });
  if (roots.length > 1) lines.push(`return ${roots.map((r) => name.get(r)).join(", ")}`);
  return lines.join("\n");
}
