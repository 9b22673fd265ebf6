/**
 * Small, dependency-free SVG charts for training reports: line charts (loss, perplexity,
 * MaxVio per step) and heatmaps (layer × expert load over training).
 */

export interface Series {
  name: string;
  /** y values, one per x (x = index + 1 unless `x` is given). */
  y: readonly number[];
  x?: readonly number[];
  /** A shaded band from `lo` to `hi` around the line (e.g. the spread over seeds), per x. */
  lo?: readonly number[];
  hi?: readonly number[];
}

export interface LineChartOptions {
  title: string;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic y axis (positive values only). */
  logY?: boolean;
  /** A dashed horizontal reference line at this y (e.g. 0 for differences), always in range. */
  refY?: number;
  width?: number;
  height?: number;
}

const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(+v.toPrecision(12));
  }
  return out;
}

/** A y-axis title, rotated, centred at height y. */
function yAxisLabel(text: string, y: number): string {
  return `<text x="16" y="${y}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${y})">${
    esc(text)
  }</text>`;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(+v.toPrecision(4));
}

/**
 * A line chart with axes, ticks and a legend; a series with `lo` and `hi` gets a shaded band.
 *
 * @example
 * ```ts
 * const svg = lineChart([{ name: "loss", y: losses }], { title: "Training loss", xLabel: "step" });
 * ```
 */
