/** Shared helpers of the I/O tests: temporary directories and random parameter trees. */
import * as mj from "../../mod.ts";
import { type ModelConfig, parameterShapes } from "../../src/nn/config.ts";
import { prng } from "../helpers.ts";

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "moejit-io-" });
  return { dir, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

/** Sets `value` at a dotted path (numeric segments make arrays). */
function setPath(tree: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let node = tree;
  keys.forEach((k, i) => {
    if (i === keys.length - 1) node[k] = value;
    else {
      node[k] ??= /^\d+$/.test(keys[i + 1]) ? [] : {};
      node = node[k] as Record<string, unknown>;
    }
  });
}

/** A parameter tree of random values (host data kept by path for checks). */
export function randomParams(
  config: ModelConfig,
  seed = 1,
): { params: Record<string, unknown>; host: Record<string, Float32Array> } {
  const r = prng(seed);
  const params: Record<string, unknown> = {};
  const host: Record<string, Float32Array> = {};
  for (const [path, shape] of parameterShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => 2 * r() - 1);
    host[path] = data;
    setPath(params, path, mj.tensor(data, shape));
  }
  return { params, host };
}

/** Names of the *.tmp files under a directory (recursively). */
export async function tempFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else if (e.name.endsWith(".tmp")) out.push(`${d}/${e.name}`);
    }
  };
  await walk(dir);
  return out;
}
