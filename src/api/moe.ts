/**
 * The `mj.moe` namespace: routing, dropless dispatch, grouped expert matmuls, combine, the MoE
 * layer (src/moe/), and upcycling dense models into an MoE (src/nn/upcycle.ts, which builds
 * whole models and so sits above src/moe/).
 */
export * from "../moe/index.ts";
export { upcycle } from "../nn/upcycle.ts";
export type { Upcycled, UpcycleOptions, UpcycleSource } from "../nn/upcycle.ts";
