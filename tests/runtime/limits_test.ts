/**
 * Compiled steps against device limits (no device needed): the limits Chromium's SwiftShader
 * reports pass for the MoE layer; a smaller limit of each kind is an error naming the kernel and
 * the limit; the footprint parser reads workgroup sizes and workgroup arrays.
 */
import * as mj from "../../mod.ts";
import { assert } from "../helpers.ts";
import { compileStep } from "../../src/passes/compile.ts";
import { checkDeviceLimits, shaderFootprint } from "../../src/runtime/limits.ts";
import type { Node } from "../../src/ir/node.ts";

/** What Chromium's SwiftShader adapter reports (the tightest adapter the tests meet). */
const SWIFTSHADER = {
  maxStorageBuffersPerShaderStage: 10,
  maxStorageBufferBindingSize: 1073741824,
  maxBufferSize: 1073741824,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
};

function moeStep() {
  const x = mj.randn([64, 16], { seed: 1 });
  const p = {
    router: mj.randn([8, 16], { seed: 2 }),
    up: mj.randn([8, 32, 16], { seed: 3 }),
    down: mj.randn([8, 16, 32], { seed: 4 }),
    gate: mj.randn([8, 32, 16], { seed: 5 }),
  };
  const [, [dx]] = mj.valueAndGrad((x: mj.Tensor) =>
    mj.moe.layer(x, p, { k: 2, balance: [mj.balance.bip({ iters: 2 })] }).y.square().sum()
  )(x);
  const isInput = (n: Node) => n.op === "buffer";
  return compileStep([dx.node], isInput, { fuse: true, maxBindings: 10 });
}

Deno.test("limits: an MoE layer's forward and backward fit SwiftShader's limits", () => {
  checkDeviceLimits(moeStep(), SWIFTSHADER);
});

Deno.test("limits: each limit exceeded is an error naming the kernel and the limit", () => {
  const prog = moeStep();
  const cases: [string, number, RegExp][] = [
    [
      "maxComputeInvocationsPerWorkgroup",
      16,
      /kernel ".+": a workgroup of \d+×1×1 needs \d+ but this device allows 16 \(maxComputeInvocationsPerWorkgroup\)/,
    ],
    ["maxComputeWorkgroupSizeX", 8, /workgroup size X needs \d+ but this device allows 8/],
    ["maxComputeWorkgroupStorageSize", 64, /workgroup memory needs 1024 but this device allows 64/],
    ["maxStorageBuffersPerShaderStage", 2, /storage buffers needs \d+ but this device allows 2/],
  ];
  for (const [k, v, re] of cases) {
    assert.throws(() => checkDeviceLimits(prog, { ...SWIFTSHADER, [k]: v }), re, k);
  }
});

Deno.test("limits: the footprint of a shader is read from its WGSL", () => {
  assert.deepEqual(shaderFootprint("@compute @workgroup_size(64)\nfn main() {}"), {
    size: [64, 1, 1],
    shared: 0,
  });
  const code = `var<workgroup> h: array<atomic<u32>, 256>;
var<workgroup> v: array<vec4<f32>, 8u>;
@compute @workgroup_size(8, 4, 2) fn main() {}`;
  assert.deepEqual(shaderFootprint(code), { size: [8, 4, 2], shared: 256 * 4 + 8 * 16 });
});
