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
