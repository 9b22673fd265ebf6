/**
 * A run's plots, drawn from its metrics log (so a resumed run's plots cover the whole history)
 * and written next to it; the drawing itself is reportPlots in plots.ts.
 */
import type { ModelConfig } from "../nn/config.ts";
import { writeFileAtomic } from "../io/files.ts";
import { reportPlots } from "./plots.ts";

/**
 * Writes loss.svg, max_vio.svg and expert_load.svg into `dir` from metrics.jsonl rows; returns
 * the paths written (plots without data are skipped).
 *
 * @example
 * ```ts
 * const plots = await writeReportPlots("out/grin", await mj.io.readMetrics("out/grin/metrics.jsonl"), config);
 * ```
 */
export async function writeReportPlots(
  dir: string,
  rows: readonly Record<string, unknown>[],
  config: ModelConfig,
): Promise<string[]> {
  const written: string[] = [];
  for (const { file, svg } of reportPlots(rows, config)) {
    const p = dir.endsWith("/") ? dir + file : `${dir}/${file}`;
    await writeFileAtomic(p, svg);
    written.push(p);
  }
  return written;
}
