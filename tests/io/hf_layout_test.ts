/**
 * The written checkpoint's header and names match the Hugging Face layout, checked with an
 * independent minimal safetensors parser (not mj.io's decoder), for Mixtral and PhiMoE.
 */
import * as mj from "../../mod.ts";
import * as io from "../../src/io/index.ts";
import { type ModelConfig, modelConfig } from "../../src/nn/config.ts";
import { assert } from "../helpers.ts";
import { randomParams, tempDir } from "./util.ts";

mj.setBackend("cpu");

/** An independent minimal safetensors parser: header, entries and raw f32 values. */
function parseIndependently(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const base = 8 + n;
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] },
  ][];
  const f32 = (name: string): number[] => {
    const [b, e] = header[name].data_offsets;
    const out: number[] = [];
    for (let i = base + b; i < base + e; i += 4) out.push(view.getFloat32(i, true));
    return out;
  };
  return { headerLength: n, base, metadata: header.__metadata__, entries, f32 };
}

/** The expected HF names and shapes, written out independently of mj.io. */
function expectedNames(c: ModelConfig): Map<string, number[]> {
  const { dModel: d, dFf: f, experts: E, vocabSize: V } = c;
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [V, d]]]);
  const norms = c.norm === "layernorm" ? ["weight", "bias"] : ["weight"];
  for (let i = 0; i < c.nLayers; i++) {
    const L = `model.layers.${i}`;
    for (const w of norms) {
      m.set(`${L}.input_layernorm.${w}`, [d]);
      m.set(`${L}.post_attention_layernorm.${w}`, [d]);
    }
    for (const p of ["q", "k", "v", "o"]) m.set(`${L}.self_attn.${p}_proj.weight`, [d, d]);
    m.set(`${L}.block_sparse_moe.gate.weight`, [E, d]);
    for (let e = 0; e < E; e++) {
      m.set(`${L}.block_sparse_moe.experts.${e}.w1.weight`, [f, d]);
      m.set(`${L}.block_sparse_moe.experts.${e}.w2.weight`, [d, f]);
      m.set(`${L}.block_sparse_moe.experts.${e}.w3.weight`, [f, d]);
    }
  }
  for (const w of norms) m.set(`model.norm.${w}`, [d]);
  if (!c.tiedEmbeddings) m.set("lm_head.weight", [V, d]);
  return m;
}

const small = { nLayers: 2, dModel: 16, nHeads: 2, experts: 4, dFf: 8, vocabSize: 32 };
const cases: [string, ModelConfig][] = [
  [
    "mixtral",
    modelConfig({ ...small, estimator: "topk", normalizeTopK: true, tiedEmbeddings: false }),
  ],
  ["phimoe", modelConfig({ ...small, estimator: "sparsemixer", norm: "layernorm" })],
];

for (const [family, config] of cases) {
  Deno.test(`hf layout: ${family} model.safetensors header, names, offsets and values (independent parser)`, async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { params, host } = randomParams(config, 3);
      await io.saveCheckpoint(dir, { config, params });
      const bytes = await Deno.readFile(`${dir}/model.safetensors`);
      const p = parseIndependently(bytes);
      assert.deepEqual(p.metadata, { format: "pt" });
      assert.equal(p.base % 8, 0, "data starts 8-aligned");
      // Exact set of names and [out, in] shapes, all F32.
      const want = expectedNames(config);
      assert.deepEqual(p.entries.map(([k]) => k).sort(), [...want.keys()].sort());
      for (const [name, info] of p.entries) {
        assert.equal(info.dtype, "F32", name);
        assert.deepEqual(info.shape, want.get(name), name);
      }
      // Names are listed sorted; offsets are contiguous and end at the file size.
      const names = p.entries.map(([k]) => k);
      assert.deepEqual(names, [...names].sort());
      const spans = p.entries.map(([, i]) => i.data_offsets).sort((a, b) => a[0] - b[0]);
      let pos = 0;
      for (const [b, e] of spans) {
        assert.equal(b, pos);
        pos = e;
      }
      assert.equal(p.base + pos, bytes.length);
      // A few values: expert 2 of layer 1 (w1 = gate, w3 = up, w2 = down), the router, embed.
      const { dModel: d, dFf: f } = config;
      const L = "model.layers.1.block_sparse_moe";
      assert.deepEqual(
        p.f32(`${L}.experts.2.w1.weight`),
        Array.from(host["layers.1.moe.gate"].subarray(2 * f * d, 3 * f * d)),
      );
      assert.deepEqual(
        p.f32(`${L}.experts.2.w3.weight`),
        Array.from(host["layers.1.moe.up"].subarray(2 * f * d, 3 * f * d)),
      );
      assert.deepEqual(
        p.f32(`${L}.experts.3.w2.weight`),
        Array.from(host["layers.1.moe.down"].subarray(3 * d * f, 4 * d * f)),
      );
      assert.deepEqual(p.f32(`${L}.gate.weight`), Array.from(host["layers.1.moe.router"]));
      assert.deepEqual(p.f32("model.embed_tokens.weight"), Array.from(host.embed));
      assert.deepEqual(
        p.f32("model.layers.0.self_attn.o_proj.weight"),
        Array.from(host["layers.0.attn.o"]),
      );

      // config.json
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      assert.equal(cfg.model_type, family);
      assert.deepEqual(cfg.architectures, [
        family === "mixtral" ? "MixtralForCausalLM" : "PhimoeForCausalLM",
      ]);
      const expectKeys: Record<string, unknown> = {
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 2,
        hidden_act: "silu",
        max_position_embeddings: config.maxSeqLen,
        rms_norm_eps: config.normEps,
        rope_theta: config.ropeTheta,
        tie_word_embeddings: config.tiedEmbeddings,
        num_local_experts: 4,
        num_experts_per_tok: 2,
        // unified α = 0.01 in HF's K× larger convention
        router_aux_loss_coef: 0.01 / 2,
        router_jitter_noise: family === "phimoe" ? config.jitterEps : 0,
        torch_dtype: "float32",
      };
      for (const [k, v] of Object.entries(expectKeys)) assert.deepEqual(cfg[k], v, k);
      assert.deepEqual(cfg.moejit.config, config);
      assert.deepEqual(io.modelConfigFromHf(cfg), config);
    } finally {
      await cleanup();
    }
  });
}

