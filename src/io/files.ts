/**
 * Atomic file writes: data goes to a temporary file in the same directory, which is then
 * renamed over the target, so a crash mid-write leaves the old file (or none), never half of
 * the new one.
 */

function tempName(path: string): string {
  return `${path}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`;
}

/**
 * Writes bytes or text to `path` atomically (creating parent directories): a crash leaves the
 * old file or the new one, never a mix.
 *
 * @example
 * ```ts
 * await mj.io.writeFileAtomic("out/run/summary.json", JSON.stringify(summary));
 * ```
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  if (dir) await Deno.mkdir(dir, { recursive: true });
  const tmp = tempName(path);
  try {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let off = 0;
      while (off < bytes.length) off += await f.write(bytes.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Appends one line to a text file (creating it), e.g. a JSONL metrics log.
 *
 * @example
 * ```ts
 * await mj.io.appendLine("out/run/events.jsonl", JSON.stringify({ step: 10, note: "lr drop" }));
 * ```
 */
export async function appendLine(path: string, line: string): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  if (dir) await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, line.endsWith("\n") ? line : line + "\n", { append: true });
}
