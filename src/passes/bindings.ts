/**
 * A kernel's bindings: the local binding numbers of the buffers it reads (inputs in first-use
 * order, then its output, scratch buffers where a template asks for them), and the launch that
 * maps them back to the step's slots — refusing a kernel that binds more buffers than the
 * device allows (the scheduler then realizes part of it and retries).
 */
import type { KernelProgram } from "../../codegen/kernel.ts";
import { KernelChecks, LoweringConflict } from "../../codegen/lower.ts";
import type { Node } from "../ir/node.ts";
import type { PlannedKernel } from "./schedule.ts";
import type { Launch } from "./step_program.ts";

/** Thrown when a kernel binds more buffers than the device allows; the node gets realized. */
export class TooManyBindings extends LoweringConflict {}

/**
 * Local binding numbers for a kernel: inputs in first-use order, then the output. Templates
 * with several passes may also ask for scratch buffers; their step slots are negative
 * placeholders (−1, −2, …) until `build` allocates them.
 */
export class LocalSlots {
  readonly order: number[] = [];
  /** Byte sizes of the scratch buffers, by placeholder −(i+1). */
  readonly scratchBytes: number[] = [];
  /** The kernel's index checks. */
  readonly checks = new KernelChecks();
  #local = new Map<number, number>();
  constructor(
    readonly global: (n: Node) => number | undefined,
    readonly isRealized: (n: Node) => boolean,
  ) {}
  /** A new scratch buffer of `bytes`, as a local binding number. */
  scratch(bytes: number): number {
    this.scratchBytes.push(Math.max(4, bytes));
    this.order.push(-this.scratchBytes.length);
    return this.order.length - 1;
  }
  of(n: Node): number | undefined {
    if (!this.isRealized(n)) return undefined;
    const g = this.global(n);
    if (g === undefined) throw new Error(`internal: realized ${n.op} has no slot`);
    let l = this.#local.get(g);
    if (l === undefined) {
      l = this.order.length;
      this.#local.set(g, l);
      this.order.push(g);
    }
    return l;
  }
}

export function launchOf(
  program: KernelProgram,
  local: LocalSlots,
  work: number,
  maxBindings: number,
  root: Node,
): Launch {
  if (program.bindings.length > maxBindings) {
    throw new TooManyBindings(
      heaviestSource(root, local.isRealized) ?? root,
      `binds ${program.bindings.length} buffers, the device allows ${maxBindings}`,
    );
  }
  const launch: Launch = {
    program,
    slots: program.bindings.filter((b) => !b.errors).map((b) => local.order[b.slot]),
    work,
  };
  if (local.scratchBytes.length) launch.scratch = local.scratchBytes;
  if (program.bindings.some((b) => b.errors)) launch.checks = [...local.checks.nodes];
  return launch;
}

/** The unrealized source subtree of `root` that reads the most distinct buffers. */
function heaviestSource(root: Node, isRealized: (n: Node) => boolean): Node | null {
  let best: Node | null = null, bestCount = 0;
  const reads = (n: Node, acc: Set<Node>, seen: Set<Node>) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (isRealized(n)) {
      acc.add(n);
      return;
    }
    n.src.forEach((s) => reads(s, acc, seen));
  };
  const visit = (n: Node, seen: Set<Node>) => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const s of n.src) {
      if (isRealized(s)) continue;
      const acc = new Set<Node>();
      reads(s, acc, new Set());
      if (acc.size > bestCount && s.src.length) {
        best = s;
        bestCount = acc.size;
      }
      visit(s, seen);
    }
  };
  visit(root, new Set());
  return bestCount > 1 ? best : null;
}

/** A kernel's label for errors and profiles: the ops it runs and what it writes. */
export function labelOf(k: PlannedKernel): string {
  const ops = new Set<string>();
  const seen = new Set<Node>();
  const walk = (n: Node, first: boolean) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (!first && n.src.length === 0) return;
    ops.add(n.op);
    for (const s of n.src) if (s.src.length && !(k.root !== s && seen.has(s))) walk(s, false);
  };
  walk(k.root, true);
  const list = [...ops].slice(0, 6).join("+");
  return `${k.kind === "fused" ? list : k.kind}${ops.size > 6 ? "+…" : ""} → ${k.root.dtype}[${
    k.root.shape.join(",")
  }]`;
}

/** Gives the kernel's output a local binding after its inputs. */
export function registerOut(local: LocalSlots, root: Node): number {
  const g = local.global(root)!;
  local.order.push(g);
  return local.order.length - 1;
}