Deno.test("hf layout: dense FFN exports as llama mlp.{gate,up,down}_proj; gelu experts as w1/w2", () => {
  const dense = modelConfig({ ...small, ffn: "dense" });
  assert.equal(io.hfFamily(dense), "llama");
  const names = io.hfTensorShapes(dense).map(([n]) => n);
  assert.ok(names.includes("model.layers.1.mlp.gate_proj.weight"));
  assert.ok(names.includes("model.layers.1.mlp.up_proj.weight"));
  assert.ok(names.includes("model.layers.1.mlp.down_proj.weight"));
  assert.equal(io.hfConfigJson(dense).model_type, "llama");
  assert.equal(io.hfConfigJson(dense).num_local_experts, undefined);

  const gelu = modelConfig({ ...small, estimator: "topk", activation: "gelu" });
  const shapes = new Map(io.hfTensorShapes(gelu));
  assert.deepEqual(shapes.get("model.layers.0.block_sparse_moe.experts.3.w1.weight"), [8, 16]);
  assert.deepEqual(shapes.get("model.layers.0.block_sparse_moe.experts.3.w2.weight"), [16, 8]);
  assert.equal(shapes.has("model.layers.0.block_sparse_moe.experts.3.w3.weight"), false);
  assert.equal(io.hfConfigJson(gelu).hidden_act, "gelu");
  assert.ok(io.hfCompatibility(gelu).some((s) => s.includes("gelu")));
  assert.deepEqual(
    io.hfCompatibility(modelConfig({ ...small, estimator: "topk", normalizeTopK: true })),
    [],
  );
  assert.ok(
    io.hfCompatibility(modelConfig({ ...small, estimator: "topk" })).some((s) =>
      s.includes("renormalises")
    ),
  );
});

Deno.test("hf config: derived without the moejit block, and clear errors for what is missing", () => {
  const json = io.hfConfigJson(modelConfig({ ...small, estimator: "topk", normalizeTopK: true }));
  assert.equal(json.model_type, "mixtral");
  delete json.moejit;
  const c = io.modelConfigFromHf(json);
  assert.equal(c.dModel, 16);
  assert.equal(c.experts, 4);
  assert.equal(c.estimator, "topk");
  assert.deepEqual(c.balance, [{ kind: "auxLoss", alpha: 0.005, convention: "hf" }]);
  const phi = io.hfConfigJson(modelConfig({ ...small, norm: "layernorm", jitterEps: 0.02 }));
  delete phi.moejit;
  const p = io.modelConfigFromHf(phi);
  assert.equal(p.estimator, "sparsemixer");
  assert.equal(p.norm, "layernorm");
  assert.equal(p.jitterEps, 0.02);

  const partial = { model_type: "mixtral", vocab_size: 32, hidden_size: 16 };
  assert.throws(
    () => io.modelConfigFromHf(partial, "x/config.json"),
    /x\/config\.json: missing intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings, num_local_experts \(or num_experts\), num_experts_per_tok/,
  );
  assert.throws(
    () => io.modelConfigFromHf({ model_type: "gpt2" }),
    /model_type "gpt2" is not supported/,
  );
  assert.throws(
    () => io.modelConfigFromHf({ ...json, num_key_value_heads: 1 }),
    /grouped-query attention is not supported/,
  );
  const edited = io.hfConfigJson(modelConfig(small));
  edited.hidden_size = 32;
  assert.throws(
    () => io.modelConfigFromHf(edited),
    /hidden_size is 32 but the "moejit" block says 16/,
  );
});

