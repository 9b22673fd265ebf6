/**
 * The state a MoE layer carries between steps: named tensors that its estimator and balancers
 * declare (Default MoE's EMA defaults `ehat`, loss-free balancing's `lossFreeBias`, BIP's `bipQ`,
 * or any name a user-written estimator or balancer declares). Layers are functional: the state
 * goes in with a step's options and comes out with its result, and a checkpoint stores it under
 * these names.
 */
import { fail } from "../errors.ts";
import type { Tensor } from "../tensor.ts";

/** A layer's state: tensors by the name their estimator or balancer declares. */
export type LayerState = Record<string, Tensor>;

/** The sizes a state's initial value may depend on. */
export interface StateSizes {
  /** Experts. */
  N: number;
  /** Model width (the layer's input features); 0 in `moe.route`, which sees no input. */
  d: number;
  /** Experts per token. */
  topK: number;
}

/**
 * Declared state: each name with its value before the first step (what a layer uses when the
 * state passed in does not hold that name).
 *
 * @example
 * ```ts
 * const state: mj.moe.StateDeclaration = { emaLoad: ({ N }) => mj.zeros([N]) };
 * ```
 */
export type StateDeclaration = Readonly<Record<string, (sizes: StateSizes) => Tensor>>;

/** One declarer of state: its name for errors and what it declares. */
export interface StateOwner {
  who: string;
  state?: StateDeclaration;
}

/** Fails when two owners declare the same state name (they would overwrite each other). */
export function checkStateOwners(op: string, owners: readonly StateOwner[]): void {
  const by = new Map<string, string>();
  for (const o of owners) {
    for (const name of Object.keys(o.state ?? {})) {
      const prev = by.get(name);
      if (prev !== undefined) fail(op, `${prev} and ${o.who} both declare state ${name}`);
      by.set(name, o.who);
    }
  }
}

/**
 * The state the owners read: what was passed in, with every declared name it lacks set to its
 * initial value.
 */
export function filledState(
  given: LayerState | undefined,
  owners: readonly StateOwner[],
  sizes: StateSizes,
): LayerState {
  const out: LayerState = { ...(given ?? {}) };
  for (const o of owners) {
    for (const [name, init] of Object.entries(o.state ?? {})) {
      if (out[name] === undefined) out[name] = init(sizes);
    }
  }
  return out;
}

/**
 * The state a training step hands on: every declared name, updated or (when its owner left it
 * alone) as it came in, in the owners' declaration order (owners first to last, each in its own
 * order). Names nobody declares are dropped. The order of a step's output is the order of the
 * next step's input, so a fixed order lets step 1 and step 2 share one compiled program.
 */
export function orderedState(
  updated: LayerState,
  before: LayerState,
  owners: readonly StateOwner[],
): LayerState {
  const out: LayerState = {};
  for (const o of owners) {
    for (const name of Object.keys(o.state ?? {})) {
      const t = updated[name] ?? before[name];
      if (t !== undefined) out[name] = t;
    }
  }
  return out;
}

/**
 * The initial state of a layer whose estimator and balancers are `owners`, in the order a
 * training step returns it.
 *
 * @example
 * ```ts
 * const s = initialState([{ who: "lossFree", state: lossFree().state }], { N: 8, d: 64, topK: 2 });
 * ```
 */
export function initialState(owners: readonly StateOwner[], sizes: StateSizes): LayerState {
  return orderedState({}, filledState({}, owners, sizes), owners);
}
