/**
 * safetensors files: {@link readSafetensors} and {@link writeSafetensors} (atomic), on top of the
 * in-memory encoder and decoder of safetensors.ts.
 */
import { fail } from "../errors.ts";
import { writeFileAtomic } from "./files.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type Safetensors,
  type SafetensorsInput,
} from "./safetensors.ts";

/**
 * Writes tensors to a safetensors file atomically (a temporary file renamed over `path`).
 *
 * @example
 * ```ts
 * await mj.io.writeSafetensors("out/w.safetensors", {
 *   w: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 * });
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, SafetensorsInput>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/**
 * Reads and checks a safetensors file; errors name the file and what is wrong with it.
 *
 * @example
 * ```ts
 * const { metadata, tensors } = await mj.io.readSafetensors("out/w.safetensors");
 * console.log(tensors.w.shape, tensors.w.data);
 * ```
 */
export async function readSafetensors(path: string): Promise<Safetensors> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fail("readSafetensors", `${path}: no such file`);
    return fail("readSafetensors", `${path}: cannot read (${(e as Error).message})`);
  }
  return decodeSafetensors(bytes, path);
}
