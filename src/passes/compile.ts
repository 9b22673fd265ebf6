/**
 * The compiler's driver: legalize → schedule → lower every kernel (through the kernel cache) for
 * a target → plan memory. A kernel that cannot be lowered as scheduled (a lowering conflict, too
 * many bindings) gets part of its group realized, and scheduling runs again.
 */
import { resetExpTable } from "../../codegen/exp.ts";
import { LoweringConflict, resetLowerCaches, scalarType } from "../../codegen/lower.ts";
import { WGSL_TARGET } from "../../codegen/target.ts";
import { envVar } from "../env.ts";
import type { Node } from "../ir/node.ts";
import { toposort } from "../ir/graph.ts";
import { DEFAULT_LIMITS, legalize } from "./legalize.ts";
import { type PlannedKernel, schedule } from "./schedule.ts";
import { cachedKernel } from "./kernel_cache.ts";
import { checkBufferSizes, describeStep, placeErrorRegions, planMemory } from "./memory_plan.ts";
import type { CompileOptions, Launch, SlotInfo, StepProgram } from "./step_program.ts";
import { DEFAULT_DEVICE_LIMITS, type DeviceLimits } from "./device_limits.ts";

export type { CompileOptions, Launch, SlotInfo, StepProgram } from "./step_program.ts";

/** The device limits a compilation works under. */
function deviceOf(opts: CompileOptions): DeviceLimits {
  const device = opts.device ?? DEFAULT_DEVICE_LIMITS;
  return opts.maxBindings === undefined ? device : { ...device, maxBindings: opts.maxBindings };
}
export { errorWords } from "./step_program.ts";

export function compileStep(
  roots: readonly Node[],
  isInput: (n: Node) => boolean,
  opts: CompileOptions,
): StepProgram {
  const target = opts.target ?? WGSL_TARGET;
  const { roots: legal } = legalize(roots, opts.limits ?? DEFAULT_LIMITS, isInput);
  const forced = new Set<Node>();
  for (let attempt = 0;; attempt++) {
    if (attempt > 10000) throw new Error("internal: scheduling did not converge");
    const sched = schedule(legal, isInput, {
      fuse: opts.fuse && !opts.checkNumerics,
      realizeConstants: opts.checkNumerics,
      prologues: target.prologues,
      transposeCopies: target.transposeCopies,
      groupedTransposes: target.groupedTransposes,
      gatherInPlace: target.gatherInPlace,
      forced,
    });
    try {
      return build(roots, legal, sched.inputs, sched.realized, sched.kernels, isInput, opts);
    } catch (e) {
      if (e instanceof LoweringConflict && !forced.has(e.node)) {
        if (envVar("MOEJIT_DEBUG_SCHEDULE")) {
          console.error(
            `schedule: realize ${e.node.op}${JSON.stringify(e.node.shape)}: ${e.message}`,
          );
        }
        forced.add(e.node);
        continue;
      }
      throw e;
    }
  }
}

function build(
  userRoots: readonly Node[],
  roots: readonly Node[],
  inputs: Node[],
  realized: ReadonlySet<Node>,
  kernels: PlannedKernel[],
  isInput: (n: Node) => boolean,
  opts: CompileOptions,
): StepProgram {
  resetExpTable();
  resetLowerCaches();
  const target = opts.target ?? WGSL_TARGET;
  const device = deviceOf(opts);
  const bytesOf = (n: Node) => Math.max(4, n.size * target.itemBytes(scalarType(n.dtype)));
  const slotOf = new Map<Node, number>();
  const slots: SlotInfo[] = [];
  inputs.forEach((n, i) => {
    slotOf.set(n, slots.length);
    slots.push({ bytes: bytesOf(n), node: n, kind: "input", index: i, label: `input ${i}` });
  });
  const outputs = [...new Set(roots)];
  for (const k of kernels) {
    slotOf.set(k.root, slots.length);
    const outIndex = outputs.indexOf(k.root);
    slots.push({
      bytes: bytesOf(k.root),
      node: k.root,
      kind: outIndex >= 0 ? "output" : "temp",
      index: outIndex,
      label: `${k.root.op}${JSON.stringify(k.root.shape)}`,
    });
  }
  const isRealized = (n: Node) => realized.has(n) || isInput(n);
  const launches: Launch[] = [];
  const lastUse = new Map<number, number>();
  const nodeOfSlot: Node[] = [];
  for (const [n, slot] of slotOf) nodeOfSlot[slot] = n;
  const slotOfKey = new Map<string, number>();
  for (const [n, slot] of slotOf) slotOfKey.set(n.key, slot);
  let nodeByKey: Map<string, Node> | undefined;
  const findNode = (key: string) => {
    nodeByKey ??= new Map(toposort(roots, isInput).map((n) => [n.key, n]));
    return nodeByKey.get(key);
  };
  const finiteCheck = (n: Node) => {
    const slot = slotOf.get(n);
    if (!opts.checkNumerics || n.dtype !== "f32" || n.size === 0 || slot === undefined) return;
    const program = target.finiteCheck(`${n.op}${JSON.stringify(n.shape)}`, n.size, 0);
    const li = launches.length;
    lastUse.set(slot, li);
    launches.push({ program, slots: [slot], work: n.size, finite: n });
  };
  inputs.forEach(finiteCheck);
  for (const k of kernels) {
    let made = cachedKernel(
      k,
      target,
      isRealized,
      slotOf,
      nodeOfSlot,
      slotOfKey,
      findNode,
      device.maxBindings,
    );
    const scratch = made.find((l) => l.scratch?.length)?.scratch ?? [];
    if (scratch.length) {
      // The kernel's scratch buffers become temporaries of this step.
      const base = slots.length;
      scratch.forEach((bytes, i) =>
        slots.push({
          bytes,
          node: k.root,
          kind: "temp",
          index: -1,
          label: `scratch ${i} of ${k.root.op}`,
        })
      );
      made = made.map((l) => ({ ...l, slots: l.slots.map((s) => (s < 0 ? base - s - 1 : s)) }));
    }
    for (const l of made) {
      const li = launches.length;
      for (const s of l.slots) lastUse.set(s, li);
      launches.push(l);
    }
    finiteCheck(k.root);
  }
  checkBufferSizes(slots, device);
  const temps = planMemory(slots, launches, lastUse);
  const errorBytes = placeErrorRegions(launches, device.bindingOffsetAlignment);
  const outputSlots = userRoots.map((_, i) => {
    const s = slotOf.get(roots[i]);
    if (s === undefined) throw new Error(`internal: output ${i} has no slot`);
    return s;
  });
  return {
    target: target.name,
    inputs,
    outputSlots,
    slots,
    launches,
    temps,
    errorBytes,
    describe: () => describeStep(launches, slots, temps),
  };
}
