/** Fused attention: the online-softmax forward and the two recomputing backward kernels. */
import type { AttentionShape } from "../../../codegen/templates/attention.ts";
import type { OpArgs } from "../../ir/ops.ts";
import { prod } from "../../shape.ts";
import { registerOut } from "../bindings.ts";
import { type KernelOf, throughIdentity } from "../schedule.ts";
import type { Launch } from "../step_program.ts";
import { type KernelContext, launch } from "./context.ts";

type AttentionKernel = KernelOf<"attention" | "attentionBwdQ" | "attentionBwdKV">;

export function lowerAttention(k: AttentionKernel, ctx: KernelContext): Launch[] {
  const { local, label, target } = ctx;
  const root = k.root;
  const srcs = root.src.map(throughIdentity);
  const [q, kk] = srcs;
  const r = q.shape.length;
  const arg = root.arg as OpArgs["attention"];
  const shape: AttentionShape = {
    batch: prod(q.shape.slice(0, r - 2)),
    S: q.shape[r - 2],
    Sk: kk.shape[r - 2],
    Dh: q.shape[r - 1],
    causal: arg.causal,
    scale: arg.scale,
  };
  const slots = srcs.map((s) => local.of(s)!);
  const out = registerOut(local, root);
  const [qs, ks, vs, dO, lse, delta] = slots;
  const backward = { label, ...shape, q: qs, k: ks, v: vs, dO, lse, delta, out };
  const program = k.kind === "attention"
    ? target.attention({ label, ...shape, q: qs, k: ks, v: vs, out })
    : k.kind === "attentionBwdQ"
    ? target.attentionBwdQ(backward)
    : target.attentionBwdKV(backward);
  const rows = shape.batch * (k.kind === "attentionBwdKV" ? shape.Sk : shape.S);
  return [launch(ctx, program, rows, root)];
}
