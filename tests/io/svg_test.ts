/** The SVG charts of training reports: well-formed, labelled, and colour scales as documented. */
import { heatmap, lineChart } from "../../src/io/svg.ts";
import { assert } from "../helpers.ts";

/** Every opened element is closed (a minimal well-formedness check without a DOM parser). */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2]);
  }
  return stack.length === 0;
}

Deno.test("svg: a line chart names its series and escapes text", () => {
  const svg = lineChart([{ name: "train <loss>", y: [3, 2, 1.5] }, {
    name: "val",
    x: [2, 3],
    y: [2.5, 2],
  }], {
    title: "Loss & ppl",
    xLabel: "step",
    logY: true,
  });
  assert.ok(svg.startsWith("<svg") && balanced(svg));
  assert.match(svg, /train &lt;loss&gt;/);
  assert.match(svg, /Loss &amp; ppl/);
});

Deno.test("svg: a series with lo and hi gets a band that encloses its line, and widens the y range", () => {
  const svg = lineChart([{
    name: "ppl",
    x: [0, 10, 20],
    y: [5, 4, 3],
    lo: [4, 3, 2],
    hi: [6, 5, 9],
  }, {
    name: "no band",
    y: [4, 4, 4],
  }], { title: "band", width: 400, height: 300 });
  assert.ok(balanced(svg));
  const bands = [...svg.matchAll(/<path d="M([^"]+) Z" fill="(#[0-9a-f]+)" fill-opacity/g)];
  assert.equal(bands.length, 1, "only the series with lo/hi has a band");
  const line = svg.match(/<path d="(M[^"]+)" fill="none" stroke="(#[0-9a-f]+)"/)!;
  assert.equal(bands[0][2], line[2], "the band has its line's colour");
  // The band's top edge (hi) is drawn at smaller SVG y than the line, its bottom (lo) at larger.
  const pts = (d: string) =>
    d.replace(/^M/, "").split(/ L?/).map((p) => p.replace(/^L/, "").split(",").map(Number));
  const band = pts(bands[0][1]), ln = pts(line[1]);
  assert.equal(band.length, 6);
  for (let i = 0; i < 3; i++) {
    assert.equal(band[i][0], ln[i][0]);
    assert.ok(band[i][1] < ln[i][1], `hi above the line at point ${i}`);
    assert.ok(band[5 - i][1] > ln[i][1], `lo below the line at point ${i}`);
  }
  // y = 9 (a band edge only) is inside the plot: some y tick reaches 8 or more.
  const ticks = [...svg.matchAll(/text-anchor="end" font-size="11">([\d.]+)</g)].map((m) =>
    Number(m[1])
  );
  assert.ok(Math.max(...ticks) >= 8, `ticks ${ticks}`);
});

Deno.test("svg: a log axis inside one decade still has labelled ticks; the legend fits long names", () => {
  const name = "Default MoE (scored EMA, Σπ·E / Σπ)";
  const svg = lineChart([{ name, y: [125, 118, 112] }], { title: "ppl", logY: true, width: 600 });
  const ticks = [...svg.matchAll(/text-anchor="end" font-size="11">([\d.]+)</g)].map((m) =>
    Number(m[1])
  );
  assert.ok(ticks.length >= 2, `ticks ${ticks}`);
  assert.ok(ticks.every((t) => t >= 112 && t <= 125), `ticks ${ticks} inside the data's range`);
  // The legend text starts right of the plot and has room for ~6.5 px per character.
  const x = Number(svg.match(/<text x="([\d.]+)" y="[\d.]+" font-size="12">Default MoE/)![1]);
  assert.ok(600 - x >= 6.5 * name.length, `legend at x=${x} leaves ${600 - x} px`);
});

Deno.test("svg: a reference line is drawn dashed and brought into the y range", () => {
  const svg = lineChart([{ name: "diff", y: [-0.4, -0.6, -0.5] }], { title: "d", refY: 0 });
  const line = svg.match(
    /<line x1="[\d.]+" y1="([\d.]+)" x2="[\d.]+" y2="[\d.]+" stroke="#555" stroke-dasharray/,
  );
  assert.ok(line, "a dashed reference line");
  // y = 0 lies above every data point (smaller SVG y), inside the plot.
  const ys = svg.match(/<path d="(M[^"]+)" fill="none"/)![1].split(/[ML ]+/).filter(Boolean).map((
    p,
  ) => Number(p.split(",")[1]));
  assert.ok(ys.every((y) => Number(line![1]) < y), `${line![1]} above ${ys}`);
  assert.ok(Number(line![1]) >= 40, "inside the plot area");
});

Deno.test("svg: a centred heatmap is white at the center, red above, blue below, with column names", () => {
  const svg = heatmap([[0.125, 0.5, 0]], {
    title: "load",
    rowNames: ["L0 E0"],
    colNames: ["10", "20", "30"],
    center: 0.125,
  });
  assert.ok(balanced(svg));
  const fills = [...svg.matchAll(/<rect [^>]*fill="(rgb\([^"]+\))"><title>L0 E0, (\d+): /g)].map((
    m,
  ) => [m[2], m[1]]);
  assert.deepEqual(fills, [["10", "rgb(255,255,255)"], ["20", "rgb(255,0,0)"], [
    "30",
    "rgb(0,0,255)",
  ]]);
  assert.match(svg, />20<\/text>/);
});
