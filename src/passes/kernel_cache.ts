/**
 * The kernel cache: a kernel's signature (its kind, its root's content key, and the realized
 * values it reads) determines its code, so later steps with the same kernel skip lowering and
 * emission. Bindings are stored by content key and resolved to the current step's slots.
 */
import type { KernelProgram } from "../../codegen/kernel.ts";
import type { Target } from "../../codegen/target.ts";
import type { Node } from "../ir/node.ts";
import { stats } from "../stats.ts";
import { lowerKernel } from "./kernels/index.ts";
import type { PlannedKernel } from "./schedule.ts";
import type { Launch } from "./step_program.ts";

const kernelCache = new Map<
  string,
  {
    programs: KernelProgram[];
    reads: string[][];
    work: number[];
    scratch: number[];
    /** Content keys of each launch's checkIndex nodes. */
    checks: (string[] | undefined)[];
  }
>();
const KERNEL_CACHE_LIMIT = 4096;

function kernelSignature(
  k: PlannedKernel,
  target: Target,
  isRealized: (n: Node) => boolean,
): string {
  const reads: string[] = [];
  const seen = new Set<Node>();
  const visit = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n !== k.root && isRealized(n)) {
      reads.push(n.key);
      return;
    }
    n.src.forEach(visit);
  };
  visit(k.root);
  return `${target.name}|${k.kind}|${k.root.key}|${reads.join(",")}`;
}

export function cachedKernel(
  k: PlannedKernel,
  target: Target,
  isRealized: (n: Node) => boolean,
  slotOf: Map<Node, number>,
  nodeOfSlot: Node[],
  slotOfKey: Map<string, number>,
  findNode: (key: string) => Node | undefined,
  maxBindings: number,
): Launch[] {
  const sig = kernelSignature(k, target, isRealized);
  const hit = kernelCache.get(sig);
  if (hit) {
    const resolve = (
      key: string,
    ) => (key.startsWith("#scratch") ? Number(key.slice(8)) : slotOfKey.get(key));
    const slots = hit.reads.map((keys) => keys.map(resolve));
    const checks = hit.checks.map((keys) => keys?.map(findNode));
    if (
      slots.every((l) => l.every((s) => s !== undefined)) &&
      checks.every((l) => !l || l.every((n) => n !== undefined))
    ) {
      return hit.programs.map((program, i) => ({
        program,
        slots: slots[i] as number[],
        work: hit.work[i],
        ...(hit.scratch.length ? { scratch: hit.scratch } : {}),
        ...(checks[i] ? { checks: checks[i] as Node[] } : {}),
      }));
    }
  }
  const made = lowerKernel(k, target, isRealized, (n) => slotOf.get(n), maxBindings);
  stats.kernelsGenerated += made.length;
  if (kernelCache.size >= KERNEL_CACHE_LIMIT) kernelCache.delete(kernelCache.keys().next().value!);
  kernelCache.set(sig, {
    programs: made.map((l) => l.program),
    reads: made.map((l) =>
      l.slots.map((slot) => (slot < 0 ? `#scratch${slot}` : nodeOfSlot[slot].key))
    ),
    work: made.map((l) => l.work),
    scratch: made.find((l) => l.scratch?.length)?.scratch ?? [],
    checks: made.map((l) => l.checks?.map((n) => n.key)),
  });
  return made;
}
