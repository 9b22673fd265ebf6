/** JSONL metrics: records round-trip, non-finite numbers become null, bad values are named. */
import * as mj from "../../mod.ts";
import * as io from "../../src/io/index.ts";
import { assert } from "../helpers.ts";
import { tempDir } from "./util.ts";

Deno.test("metrics: JSONL records round-trip; NaN/Infinity are written as null", async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const path = `${dir}/run/metrics.jsonl`;
    const log = new io.MetricsLog(path);
    await log.log({
      step: 1,
      loss: 3.25,
      lr: 1e-3,
      grad_norm: NaN,
      tokens_per_s: Infinity,
      tokens_per_expert: [[10, 6], [8, 8]],
      max_vio: new Float32Array([0.25, 0]),
      load_balancing_loss: 0.0101,
      z_loss: -Infinity,
      per_layer: { "0": { maxvio: 0.5 }, "1": { maxvio: NaN } },
      phase: "train",
      skipped: undefined,
    });
    // Concurrent calls keep their order.
    await Promise.all([log.log({ step: 2, loss: 3 }), log.log({ step: 3, loss: 2.5 })]);
    const text = await Deno.readTextFile(path);
    assert.equal(text.split("\n").length, 4);
    assert.ok(!text.includes("NaN") && !text.includes("Infinity"));
    const rows = await io.readMetrics(path);
    assert.deepEqual(rows, [
      {
        step: 1,
        loss: 3.25,
        lr: 1e-3,
        grad_norm: null,
        tokens_per_s: null,
        tokens_per_expert: [[10, 6], [8, 8]],
        max_vio: [0.25, 0],
        load_balancing_loss: 0.0101,
        z_loss: null,
        per_layer: { "0": { maxvio: 0.5 }, "1": { maxvio: null } },
        phase: "train",
      },
      { step: 2, loss: 3 },
      { step: 3, loss: 2.5 },
    ]);
    // A resumed run appends; { fresh: true } starts over.
    await new io.MetricsLog(path).log({ step: 4 });
    assert.equal((await io.readMetrics(path)).length, 4);
    await new io.MetricsLog(path, { fresh: true }).log({ step: 1 });
    assert.deepEqual(await io.readMetrics(path), [{ step: 1 }]);
    // A final line cut short by a crash is ignored; a bad line elsewhere is named.
    await Deno.writeTextFile(path, '{"step": 1}\n{"step": 2, "lo');
    assert.deepEqual(await io.readMetrics(path), [{ step: 1 }]);
    await Deno.writeTextFile(path, '{"step": 1}\nnot json\n{"step": 3}\n');
    await assert.rejects(() => io.readMetrics(path), /metrics\.jsonl:2: not valid JSON/);
    await assert.rejects(() => io.readMetrics(`${dir}/none.jsonl`), /none\.jsonl: no such file/);
  } finally {
    await cleanup();
  }
});

Deno.test("metrics: tensors and other non-JSON values are rejected at the call, naming the key", () => {
  const log = new io.MetricsLog("/nonexistent/never-written.jsonl");
  assert.throws(
    () => log.log({ loss: mj.tensor(1) as unknown as number }),
    /record\.loss is a Tensor; log its value/,
  );
  assert.throws(
    () => io.encodeMetrics({ f: (() => 1) as unknown as number }),
    /record\.f is a function/,
  );
  assert.throws(
    () => io.encodeMetrics({ m: new Map() as unknown as number }),
    /record\.m is a Map/,
  );
  assert.equal(
    io.encodeMetrics({ a: [1, NaN], b: { c: -Infinity } }),
    '{"a":[1,null],"b":{"c":null}}',
  );
});
