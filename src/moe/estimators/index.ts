/**
 * The estimator registry with the built-in estimators registered, in this order (the order
 * errors and --help list them in): topk, dense, default, sparsemixer, sparsemixer-v1. Import the
 * registry from here: the built-ins register through the same `registerEstimator` a user calls.
 */
import { registerEstimator } from "../estimator.ts";
import { topk } from "./topk.ts";
import { dense } from "./dense.ts";
import { defaultEstimator } from "./default_moe.ts";
import { sparseMixer, sparseMixerV1Estimator } from "./sparsemixer.ts";

registerEstimator(topk);
registerEstimator(dense);
registerEstimator(defaultEstimator);
registerEstimator(sparseMixer);
registerEstimator(sparseMixerV1Estimator);

export {
  estimatorChoices,
  estimatorContext,
  estimatorNamed,
  estimatorOptions,
  estimators,
  registerEstimator,
  resolveEstimator,
  shorthandKeys,
} from "../estimator.ts";
export type {
  Estimator,
  EstimatorContext,
  EstimatorFn,
  EstimatorLayerContext,
  EstimatorOption,
  EstimatorRouting,
  EstimatorShorthand,
  EstimatorSpec,
  ResolvedEstimator,
} from "../estimator.ts";
