/**
 * Training compute of a language-model configuration, for compute-matched comparisons (BAM's
 * "CM" rows): FLOPs per trained token by the usual accounting — 6 per active weight that
 * multiplies an activation (forward 2, backward 4) and 3 × 4·S·d per attention over a context of S
 * (the scores QKᵀ and the weighted sum of V, forward 2·S·d each) for every attention expert a
 * token uses. The input embedding is a lookup (no FLOPs); a tied embedding counts once, as the
 * output projection.
 */
import { type ModelConfig, parameterCount } from "../nn/config.ts";

/**
 * Training FLOPs per token of `config` on sequences of `seq` tokens.
 *
 * @example
 * ```ts
 * const ratio = trainingFlopsPerToken(btx, 128) / trainingFlopsPerToken(bam, 128);
 * const cmSteps = Math.round(steps * ratio); // BAM's steps for BTX's compute
 * ```
 */
export function trainingFlopsPerToken(config: ModelConfig, seq: number): number {
  const { active } = parameterCount(config);
  const lookup = config.tiedEmbeddings ? 0 : config.vocabSize * config.dModel;
  const attentions = config.attnTopK > 0 ? config.attnTopK : config.attnExperts;
  return 6 * (active - lookup) + 3 * 4 * seq * config.dModel * config.nLayers * attentions;
}