Deno.test("hf config: per-layer balancers keep the first aux coefficient and say so", () => {
  const c = modelConfig({
    ...small,
    estimator: "topk",
    balance: [[{ kind: "auxLoss", alpha: 0.02 }], [{ kind: "bip", cap: 3 }]],
  });
  const json = io.hfConfigJson(c);
  assert.equal(json.router_aux_loss_coef, 0.02 / c.topK);
  assert.deepEqual(modelConfig((json.moejit as { config: typeof c }).config), c);
  const notes = io.hfCompatibility(c);
  assert.ok(notes.some((n) => n.includes("differs between layers")), notes.join("; "));
  assert.ok(notes.some((n) => n.includes("mixtral: balance bip")), notes.join("; "));
  const same = modelConfig({
    ...small,
    estimator: "topk",
    balance: [[{ kind: "auxLoss" }], [{ kind: "auxLoss" }, { kind: "zLoss" }]],
  });
  assert.ok(!io.hfCompatibility(same).some((n) => n.includes("differs between layers")));
});

Deno.test("hf tensors: fromHfTensors names the tensor, found and expected shapes; missing and unexpected names", () => {
  const config = modelConfig({ ...small, estimator: "topk" });
  const { host } = randomParams(config, 5);
  const hf = io.toHfTensors(host, config);
  const back = io.fromHfTensors(hf, config);
  for (const [k, v] of Object.entries(host)) assert.deepEqual(back[k], v, k);

  const wrong = {
    ...hf,
    "model.layers.0.self_attn.q_proj.weight": {
      dtype: "F32" as const,
      shape: [16, 8],
      data: new Float32Array(128),
    },
  };
  assert.throws(
    () => io.fromHfTensors(wrong, config, "m.safetensors"),
    /m\.safetensors: tensor model\.layers\.0\.self_attn\.q_proj\.weight: shape \[16, 8\] found, \[16, 16\] expected/,
  );
  const missing: Record<string, io.SafetensorsInput> = { ...hf };
  delete missing["model.layers.1.block_sparse_moe.experts.3.w2.weight"];
  missing["lm_head.bias"] = { dtype: "F32", shape: [32], data: new Float32Array(32) };
  assert.throws(
    () => io.fromHfTensors(missing, config),
    /missing tensors: model\.layers\.1\.block_sparse_moe\.experts\.3\.w2\.weight; unexpected tensors: lm_head\.bias/,
  );
  assert.throws(
    () => io.toHfTensors({ ...host, extra: new Float32Array(1) }, config),
    /unexpected parameters.*extra/,
  );
});

Deno.test("hf tensors: transformers v5 fused experts are read too", () => {
  const config = modelConfig({ ...small, estimator: "topk" });
  const { host } = randomParams(config, 9);
  const hf: Record<string, io.SafetensorsInput> = { ...io.toHfTensors(host, config) };
  const { experts: E, dFf: f, dModel: d } = config;
  for (let i = 0; i < 2; i++) {
    const L = `model.layers.${i}`;
    const gu = new Float32Array(E * 2 * f * d), dn = new Float32Array(E * d * f);
    for (let e = 0; e < E; e++) {
      const old = (w: string) =>
        hf[`${L}.block_sparse_moe.experts.${e}.${w}.weight`].data as Float32Array;
      gu.set(old("w1"), e * 2 * f * d);
      gu.set(old("w3"), e * 2 * f * d + f * d);
      dn.set(old("w2"), e * d * f);
      for (const w of ["w1", "w2", "w3"]) {
        delete hf[`${L}.block_sparse_moe.experts.${e}.${w}.weight`];
      }
    }
    hf[`${L}.mlp.gate.weight`] = hf[`${L}.block_sparse_moe.gate.weight`];
    delete hf[`${L}.block_sparse_moe.gate.weight`];
    hf[`${L}.mlp.experts.gate_up_proj`] = { dtype: "F32", shape: [E, 2 * f, d], data: gu };
    hf[`${L}.mlp.experts.down_proj`] = { dtype: "F32", shape: [E, d, f], data: dn };
  }
  const back = io.fromHfTensors(hf, config);
  for (const [k, v] of Object.entries(host)) assert.deepEqual(back[k], v, k);
});
