/**
 * The experts of a MoE layer: their parameters, checked, and their forward over dispatched rows
 * (grouped matmuls) or over every token (for estimators that need all of them). SwiGLU experts
 * (`down(silu(gate·x) ⊙ up·x)`) when params have `gate`, otherwise `down(act(up·x))` with act =
 * gelu or relu.
 */
import { fail } from "../errors.ts";
import { Tensor } from "../tensor.ts";
import { describe } from "../ops/prim.ts";
import type { RoutingTable } from "./table.ts";
import { groupedMatmul } from "./dispatch.ts";

/**
 * Expert parameters: `router` [N, d] and optionally its bias `routerBias` [N] (logits =
 * x·routerᵀ + routerBias); `up` [N, f, d]; `down` [N, d, f]; SwiGLU adds `gate`; an estimator
 * may declare more (SparseMixer-v1's per-channel gate scale `omega` [d], init ones).
 */
export interface MoeParams {
  router: Tensor;
  routerBias?: Tensor;
  up: Tensor;
  down: Tensor;
  gate?: Tensor;
  /** SparseMixer-v1's per-channel gate scale [d] (the parameter that estimator declares). */
  omega?: Tensor;
  /** Parameters another estimator declares. */
  [extra: string]: Tensor | undefined;
}

/** A parameter an estimator adds to its layers: its shape for model width d, and what it is. */
export interface ExtraParam {
  shape(d: number): number[];
  doc: string;
}

/** Activation of ungated experts. */
export type ExpertActivation = "gelu" | "relu";

function checkParam(name: string, t: unknown, shape: number[]): Tensor {
  if (!(t instanceof Tensor) || t.dtype !== "f32" || t.shape.join() !== shape.join()) {
    fail(
      "moe.layer",
      `params.${name} must be f32[${shape.join(", ")}], got ${
        t instanceof Tensor ? describe(t) : typeof t
      }`,
    );
  }
  return t;
}

/** The parameters every layer may have. */
export const BASE_PARAMS = ["router", "routerBias", "up", "down", "gate"] as const;

/**
 * Shapes of the expert parameters, checked, with the `extra` parameters the layer's estimator
 * declares: [N, d, f, swiglu].
 */
export function checkMoeParams(
  x: Tensor,
  params: MoeParams,
  extra: Readonly<Record<string, ExtraParam>> = {},
): [number, number, number, boolean] {
  if (!params || typeof params !== "object") fail("moe.layer", "expected a params object");
  const known: string[] = [...BASE_PARAMS, ...Object.keys(extra)];
  for (const k of Object.keys(params)) {
    if (!known.includes(k)) {
      fail("moe.layer", `unknown parameter ${JSON.stringify(k)}; expected ${known.join(", ")}`);
    }
  }
  if (!(x instanceof Tensor) || x.ndim !== 2 || x.dtype !== "f32") {
    fail("moe.layer", `expected x f32[T, d], got ${x instanceof Tensor ? describe(x) : typeof x}`);
  }
  const d = x.shape[1];
  if (!(params.router instanceof Tensor) || params.router.ndim !== 2) {
    fail("moe.layer", `params.router must be f32[N, ${d}]`);
  }
  const N = params.router.shape[0];
  checkParam("router", params.router, [N, d]);
  if (params.routerBias !== undefined) checkParam("routerBias", params.routerBias, [N]);
  if (!(params.up instanceof Tensor) || params.up.ndim !== 3) {
    fail("moe.layer", `params.up must be f32[${N}, f, ${d}]`);
  }
  const f = params.up.shape[1];
  checkParam("up", params.up, [N, f, d]);
  checkParam("down", params.down, [N, d, f]);
  if (params.gate !== undefined) checkParam("gate", params.gate, [N, f, d]);
  for (const [name, e] of Object.entries(extra)) {
    const p = (params as unknown as Record<string, unknown>)[name];
    if (p !== undefined) checkParam(name, p, e.shape(d));
  }
  return [N, d, f, params.gate !== undefined];
}

function activate(h: Tensor, act: ExpertActivation): Tensor {
  return act === "gelu" ? h.gelu() : h.relu();
}

/**
 * Expert outputs for expert-ordered rows `xs` ([T·k, d] → [T·k, d]).
 *
 * @example
 * ```ts
 * const ys = mj.moe.expertForward(mj.moe.dispatch(x, table), params, table, "gelu");
 * ```
 */
export function expertForward(
  xs: Tensor,
  params: MoeParams,
  table: RoutingTable,
  act: ExpertActivation,
): Tensor {
  const h = params.gate
    ? groupedMatmul(xs, params.gate, table).silu().mul(groupedMatmul(xs, params.up, table))
    : activate(groupedMatmul(xs, params.up, table), act);
  return groupedMatmul(h, params.down, table);
}

/**
 * Every expert on every token: [N, T, d] (for the dense estimator).
 *
 * @example
 * ```ts
 * const all = mj.moe.allExperts(x, params, "gelu"); // [N, T, d]
 * ```
 */
export function allExperts(x: Tensor, params: MoeParams, act: ExpertActivation): Tensor {
  const xb = x.unsqueeze(0); // [1, T, d], broadcast over experts
  const proj = (w: Tensor) => xb.matmul(w.swapAxes(1, 2)); // [N, T, f]
  const h = params.gate
    ? proj(params.gate).silu().mul(proj(params.up))
    : activate(proj(params.up), act);
  return h.matmul(params.down.swapAxes(1, 2)); // [N, T, d]
}
