/**
 * A run's plots, drawn from its metrics log (so a resumed run's plots cover the whole history):
 * loss and validation perplexity, MaxVio per logged step and layer, and a layer × expert load
 * heatmap over training.
 */
import type { ModelConfig } from "../nn/config.ts";
import { heatmap, lineChart, type Series } from "../io/svg.ts";
import { writeFileAtomic } from "../io/files.ts";

type Row = Record<string, unknown>;
type LayerRow = { tokens_per_expert?: number[]; max_vio?: number };

const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

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
  rows: readonly Row[],
  config: ModelConfig,
): Promise<string[]> {
  const written: string[] = [];
  const path = (f: string) => (dir.endsWith("/") ? dir + f : `${dir}/${f}`);
  const train = rows.filter((r) => num(r.step) && num(r.loss));
  const val = rows.filter((r) => num(r.step) && num(r.val_ppl));

  if (train.length) {
    const series: Series[] = [
      {
        name: "training",
        x: train.map((r) => r.step as number),
        y: train.map((r) => r.ce as number ?? r.loss as number),
      },
    ];
    if (val.length) {
      series.push({
        name: "validation",
        x: val.map((r) => r.step as number),
        y: val.map((r) => Math.log(r.val_ppl as number)),
      });
    }
    const p = path("loss.svg");
    await writeFileAtomic(
      p,
      lineChart(series, { title: "Next-token loss", xLabel: "step", yLabel: "nats per token" }),
    );
    written.push(p);
  }
  if (val.length) {
    const p = path("val_ppl.svg");
    await writeFileAtomic(
      p,
      lineChart([{
        name: "validation perplexity",
        x: val.map((r) => r.step as number),
        y: val.map((r) => r.val_ppl as number),
      }], {
        title: "Validation perplexity",
        xLabel: "step",
        yLabel: "perplexity",
        logY: true,
      }),
    );
    written.push(p);
  }

  const moe = train.filter((r) => Array.isArray(r.layers) && (r.layers as LayerRow[]).length > 0);
  if (moe.length && config.ffn === "moe") {
    const L = (moe[0].layers as LayerRow[]).length;
    const steps = moe.map((r) => r.step as number);
    const vio: Series[] = Array.from({ length: L }, (_, l) => ({
      name: `layer ${l}`,
      x: steps,
      y: moe.map((r) => (r.layers as LayerRow[])[l]?.max_vio ?? NaN),
    }));
    const pv = path("max_vio.svg");
    await writeFileAtomic(
      pv,
      lineChart(vio, {
        title: "MaxVio_batch per logged step (0 = perfect balance)",
        xLabel: "step",
        yLabel: "MaxVio",
      }),
    );
    written.push(pv);

    // Rows: (layer, expert); columns: logged steps; values: share of the layer's (token, slot)
    // pairs, so 1/E is perfect balance whatever the batch size.
    const values: number[][] = [], names: string[] = [];
    for (let l = 0; l < L; l++) {
      for (let e = 0; e < config.experts; e++) {
        names.push(`L${l} E${e}`);
        values.push(moe.map((r) => {
          const c = (r.layers as LayerRow[])[l]?.tokens_per_expert ?? [];
          const total = c.reduce((a, b) => a + b, 0);
          return total > 0 ? (c[e] ?? 0) / total : NaN;
        }));
      }
    }
    const ph = path("expert_load.svg");
    await writeFileAtomic(
      ph,
      heatmap(values, {
        title: `Expert load share (white = balanced 1/${config.experts}; red over, blue under)`,
        rowLabel: "layer, expert",
        colLabel: "step",
        rowNames: names,
        colNames: steps.map(String),
        center: 1 / config.experts,
      }),
    );
    written.push(ph);
  }
  return written;
}
