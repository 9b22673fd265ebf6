/**
 * What lowering one planned kernel needs: the target that writes it, which values are realized
 * (read from buffers), the kernel's bindings, its label and the device's binding limit.
 */
import type { Target } from "../../../codegen/target.ts";
import type { KernelProgram } from "../../../codegen/kernel.ts";
import type { Node } from "../../ir/node.ts";
import { launchOf, LocalSlots } from "../bindings.ts";
import type { Launch } from "../step_program.ts";

export interface KernelContext {
  target: Target;
  isRealized(n: Node): boolean;
  /** The step slot of a realized value. */
  globalSlot(n: Node): number | undefined;
  local: LocalSlots;
  label: string;
  maxBindings: number;
}

/** The launch of `program` over `work` invocations, bound through the context's slots. */
export function launch(
  ctx: KernelContext,
  program: KernelProgram,
  work: number,
  root: Node,
): Launch {
  return launchOf(program, ctx.local, work, ctx.maxBindings, root);
}

/** A fresh set of bindings for a second program of the same kernel (e.g. a zero fill). */
export function freshSlots(ctx: KernelContext): LocalSlots {
  return new LocalSlots((n) => ctx.globalSlot(n), (n) => ctx.isRealized(n));
}
