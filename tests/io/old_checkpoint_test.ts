/**
 * A checkpoint written before the estimator and balancer registries (and before the config
 * fields rope, routerBias and estimatorOptions) still loads, means the same model, and trains on
 * to the same numbers.
 *
 * The fixture was written by main at 4bf7d98 with
 *   deno run -A examples/default_moe.ts --data corpus.txt --backend cpu --layers 2 --d-model 8 \
 *     --heads 2 --experts 4 --d-ff 8 --batch 2 --seq 8 --steps 2 --eval-every 0 \
 *     --eval-batches 1 --samples 0 --balance "lossfree:0.01;bip:2"
 * (Default MoE's EMA state, a loss-free bias on layer 0, BIP prices on layer 1), and
 * pre_registry_step.json holds what that code computed from it on the interpreter: the first 64
 * eval logits of a fixed batch, then one training step's metrics, MoE state and updated embedding
 * rows.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { trainStep } from "../../src/train/step.ts";

const FIXTURE = new URL("./fixtures/pre_registry_checkpoint", import.meta.url).pathname;
const expected = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/pre_registry_step.json", import.meta.url)),
) as {
  logits: number[];
  metrics: number[];
  state: Record<string, number[]>[];
  embed: number[];
};

Deno.test("a checkpoint from before the registries loads with the same meaning and trains on to identical numbers", async () => {
  mj.setBackend("cpu");
  try {
    const ck = await mj.io.loadCheckpoint<mj.nn.Params>(FIXTURE);
    const c = ck.config;
    assert.equal(c.estimator, "default");
    assert.deepEqual(c.balance, [[{ kind: "lossFree", rate: 0.01 }], [{ kind: "bip", iters: 2 }]]);
    // Fields the old file lacks take their defaults.
    assert.equal(c.rope, "rotateHalf");
    assert.equal(c.routerBias, false);
    assert.deepEqual(c.estimatorOptions, {});
    const ts = ck.trainingState!.tensors as {
      opt: mj.optim.AdamWState<mj.nn.Params>;
      layers: mj.moe.LayerState[];
    };
    assert.deepEqual(ts.layers.map((l) => Object.keys(l)), [["lossFreeBias", "ehat"], [
      "bipQ",
      "ehat",
    ]]);
    // The new code's own initial state has the same structure.
    assert.deepEqual(
      mj.nn.initialLayerState(c).map((l) => Object.keys(l)),
      ts.layers.map((l) => Object.keys(l)),
    );
    const tokens = mj.tensor(
      [[72, 101, 108, 108, 111, 32, 119, 111], [116, 104, 101, 32, 119, 97, 121, 46]],
      [2, 8],
      { dtype: "i32" },
    );
    const targets = mj.tensor(
      [[101, 108, 108, 111, 32, 119, 111, 114], [104, 101, 32, 119, 97, 121, 46, 32]],
      [2, 8],
      { dtype: "i32" },
    );
    const ev = mj.nn.forward(ck.params, tokens, c, { training: false, state: ts.layers });
    assert.deepEqual(Array.from(await ev.logits.data()).slice(0, 64), expected.logits);
    const optimizer = mj.optim.adamw({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const step = trainStep(c, { optimizer, clip: 1, seed: 0 });
    const out = await step(
      { params: ck.params, opt: ts.opt, layers: ts.layers },
      tokens,
      targets,
      0.003,
      3,
    );
    assert.deepEqual(Array.from(await out.metrics.data()), expected.metrics);
    const state: Record<string, number[]>[] = [];
    for (const l of out.state.layers) {
      const o: Record<string, number[]> = {};
      for (const [k, v] of Object.entries(l)) o[k] = Array.from(await v.data());
      state.push(o);
    }
    assert.deepEqual(state, expected.state);
    assert.deepEqual(
      Array.from(await out.state.params.embed.data()).slice(0, 16),
      expected.embed,
    );
  } finally {
    mj.setBackend("cpu");
  }
});