export function lineChart(series: readonly Series[], o: LineChartOptions): string {
  const W = o.width ?? 720, H = o.height ?? 420;
  // The legend's column is as wide as the longest name needs (about 6.5 px per character).
  const legend = Math.max(...series.map((s) => s.name.length), 0);
  const m = { l: 70, r: Math.max(160, Math.round(50 + 6.5 * legend)), t: 40, b: 50 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const pts = series.map((s) =>
    s.y.map((y, i) => [s.x ? s.x[i] : i + 1, y] as [number, number]).filter(([, y]) =>
      Number.isFinite(y) && (!o.logY || y > 0)
    )
  );
  // Band edges (a point with a bad edge is left out of the band, not of the line).
  const bands = series.map((s) =>
    s.lo && s.hi
      ? s.y.map((_, i) => [s.x ? s.x[i] : i + 1, s.lo![i], s.hi![i]] as [number, number, number])
        .filter(([, lo, hi]) =>
          Number.isFinite(lo) && Number.isFinite(hi) && (!o.logY || (lo > 0 && hi > 0))
        )
      : []
  );
  const all = [...pts.flat(), ...bands.flat().flatMap(([x, lo, hi]) => [[x, lo], [x, hi]])];
  const ref = o.refY !== undefined && Number.isFinite(o.refY) && (!o.logY || o.refY > 0)
    ? o.refY
    : undefined;
  if (ref !== undefined && all.length) all.push([all[0][0], ref]);
  const xs = all.map((p) => p[0]), ys = all.map((p) => (o.logY ? Math.log10(p[1]) : p[1]));
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  if (!o.logY && y0 > 0 && y0 < 0.3 * y1) y0 = 0;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - (((o.logY ? Math.log10(y) : y) - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  parts.push(
    `<text x="${m.l + pw / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      esc(o.title)
    }</text>`,
  );
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  );
  for (const t of niceTicks(x0, x1)) {
    parts.push(
      `<line x1="${sx(t)}" y1="${m.t + ph}" x2="${sx(t)}" y2="${m.t + ph + 5}" stroke="#666"/>`,
    );
    parts.push(
      `<text x="${sx(t)}" y="${m.t + ph + 18}" text-anchor="middle" font-size="11">${
        fmt(t)
      }</text>`,
    );
  }
  // A log axis with fewer than two powers of ten in its range gets ordinary ticks inside it.
  const yTicks = o.logY && Math.floor(y1) - Math.ceil(y0) + 1 < 2
    ? niceTicks(10 ** y0, 10 ** y1)
    : o.logY
    ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.max(1, Math.ceil(y1) - Math.floor(y0))).map((
      e,
    ) => 10 ** e)
    : niceTicks(y0, y1);
  for (const t of yTicks) {
    const yy = sy(t);
    if (yy < m.t - 1 || yy > m.t + ph + 1) continue;
    parts.push(`<line x1="${m.l}" y1="${yy}" x2="${m.l + pw}" y2="${yy}" stroke="#eee"/>`);
    parts.push(
      `<text x="${m.l - 6}" y="${yy + 4}" text-anchor="end" font-size="11">${fmt(t)}</text>`,
    );
  }
  if (o.xLabel) {
    parts.push(
      `<text x="${m.l + pw / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${
        esc(o.xLabel)
      }</text>`,
    );
  }
  if (o.yLabel) parts.push(yAxisLabel(o.yLabel, m.t + ph / 2));
  if (ref !== undefined) {
    parts.push(
      `<line x1="${m.l}" y1="${sy(ref).toFixed(1)}" x2="${m.l + pw}" y2="${
        sy(ref).toFixed(1)
      }" stroke="#555" stroke-dasharray="5,4"/>`,
    );
  }
  pts.forEach((p, i) => {
    const color = PALETTE[i % PALETTE.length];
    const band = bands[i];
    if (band.length > 1) {
      const upper = band.map(([x, , hi]) => `${sx(x).toFixed(1)},${sy(hi).toFixed(1)}`);
      const lower = band.map(([x, lo]) => `${sx(x).toFixed(1)},${sy(lo).toFixed(1)}`).reverse();
      parts.push(
        `<path d="M${
          [...upper, ...lower].join(" L")
        } Z" fill="${color}" fill-opacity="0.18" stroke="none"/>`,
      );
    }
    if (p.length) {
      const d = p.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
        .join(" ");
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
    }
    const ly = m.t + 14 + i * 18;
    parts.push(
      `<line x1="${m.l + pw + 12}" y1="${ly - 4}" x2="${m.l + pw + 32}" y2="${
        ly - 4
      }" stroke="${color}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${m.l + pw + 38}" y="${ly}" font-size="12">${esc(series[i].name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${
    parts.join("\n")
  }\n</svg>\n`;
}

export interface HeatmapOptions {
  title: string;
  rowLabel?: string;
  colLabel?: string;
  rowNames?: readonly string[];
  /** Column names (e.g. the training step of each column); default the column index. */
  colNames?: readonly string[];
  /**
   * A diverging scale around this value (white at `center`, blue below, red above), e.g. the
   * balanced load 1/E; default a blue → red scale over the data's range.
   */
  center?: number;
  width?: number;
  height?: number;
}

/**
 * A heatmap of a matrix (rows × columns), e.g. one row per (layer, expert), one column per
 * logged step.
 *
 * @example
 * ```ts
 * const svg = heatmap(loads, { title: "Expert load", rowNames, colNames: steps.map(String), center: 1 / 8 });
 * ```
 */
export function heatmap(values: readonly (readonly number[])[], o: HeatmapOptions): string {
  const rows = values.length, cols = rows ? values[0].length : 0;
  const W = o.width ?? 720, H = o.height ?? Math.min(900, 80 + rows * 14);
  const m = { l: 90, r: 90, t: 40, b: 40 };
  const cw = (W - m.l - m.r) / Math.max(1, cols), ch = (H - m.t - m.b) / Math.max(1, rows);
  const flat = values.flat().filter(Number.isFinite);
  const lo = flat.length ? Math.min(...flat) : 0, hi = flat.length ? Math.max(...flat) : 1;
  const c = o.center;
  const color = (v: number) => {
    if (!Number.isFinite(v)) return "rgb(220,220,220)";
    if (c !== undefined) {
      // White at the center; toward blue at the data's minimum, red at its maximum.
      const a = v < c ? (c - v) / Math.max(c - lo, 1e-12) : (v - c) / Math.max(hi - c, 1e-12);
      const fade = Math.round(255 * (1 - Math.min(1, a)));
      return v < c ? `rgb(${fade},${fade},255)` : `rgb(255,${fade},${fade})`;
    }
    const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    const r = Math.round(255 * Math.min(1, 2 * t)), b = Math.round(255 * Math.min(1, 2 * (1 - t)));
    return `rgb(${r},${Math.round(255 * (1 - Math.abs(2 * t - 1)))},${b})`;
  };
  /** The value at legend position s of 0…10 (the center in the middle when there is one). */
  const legendValue = (s: number) =>
    c === undefined
      ? lo + ((hi - lo) * s) / 10
      : s <= 5
      ? Math.min(lo, c) + ((c - Math.min(lo, c)) * s) / 5
      : c + ((Math.max(hi, c) - c) * (s - 5)) / 5;
  const parts: string[] = [`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`];
  parts.push(
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      esc(o.title)
    }</text>`,
  );
  values.forEach((row, i) => {
    row.forEach((v, j) => {
      parts.push(
        `<rect x="${(m.l + j * cw).toFixed(1)}" y="${(m.t + i * ch).toFixed(1)}" width="${
          cw.toFixed(1)
        }" height="${ch.toFixed(1)}" fill="${color(v)}"><title>${
          esc(o.rowNames?.[i] ?? String(i))
        }, ${esc(o.colNames?.[j] ?? String(j))}: ${fmt(v)}</title></rect>`,
      );
    });
    if (o.rowNames && (rows <= 40 || i % Math.ceil(rows / 40) === 0)) {
      parts.push(
        `<text x="${m.l - 6}" y="${
          (m.t + (i + 0.5) * ch + 4).toFixed(1)
        }" text-anchor="end" font-size="10">${esc(o.rowNames[i])}</text>`,
      );
    }
  });
  // Column labels: as many as fit (about 36 px each).
  const every = Math.max(1, Math.ceil(cols / Math.max(1, Math.floor((W - m.l - m.r) / 36))));
  for (let j = 0; j < cols; j += every) {
    parts.push(
      `<text x="${(m.l + (j + 0.5) * cw).toFixed(1)}" y="${
        H - m.b + 14
      }" text-anchor="middle" font-size="10">${esc(o.colNames?.[j] ?? String(j))}</text>`,
    );
  }
  if (o.colLabel) {
    parts.push(
      `<text x="${m.l + (W - m.l - m.r) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">${
        esc(o.colLabel)
      }</text>`,
    );
  }
  if (o.rowLabel) {
    parts.push(
      `<text x="14" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${
        H / 2
      })">${esc(o.rowLabel)}</text>`,
    );
  }
  // Legend: low → high.
  for (let s = 0; s <= 10; s++) {
    const v = legendValue(s);
    parts.push(
      `<rect x="${W - m.r + 20}" y="${m.t + (10 - s) * 16}" width="16" height="16" fill="${
        color(v)
      }"/>`,
    );
    if (s % 5 === 0) {
      parts.push(
        `<text x="${W - m.r + 42}" y="${m.t + (10 - s) * 16 + 12}" font-size="10">${fmt(v)}</text>`,
      );
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${
    parts.join("\n")
  }\n</svg>\n`;
}

export interface BarChartOptions {
  title: string;
  /** Names of the groups along x (e.g. domains). */
  groups: readonly string[];
  yLabel?: string;
  width?: number;
  height?: number;
}

/**
 * A grouped bar chart: one group per entry of `groups`, one bar per series in each group, the
 * value printed above each bar.
 *
 * @example
 * ```ts
 * const svg = barChart(
 *   [{ name: "BTX", y: [5.1, 3.2] }, { name: "BAM", y: [4.8, 3.0] }],
 *   { title: "Validation perplexity", groups: ["moby-dick", "sotu"] },
 * );
 * ```
 */
export function barChart(series: readonly Series[], o: BarChartOptions): string {
  const W = o.width ?? 820, H = o.height ?? 420;
  const m = { l: 64, r: 180, t: 44, b: 48 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const vals = series.flatMap((s) => s.y).filter(Number.isFinite);
  const hi = vals.length ? Math.max(...vals) * 1.1 : 1;
  const ticks = niceTicks(0, hi);
  const top = Math.max(hi, ticks[ticks.length - 1]);
  const Y = (v: number) => m.t + ph - (v / top) * ph;
  const G = o.groups.length, S = Math.max(1, series.length);
  const gw = pw / Math.max(1, G), bw = (gw * 0.8) / S;
  const parts: string[] = [
    `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${
      esc(o.title)
    }</text>`,
  ];
  for (const t of ticks) {
    parts.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t).toFixed(1)}" y2="${
        Y(t).toFixed(1)
      }" stroke="#eee"/>`,
      `<text x="${m.l - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${
        fmt(t)
      }</text>`,
    );
  }
  parts.push(
    `<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`,
  );
  o.groups.forEach((g, gi) => {
    const x0 = m.l + gi * gw + gw * 0.1;
    series.forEach((s, si) => {
      const v = s.y[gi];
      if (!Number.isFinite(v)) return;
      const x = x0 + si * bw;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${Y(v).toFixed(1)}" width="${
          (bw * 0.92).toFixed(1)
        }" height="${(m.t + ph - Y(v)).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${
          esc(s.name)
        }, ${esc(g)}: ${fmt(v)}</title></rect>`,
      );
      if (bw >= 28) {
        parts.push(
          `<text x="${(x + bw * 0.46).toFixed(1)}" y="${
            (Y(v) - 3).toFixed(1)
          }" text-anchor="middle" font-size="9">${fmt(v)}</text>`,
        );
      }
    });
    parts.push(
      `<text x="${(m.l + (gi + 0.5) * gw).toFixed(1)}" y="${
        m.t + ph + 18
      }" text-anchor="middle" font-size="12">${esc(g)}</text>`,
    );
  });
  if (o.yLabel) parts.push(yAxisLabel(o.yLabel, m.t + ph / 2));
  series.forEach((s, i) => {
    const ly = m.t + 10 + i * 20;
    parts.push(
      `<rect x="${m.l + pw + 16}" y="${ly - 9}" width="12" height="12" fill="${
        PALETTE[i % PALETTE.length]
      }"/>`,
      `<text x="${m.l + pw + 34}" y="${ly + 1}" font-size="12">${esc(s.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${
    parts.join("\n")
  }\n</svg>\n`;
}
