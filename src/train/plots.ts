/**
 * A run's plots drawn from its metrics records: loss and validation perplexity, MaxVio per logged
 * step and layer, and a layer × expert load heatmap over training. Pure functions of the records
 * (the browser bundle has them); report.ts writes them to files.
 */
import type { ModelConfig } from "../nn/config.ts";
import { heatmap, lineChart, type Series } from "../io/svg.ts";

/** One plot: its file name (e.g. "loss.svg") and its SVG text. */
export interface ReportPlot {
  file: string;
  svg: string;
}

type Row = Record<string, unknown>;
type LayerRow = { tokens_per_expert?: number[]; max_vio?: number };

const num = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/**
 * A run's plots as SVG text, from metrics records (the rows of metrics.jsonl, or records built in
 * memory): loss.svg, val_ppl.svg, max_vio.svg and expert_load.svg, each only when it has data.
 *
 * @example
 * ```ts
 * const rows = [{ step: 1, loss: 5.5, layers: [{ max_vio: 0.4, tokens_per_expert: [70, 58] }] }];
 * for (const { file, svg } of mj.train.reportPlots(rows, config)) console.log(file, svg.length);
 * ```
 */
export function reportPlots(
  rows: readonly Row[],
  config: ModelConfig,
): ReportPlot[] {
  const plots: ReportPlot[] = [];
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
    plots.push({
      file: "loss.svg",
      svg: lineChart(series, {
        title: "Next-token loss",
        xLabel: "step",
        yLabel: "nats per token",
      }),
    });
  }
  if (val.length) {
    plots.push({
      file: "val_ppl.svg",
      svg: lineChart([{
        name: "validation perplexity",
        x: val.map((r) => r.step as number),
        y: val.map((r) => r.val_ppl as number),
      }], {
        title: "Validation perplexity",
        xLabel: "step",
        yLabel: "perplexity",
        logY: true,
      }),
    });
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
    plots.push({
      file: "max_vio.svg",
      svg: lineChart(vio, {
        title: "MaxVio_batch per logged step (0 = perfect balance)",
        xLabel: "step",
        yLabel: "MaxVio",
      }),
    });

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
    plots.push({
      file: "expert_load.svg",
      svg: heatmap(values, {
        title: `Expert load share (white = balanced 1/${config.experts}; red over, blue under)`,
        rowLabel: "layer, expert",
        colLabel: "step",
        rowNames: names,
        colNames: steps.map(String),
        center: 1 / config.experts,
      }),
    });
  }
  return plots;
}
