/**
 * TensorFlow.js 4.22 on its WebGPU backend, the peer our benchmarks compare against. Benchmark
 * code only: mod.ts never imports it.
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";

let ready: Promise<typeof tf> | null = null;

/** TF.js with the WebGPU backend selected (and its adapter's description). */
export function tfjs(): Promise<typeof tf> {
  ready ??= (async () => {
    const ok = await tf.setBackend("webgpu");
    if (!ok) throw new Error("TF.js could not start its WebGPU backend");
    await tf.ready();
    return tf;
  })();
  return ready;
}
