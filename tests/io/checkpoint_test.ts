/**
 * Checkpoints: save → load round trips (params and training state), resume mismatches, corrupt or
 * missing files (named; nothing returned), model/state pairing, and atomic writes.
 */
import * as mj from "../../mod.ts";
import * as io from "../../src/io/index.ts";
import { type ModelConfig, modelConfig, parameterShapes } from "../../src/nn/config.ts";
import { flatten } from "../../src/autodiff/tree.ts";
import { assert } from "../helpers.ts";
import { randomParams, tempDir, tempFiles } from "./util.ts";

mj.setBackend("cpu");

const small = {
  nLayers: 2,
  dModel: 16,
  nHeads: 2,
  experts: 4,
  dFf: 8,
  vocabSize: 32,
  maxSeqLen: 16,
};

async function assertSameTree(actual: unknown, expected: unknown, msg = "") {
  const a = flatten(actual), e = flatten(expected);
  assert.deepEqual(a.paths, e.paths, `${msg} paths`);
  for (let i = 0; i < e.leaves.length; i++) {
    const x = a.leaves[i], y = e.leaves[i];
    if (y instanceof mj.Tensor) {
      assert.ok(x instanceof mj.Tensor, `${msg} ${e.paths[i]} is a tensor`);
      assert.equal(x.dtype, y.dtype, `${msg} ${e.paths[i]} dtype`);
      assert.deepEqual(x.shape, y.shape, `${msg} ${e.paths[i]} shape`);
      assert.deepEqual(await x.data(), await y.data(), `${msg} ${e.paths[i]} values`);
    } else {
      assert.deepEqual(x, y, `${msg} ${e.paths[i]}`);
    }
  }
}

const variants: [string, ModelConfig][] = [
  ["mixtral, rmsnorm, swiglu, tied", modelConfig({ ...small, estimator: "topk" })],
  [
    "phimoe, layernorm, swiglu, untied",
    modelConfig({ ...small, norm: "layernorm", tiedEmbeddings: false }),
  ],
  [
    "gelu experts, layernorm, parallel block",
    modelConfig({
      ...small,
      activation: "gelu",
      norm: "layernorm",
      block: "parallel",
      estimator: "default",
    }),
  ],
  [
    "relu experts, untied",
    modelConfig({ ...small, activation: "relu", tiedEmbeddings: false, estimator: "topk" }),
  ],
  [
    "balancers per layer, with every option",
    modelConfig({
      ...small,
      estimator: "topk",
      balance: [
        [
          {
            kind: "auxLoss",
            alpha: 0.02,
            scope: "sequence",
            seqLen: 4,
            score: "softmax",
            convention: "hf",
          },
          { kind: "zLoss", beta: 0.002 },
        ],
        [
          { kind: "bip", iters: 2, cap: "floor" },
          { kind: "lossFree", rate: 0.01, rule: "linear", violation: "raw" },
        ],
      ],
    }),
  ],
  ["dense swiglu (llama)", modelConfig({ ...small, ffn: "dense" })],
  [
    "dense gelu, layernorm, untied",
    modelConfig({
      ...small,
      ffn: "dense",
      activation: "gelu",
      norm: "layernorm",
      tiedEmbeddings: false,
    }),
  ],
];

for (const [name, config] of variants) {
  Deno.test(`checkpoint: save → load round trip (${name})`, async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { params } = randomParams(config, 11);
      assert.equal(await io.checkpointExists(dir), false);
      await io.saveCheckpoint(dir, { config, params });
      assert.equal(await io.checkpointExists(dir), true);
      const ck = await io.loadCheckpoint(dir, { expect: config });
      assert.deepEqual(ck.config, config);
      assert.equal(ck.trainingState, null);
      await assertSameTree(ck.params, params);
      assert.deepEqual(flatten(ck.params).paths, parameterShapes(config).map(([p]) => p));
      assert.ok(Array.isArray((ck.params as { layers: unknown }).layers));
      assert.deepEqual(await tempFiles(dir), []);
    } finally {
      await cleanup();
    }
  });
}

