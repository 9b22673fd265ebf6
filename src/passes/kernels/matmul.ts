/**
 * Matmul kernels: a batched matmul with its operands' read hooks (prologues: a cheap elementwise
 * producer applied to each element read) and its write hook (an epilogue: the elementwise
 * consumers of each output element), as expressions the target writes into its template.
 */
import { type Exp, i32, variable, walk as walkExp } from "../../../codegen/exp.ts";
import { groupReductions, Lowerer, LoweringConflict, unravel } from "../../../codegen/lower.ts";
import type { Node } from "../../ir/node.ts";
import { prod } from "../../shape.ts";
import { type LocalSlots, registerOut } from "../bindings.ts";
import type { KernelOf, MatmulOperand } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";

export function lowerMatmul(
  k: KernelOf<"matmul">,
  ctx: KernelContext,
): Launch[] {
  const { local, label } = ctx;
  const isRealized = (n: Node) => ctx.isRealized(n);
  const { mm, root } = k;
  if (groupReductions(root, isRealized).length) {
    throw new LoweringConflict(mm, "a reduction follows in the same kernel");
  }
  // The template writes one f32 per product element: an epilogue must keep both.
  if (root !== mm && (root.dtype !== "f32" || root.shape.join() !== mm.shape.join())) {
    throw new LoweringConflict(mm, "the epilogue changes the product's shape or dtype");
  }
  const [A, B] = mm.src;
  const r = mm.shape.length;
  const M = A.shape[r - 2], K = A.shape[r - 1], N = B.shape[r - 1];
  const batchShape = mm.shape.slice(0, r - 2);
  const batch = prod(batchShape);
  const a = local.of(k.a.node)!, b = local.of(k.b.node)!;
  // Hook-free kernels build no expressions here: interned ids order commutative operands, so
  // their WGSL stays exactly what it was before prologues existed.
  const hooked = root !== mm || k.a.prologue || k.b.prologue;
  const batchCoords = hooked
    ? unravel(variable("mm_b", "i32", 0, Math.max(0, batch - 1)), batchShape)
    : [];
  const readA = lowerPrologue(k.a, batchCoords, M, K, local, [a, b]);
  const readB = lowerPrologue(k.b, batchCoords, K, N, local, [a, b]);
  let epilogue: Exp | null = null;
  if (root !== mm) {
    const coords = [
      ...batchCoords,
      variable("mm_m", "i32", 0, Math.max(0, M - 1)),
      variable("mm_n", "i32", 0, Math.max(0, N - 1)),
    ];
    epilogue = lowerEpilogue(mm, root, local, coords, [a, b], "matmul");
  }
  const out = registerOut(local, root);
  const program = ctx.target.matmul({
    label,
    batch,
    M,
    K,
    N,
    a,
    b,
    out,
    strideA: k.a.batchBroadcast ? 0 : M * K,
    strideB: k.b.batchBroadcast ? 0 : K * N,
    transA: k.a.transposed,
    transB: k.b.transposed,
    readA,
    readB,
    epilogue,
  });
  return [launch(ctx, program, mm.size, root)];
}

/**
 * A matmul operand's prologue: its elementwise expression as a function of the element `mm_v`
 * read from its base, at batch coordinates `batch`, logical row `mm_r` and column `mm_c`; null
 * when the base is read as is (also when the operand is only a reshape of it). Like an
 * epilogue it may not read the vec4-bound operands; any conflict realizes the operand instead.
 */
function lowerPrologue(
  o: MatmulOperand,
  batch: Exp[],
  rows: number,
  cols: number,
  local: LocalSlots,
  operands: readonly number[],
): Exp | null {
  const e = o.prologue;
  if (!e) return null;
  const v = variable("mm_v", "f32");
  const r = variable("mm_r", "i32", 0, Math.max(0, rows - 1));
  const c = variable("mm_c", "i32", 0, Math.max(0, cols - 1));
  const lead = o.batchBroadcast ? e.shape.slice(0, -2).map(() => i32(0)) : batch;
  const lw = new Lowerer((n) => local.of(n), new Map(), e, new Map([[o.node, v]]));
  let read: Exp;
  try {
    read = lw.lower(e, [...lead, ...(o.transposed ? [c, r] : [r, c])]);
  } catch (err) {
    if (err instanceof LoweringConflict) throw new LoweringConflict(e, err.message);
    throw err;
  }
  walkExp([read], (x) => {
    if (x.op === "load" && operands.includes(x.attr as number)) {
      throw new LoweringConflict(e, "the prologue reads a matmul operand");
    }
  });
  return read === v ? null : read;
}

/**
 * The elementwise consumer `root` of a matmul-like routine `mm`, as an expression over the
 * accumulator `mm_v` at output coordinates `coords`. The fast paths bind the operands as vec4
 * arrays, so an epilogue that reads one of them needs its own kernel (a LoweringConflict).
 */
export function lowerEpilogue(
  mm: Node,
  root: Node,
  local: LocalSlots,
  coords: Exp[],
  operands: readonly number[],
  what: string,
): Exp {
  const acc = variable("mm_v", "f32");
  const lw = new Lowerer(
    (n) => (n === mm ? undefined : local.of(n)),
    new Map([[mm, { acc, kept: coords }]]),
    root,
  );
  const epilogue = lw.lower(root, coords);
  let aliased = false;
  walkExp([epilogue], (e) => {
    if (e.op === "load" && operands.includes(e.attr as number)) aliased = true;
  });
  if (aliased) throw new LoweringConflict(mm, `the epilogue reads a ${what} operand`);
  return epilogue;
}