Deno.test("checkpoint: training state round trip (trees of tensors of every dtype + json)", async () => {
  const config = modelConfig(small);
  const { dir, cleanup } = await tempDir();
  try {
    const { params } = randomParams(config, 2);
    const m = mj.tensor(new Float32Array([0.1, -0.2, 0.3, 0.4]), [2, 2]);
    const tensors = {
      opt: {
        m: { embed: m, layers: [{ q: mj.tensor([1, 2, 3]) }, { q: mj.tensor([4, 5, 6]) }] },
        t: mj.tensor(7, [], { dtype: "i32" }),
      },
      moe: [
        { ehat: mj.zeros([3, 16]), lossFreeBias: mj.tensor([0.5, -0.5, 0, 1]) },
        { bipQ: mj.tensor([1, 2, 3, 4]).mul(2) }, // a computed (lazy) tensor
      ],
      counts: mj.tensor(new Uint32Array([3, 0, 5])),
      mask: mj.tensor([true, false, true]),
      empty: mj.zeros([0, 4]),
      scalar: mj.tensor(2.5),
      lr: 0.001,
      note: "text leaf",
      nothing: null,
    };
    const json = {
      step: 1234,
      rng: { seed: 42, counter: [1, 2, 3] },
      data: { epoch: 2, offset: 98765 },
      name: "run-a",
      done: false,
    };
    // All values (params and state) are read back in one batched realize.
    const backend = await mj.getBackend();
    const realize = backend.realize;
    let calls = 0;
    backend.realize = (nodes) => {
      calls++;
      return realize.call(backend, nodes);
    };
    try {
      await io.saveCheckpoint(dir, { config, params, trainingState: { tensors, json } });
    } finally {
      backend.realize = realize;
    }
    assert.equal(calls, 1);
    const ck = await io.loadCheckpoint(dir);
    assert.ok(ck.trainingState);
    assert.deepEqual(ck.trainingState.json, json);
    await assertSameTree(ck.trainingState.tensors, tensors);
    await assertSameTree(ck.params, params);
    // Saving again without a training state removes the stale one.
    await io.saveCheckpoint(dir, { config, params });
    assert.equal((await io.loadCheckpoint(dir)).trainingState, null);
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: save rejects a tree that is not the configuration's layout, and non-JSON state", async () => {
  const config = modelConfig(small);
  const { params } = randomParams(config, 2);
  const { dir, cleanup } = await tempDir();
  try {
    const noHead = { ...params, lmHead: mj.zeros([32, 16]) };
    await assert.rejects(
      () => io.saveCheckpoint(dir, { config, params: noHead }),
      /params has entries outside this configuration's layout: lmHead/,
    );
    const layers = (params.layers as Record<string, unknown>[]).map((l) => ({ ...l }));
    delete layers[1].moe;
    await assert.rejects(
      () => io.saveCheckpoint(dir, { config, params: { ...params, layers } }),
      /params is missing layers\.1\.moe\.router, layers\.1\.moe\.gate/,
    );
    await assert.rejects(
      () => io.saveCheckpoint(dir, { config, params: { ...params, embed: mj.zeros([32, 8]) } }),
      /params\.embed has shape \[32,8\], expected \[32,16\]/,
    );
    await assert.rejects(
      () => io.saveCheckpoint(dir, { config, params, trainingState: { json: { loss: NaN } } }),
      /trainingState\.json\.loss is NaN, which JSON cannot hold/,
    );
    await assert.rejects(
      () =>
        io.saveCheckpoint(dir, { config, params, trainingState: { json: { when: new Date() } } }),
      /trainingState\.json\.when is a Date/,
    );
    assert.equal(await io.checkpointExists(dir), false);
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: resume config mismatch names each field", async () => {
  const config = modelConfig(small);
  const { dir, cleanup } = await tempDir();
  try {
    await io.saveCheckpoint(dir, { config, params: randomParams(config).params });
    const run = modelConfig({ ...small, dModel: 32, experts: 8, norm: "layernorm" });
    await assert.rejects(() => io.loadCheckpoint(dir, { expect: run }), (e: Error) => {
      assert.match(e.message, /^resume: /);
      assert.match(e.message, /dModel is 16 in the checkpoint but 32 in this run/);
      assert.match(e.message, /norm is "rmsnorm" in the checkpoint but "layernorm" in this run/);
      assert.match(e.message, /experts is 4 in the checkpoint but 8 in this run/);
      assert.ok(e.message.includes(dir));
      return true;
    });
    // Fields that do not change parameter shapes may differ.
    const ok = await io.loadCheckpoint(dir, {
      expect: modelConfig({ ...small, topK: 1, estimator: "topk", balance: [] }),
    });
    assert.equal(ok.config.topK, 2);
    assert.deepEqual(io.configDifferences(config, config), []);
  } finally {
    await cleanup();
  }
});

/** Loads `dir` expecting a named error matching `re`, and that nothing is returned. */
async function assertLoadFails(dir: string, re: RegExp, what: string) {
  let result: unknown = "unset";
  await assert.rejects(async () => {
    result = await io.loadCheckpoint(dir);
  }, (e: Error) => {
    assert.match(e.message, re, what);
    return true;
  });
  assert.equal(result, "unset", `${what}: nothing returned`);
}

Deno.test("checkpoint: missing and corrupt files are named against the manifest and nothing is returned", async () => {
  const config = modelConfig(small);
  const { dir, cleanup } = await tempDir();
  try {
    await assert.rejects(
      () => io.loadCheckpoint(`${dir}/nope`),
      /checkpoint directory .*\/nope does not exist/,
    );
    const { params } = randomParams(config, 4);
    await io.saveCheckpoint(dir, {
      config,
      params,
      trainingState: { tensors: { m: mj.zeros([4]) }, json: { step: 1 } },
    });
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    assert.deepEqual(Object.keys(manifest.files).sort(), [
      "README.md",
      "config.json",
      "generation_config.json",
      "megatron_args.txt",
      "model.safetensors",
      "training_state.safetensors",
    ]);
    const saved: Record<string, Uint8Array> = {};
    for (const f of [...Object.keys(manifest.files), "manifest.json"]) {
      saved[f] = await Deno.readFile(`${dir}/${f}`);
    }
    const restore = async () => {
      for (const [f, b] of Object.entries(saved)) await Deno.writeFile(`${dir}/${f}`, b);
    };
    const model = saved["model.safetensors"], state = saved["training_state.safetensors"];
    const flip = (b: Uint8Array, at: number) => {
      const c = b.slice();
      c[at] ^= 0x01;
      return c;
    };
    const cases: [string, () => Promise<void>, RegExp][] = [
      [
        "truncated model",
        () => Deno.writeFile(`${dir}/model.safetensors`, model.subarray(0, model.length - 10)),
        new RegExp(
          `model\\.safetensors is truncated or was changed after the save: ${
            model.length - 10
          } bytes, manifest\\.json records ${model.length}`,
        ),
      ],
      [
        "empty model",
        () => Deno.writeFile(`${dir}/model.safetensors`, new Uint8Array(0)),
        /model\.safetensors is truncated or was changed after the save: 0 bytes/,
      ],
      [
        "model with trailing bytes",
        () => Deno.writeFile(`${dir}/model.safetensors`, new Uint8Array([...model, 0, 0])),
        /model\.safetensors was changed after the save: \d+ bytes, manifest\.json records \d+/,
      ],
      [
        "a flipped bit in the model's data",
        () => Deno.writeFile(`${dir}/model.safetensors`, flip(model, model.length - 1)),
        /model\.safetensors is corrupt: its SHA-256 is [0-9a-f]{16}…, manifest\.json records [0-9a-f]{16}… \(changed after the save\)/,
      ],
      [
        "a flipped bit in the training state's data",
        () => Deno.writeFile(`${dir}/training_state.safetensors`, flip(state, state.length - 2)),
        /training_state\.safetensors is corrupt: its SHA-256/,
      ],
      [
        "truncated state",
        () =>
          Deno.writeFile(`${dir}/training_state.safetensors`, state.subarray(0, state.length - 3)),
        /training_state\.safetensors is truncated or was changed after the save/,
      ],
      [
        "missing model",
        () => Deno.remove(`${dir}/model.safetensors`),
        /model\.safetensors is missing \(manifest\.json lists it\)/,
      ],
      [
        "missing config",
        () => Deno.remove(`${dir}/config.json`),
        /config\.json is missing \(manifest\.json lists it\)/,
      ],
      [
        "missing manifest (with a training state)",
        () => Deno.remove(`${dir}/manifest.json`),
        /manifest\.json is missing: every checkpoint with a training state has one/,
      ],
      [
        "damaged manifest",
        () => Deno.writeTextFile(`${dir}/manifest.json`, "{ not json"),
        /manifest\.json: not valid JSON .*damaged/,
      ],
      [
        "config not JSON",
        () => Deno.writeTextFile(`${dir}/config.json`, "{ not json"),
        /config\.json is truncated or was changed after the save: 10 bytes, .*; in config\.json: not valid JSON/,
      ],
    ];
    for (const [what, breakIt, re] of cases) {
      await breakIt();
      await assertLoadFails(dir, re, what);
      await restore();
    }
    assert.equal((await io.loadCheckpoint(dir)).trainingState?.json && true, true);
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: without a manifest (a Hugging Face directory), broken files are still named", async () => {
  const config = modelConfig(small);
  const { dir, cleanup } = await tempDir();
  try {
    await io.saveCheckpoint(dir, { config, params: randomParams(config, 4).params });
    await Deno.remove(`${dir}/manifest.json`);
    assert.ok((await io.loadCheckpoint(dir)).params);
    const model = await Deno.readFile(`${dir}/model.safetensors`);
    const configText = await Deno.readTextFile(`${dir}/config.json`);
    const restore = async () => {
      await Deno.writeFile(`${dir}/model.safetensors`, model);
      await Deno.writeTextFile(`${dir}/config.json`, configText);
    };
    const cases: [string, () => Promise<void>, RegExp][] = [
      [
        "truncated model",
        () => Deno.writeFile(`${dir}/model.safetensors`, model.subarray(0, model.length - 10)),
        /model\.safetensors: the tensor data ends .*truncated/,
      ],
      [
        "model cut inside the header",
        () => Deno.writeFile(`${dir}/model.safetensors`, model.subarray(0, 100)),
        /model\.safetensors: the header length \d+ runs past the end/,
      ],
      [
        "empty model",
        () => Deno.writeFile(`${dir}/model.safetensors`, new Uint8Array(0)),
        /model\.safetensors: the file is 0 bytes/,
      ],
      [
        "model with trailing bytes",
        () => Deno.writeFile(`${dir}/model.safetensors`, new Uint8Array([...model, 0, 0])),
        /model\.safetensors: 2 trailing bytes/,
      ],
      [
        "missing model",
        () => Deno.remove(`${dir}/model.safetensors`),
        /model\.safetensors is missing/,
      ],
      ["missing config", () => Deno.remove(`${dir}/config.json`), /config\.json is missing/],
      [
        "config not JSON",
        () => Deno.writeTextFile(`${dir}/config.json`, "{ not json"),
        /config\.json is not valid JSON/,
      ],
      [
        "config of another shape",
        () =>
          Deno.writeTextFile(
            `${dir}/config.json`,
            JSON.stringify(io.hfConfigJson(modelConfig({ ...small, dFf: 4 }))),
          ),
        /model\.safetensors: tensor model\.layers\.0\.block_sparse_moe\.experts\.0\.w1\.weight: shape \[8, 16\] found, \[4, 16\] expected/,
      ],
      [
        "Hugging Face keys that disagree with the moejit block",
        () =>
          Deno.writeTextFile(
            `${dir}/config.json`,
            JSON.stringify({ ...JSON.parse(configText), num_experts_per_tok: 1 }),
          ),
        /config\.json: the Hugging Face keys disagree with the "moejit" block: num_experts_per_tok is 1 but the "moejit" block gives 2 \(moejit\.config\.topK\)/,
      ],
    ];
    for (const [what, breakIt, re] of cases) {
      await breakIt();
      await assertLoadFails(dir, re, what);
      await restore();
    }
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: a config.json that disagrees with the training state is named", async () => {
  const config = modelConfig({ ...small, estimator: "sparsemixer", topK: 2 });
  const { dir, cleanup } = await tempDir();
  try {
    await io.saveCheckpoint(dir, {
      config,
      params: randomParams(config, 3).params,
      trainingState: { json: { step: 3 } },
    });
    const original = await Deno.readTextFile(`${dir}/config.json`);
    const edit = async (f: (j: Record<string, unknown>) => void) => {
      const j = JSON.parse(original);
      f(j);
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(j, null, 2));
    };
    // An edited estimator: the manifest catches the edit and the message says what changed.
    await edit((j) => ((j.moejit as { config: ModelConfig }).config.estimator = "default"));
    await assertLoadFails(
      dir,
      /config\.json (is truncated or )?was changed after the save: .*; in config\.json: .*estimator is "default" in config\.json but "sparsemixer" in training_state\.safetensors/,
      "edited estimator",
    );
    // num_experts_per_tok: 1 against moejit.topK: 2.
    await edit((j) => (j.num_experts_per_tok = 1));
    await assertLoadFails(
      dir,
      /config\.json (is corrupt|was changed after the save|is truncated or was changed after the save).*; in config\.json: num_experts_per_tok is 1 but the "moejit" block gives 2 \(moejit\.config\.topK\)/,
      "num_experts_per_tok",
    );
    // The same edits with the manifest rewritten to match (a hand-assembled directory): the
    // content checks alone still refuse them.
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    const rehash = async () => {
      const bytes = await Deno.readFile(`${dir}/config.json`);
      const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      manifest.files["config.json"] = {
        bytes: bytes.length,
        sha256: Array.from(d, (b) => b.toString(16).padStart(2, "0")).join(""),
      };
      await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(manifest));
    };
    await edit((j) => (j.num_experts_per_tok = 1));
    await rehash();
    await assertLoadFails(
      dir,
      /config\.json: the Hugging Face keys disagree with the "moejit" block: num_experts_per_tok is 1/,
      "num_experts_per_tok, manifest rewritten",
    );
    // A whole, self-consistent config.json of another estimator.
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify(io.hfConfigJson(modelConfig({ ...config, estimator: "default" }))),
    );
    await rehash();
    await assertLoadFails(
      dir,
      /training_state\.safetensors: it was saved with another configuration than config\.json holds: estimator is "default" in config\.json but "sparsemixer" in training_state\.safetensors/,
      "estimator, manifest rewritten",
    );
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: a model and a training state from different saves are detected", async () => {
  const config = modelConfig(small);
  const { dir, cleanup } = await tempDir();
  const other = await tempDir();
  try {
    await io.saveCheckpoint(dir, {
      config,
      params: randomParams(config, 1).params,
      trainingState: { json: { step: 1 } },
    });
    await io.saveCheckpoint(other.dir, {
      config,
      params: randomParams(config, 2).params,
      trainingState: { json: { step: 2 } },
    });
    await Deno.copyFile(
      `${other.dir}/training_state.safetensors`,
      `${dir}/training_state.safetensors`,
    );
    await assert.rejects(
      () => io.loadCheckpoint(dir),
      /training_state\.safetensors is corrupt: its SHA-256/,
    );
    // With the manifest patched to match (a hand-assembled directory), the pairing check of the
    // training state against the model file still refuses it.
    const mine = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    const theirs = JSON.parse(await Deno.readTextFile(`${other.dir}/manifest.json`));
    mine.files["training_state.safetensors"] = theirs.files["training_state.safetensors"];
    await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(mine));
    await assert.rejects(
      () => io.loadCheckpoint(dir),
      /training_state\.safetensors: it was saved with a different model\.safetensors .*different saves/,
    );
  } finally {
    await cleanup();
    await other.cleanup();
  }
});

Deno.test("checkpoint: writes are atomic (failed writes leave no temp files and existing files intact)", async () => {
  const config = modelConfig(small);
  const { params } = randomParams(config, 6);
  const { dir, cleanup } = await tempDir();
  try {
    // 1. A directory that cannot be created (a regular file is in the way).
    await Deno.writeTextFile(`${dir}/blocker`, "keep me");
    await assert.rejects(() => io.saveCheckpoint(`${dir}/blocker/ckpt`, { config, params }));
    await assert.rejects(() => io.writeSafetensors(`${dir}/blocker/x.safetensors`, {}));
    assert.equal(await Deno.readTextFile(`${dir}/blocker`), "keep me");
    assert.deepEqual(await tempFiles(dir), []);

    // 2. An existing checkpoint survives a failed save.
    const ck = `${dir}/ck`;
    await io.saveCheckpoint(ck, { config, params });
    const before = await Deno.readFile(`${ck}/model.safetensors`);
    await assert.rejects(() =>
      io.saveCheckpoint(ck, { config, params: { ...params, embed: mj.zeros([1]) } })
    );
    assert.deepEqual(await Deno.readFile(`${ck}/model.safetensors`), before);

    // 3. The rename fails after the temp file was written (the target is a non-empty directory):
    //    the temp file is removed and the target is untouched.
    await Deno.mkdir(`${dir}/target.safetensors/inner`, { recursive: true });
    await assert.rejects(() =>
      io.writeSafetensors(`${dir}/target.safetensors`, {
        a: { dtype: "F32", shape: [1], data: new Float32Array(1) },
      })
    );
    assert.ok((await Deno.stat(`${dir}/target.safetensors/inner`)).isDirectory);
    assert.deepEqual(await tempFiles(dir), []);
    assert.deepEqual((await io.loadCheckpoint(ck)).config, config);
  } finally {
    await cleanup();
  }
});

Deno.test("checkpoint: Hugging Face sharded weights (model.safetensors.index.json) load too", async () => {
  const config = modelConfig({ ...small, estimator: "topk" });
  const { params, host } = randomParams(config, 8);
  const { dir, cleanup } = await tempDir();
  try {
    const hf = io.toHfTensors(host, config);
    const names = Object.keys(hf).sort();
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await io.writeSafetensors(`${dir}/${file}`, Object.fromEntries(part.map((n) => [n, hf[n]])));
      for (const n of part) weightMap[n] = file;
    }
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(io.hfConfigJson(config)));
    assert.equal(await io.checkpointExists(dir), true);
    await assertSameTree((await io.loadCheckpoint(dir)).params, params);
    // A tensor the index places elsewhere is named.
    weightMap[names[0]] = "model-00002-of-00002.safetensors";
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: weightMap }),
    );
    await assert.rejects(
      () => io.loadCheckpoint(dir),
      /index\.json: model-00001-of-00002\.safetensors holds .* which the index places in "model-00002-of-00002\.safetensors"/,
    );
  } finally {
    await cleanup();
  }
});
