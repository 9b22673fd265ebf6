/**
 * Crash-safe writes. Files: data goes to a temporary file in the same directory, which is then
 * renamed over the target, so a crash mid-write leaves the old file (or none), never half of
 * the new one. Directories (checkpoints): a new copy is staged next to the old one and swapped
 * in by renames, in an order that keeps a complete copy on disk at every instant, and a reader
 * settles whatever state a kill left (see {@link replaceDirectory}, {@link recoverDirectory}).
 */
import { fail } from "../errors.ts";

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

/**
 * Flushes a directory's entries (new names, renames) to disk, so that a power loss after a
 * rename cannot bring back the old name. Best effort: platforms that cannot open a directory
 * (Windows) skip it.
 *
 * @example
 * ```ts
 * await Deno.rename("out/a.tmp", "out/a");
 * await mj.io.syncDirectory("out");
 * ```
 */
export async function syncDirectory(dir: string): Promise<void> {
  let f: Deno.FsFile | undefined;
  try {
    f = await Deno.open(dir, { read: true });
    await f.sync();
  } catch {
    // Not supported here (or the directory is gone): nothing to flush.
  } finally {
    f?.close();
  }
}

/** Writes bytes to a new file and flushes them to disk before returning. */
export async function writeFileSynced(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const f = await Deno.open(path, { write: true, createNew: true });
  try {
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
    await f.sync();
  } finally {
    f.close();
  }
}

function parentOf(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const i = trimmed.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : trimmed.slice(0, i);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

/** The sibling paths {@link replaceDirectory} stages a new copy in and retires the old one to. */
export function stagingPaths(dir: string): { partial: string; old: string } {
  const d = trimSlashes(dir);
  return { partial: `${d}.partial`, old: `${d}.old` };
}

/** `dir` without trailing slashes (renames need the bare name). */
function trimSlashes(dir: string): string {
  return dir.length > 1 ? dir.replace(/\/+$/, "") || "/" : dir;
}

/** Where a directory stands after {@link recoverDirectory}. */
export interface Recovery {
  /** The directory to read: `dir` itself, or null when no complete copy exists. */
  dir: string | null;
  /**
   * True when only `dir` (or nothing) is left: false when `dir` does not check out as complete
   * and a sibling was kept, or when a read-only location made recovery read a sibling in place.
   */
  settled: boolean;
  /** What recovery did or found, one line each (empty when there was nothing to do). */
  notes: string[];
}

/**
 * Settles a directory that {@link replaceDirectory} may have left mid-swap when the process was
 * killed. `isComplete` tells whether a copy is whole (a checkpoint checks its manifest). Every
 * step keeps a complete copy on disk, so a kill during recovery is recovered the same way:
 *
 *  - `dir` exists: it is the current copy (only whole copies are ever renamed to `dir`); the
 *    `.partial`/`.old` siblings are removed once `dir` is checked complete (if it is not, they
 *    are left and named in `notes`);
 *  - no `dir`, a complete `.partial`: the new copy was written but not yet swapped in; it
 *    becomes `dir`, then `.old` is removed;
 *  - no `dir`, a complete `.old` (and no complete `.partial`): the swap had just begun; `.old`
 *    goes back to `dir`, then the incomplete `.partial` is removed;
 *  - otherwise there is no complete copy; `dir` is null and `notes` says what was found.
 *
 * A read-only location cannot be renamed in; then the complete sibling is returned as `dir`.
 *
 * @example
 * ```ts
 * const r = await mj.io.recoverDirectory("out/run/checkpoint", isWholeCheckpoint);
 * if (r.dir === null) throw new Error(r.notes.join("; "));
 * ```
 */
export async function recoverDirectory(
  dir: string,
  isComplete: (dir: string) => Promise<boolean>,
): Promise<Recovery> {
  dir = trimSlashes(dir);
  const { partial, old } = stagingPaths(dir);
  const notes: string[] = [];
  const hasPartial = await exists(partial), hasOld = await exists(old);
  if (await exists(dir)) {
    if (!hasPartial && !hasOld) return { dir, settled: true, notes };
    if (await isComplete(dir)) {
      if (hasPartial) await removeTree(partial);
      if (hasOld) await removeTree(old);
      return { dir, settled: true, notes };
    }
    for (const [p, has] of [[partial, hasPartial], [old, hasOld]] as const) {
      if (has) {
        notes.push(
          `${p} is ${
            (await isComplete(p)) ? "a complete earlier copy" : "incomplete"
          } (left in place)`,
        );
      }
    }
    return { dir, settled: false, notes };
  }
  const promote = async (from: string, other: string, hasOther: boolean, what: string) => {
    try {
      await Deno.rename(from, dir);
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotSupported) {
        notes.push(`${from} holds ${what} (read in place: ${(e as Error).message})`);
        return { dir: from, settled: false, notes };
      }
      throw e;
    }
    await syncDirectory(parentOf(dir));
    notes.push(`recovered ${what} from ${from}`);
    if (hasOther) await removeTree(other);
    return { dir, settled: true, notes };
  };
  if (hasPartial && (await isComplete(partial))) {
    return await promote(partial, old, hasOld, "a complete copy written just before a crash");
  }
  if (hasOld && (await isComplete(old))) {
    return await promote(old, partial, hasPartial, "the previous copy (a save was interrupted)");
  }
  if (hasPartial) notes.push(`${partial} is incomplete (a save was interrupted while writing it)`);
  if (hasOld) notes.push(`${old} is incomplete (it was being removed)`);
  return { dir: null, settled: true, notes };
}

/**
 * Replaces the directory `dir` by a new one as one step a crash cannot split: `fill` writes the
 * new copy into `dir.partial` (the caller writes whatever marks it complete last, e.g. a
 * manifest), then `dir` is renamed to `dir.old`, `dir.partial` to `dir`, and `dir.old` is removed.
 * A kill at any point leaves a complete copy (the old or the new one) that
 * {@link recoverDirectory} finds; the only complete copy is never removed. An earlier
 * interrupted replace is recovered first. `mayReplace` guards the existing `dir` (e.g. refuse a
 * directory that is not a checkpoint); a refusal is thrown as given. Errors name `op`.
 *
 * @example
 * ```ts
 * await mj.io.replaceDirectory("out/run/checkpoint", async (tmp) => {
 *   await mj.io.writeFileSynced(`${tmp}/weights.bin`, bytes);
 *   await mj.io.writeFileSynced(`${tmp}/manifest.json`, manifest);
 * }, { isComplete: hasValidManifest });
 * ```
 */
export async function replaceDirectory(
  dir: string,
  fill: (staging: string) => Promise<void>,
  o: {
    isComplete: (dir: string) => Promise<boolean>;
    mayReplace?: (dir: string) => Promise<void>;
    op?: string;
  },
): Promise<void> {
  dir = trimSlashes(dir);
  const { partial, old } = stagingPaths(dir);
  const recovery = await recoverDirectory(dir, o.isComplete);
  if (!recovery.settled) {
    // `dir` is not whole but a sibling was kept (or nothing can be renamed here): replacing
    // would discard a copy that may be the user's only good one.
    fail(
      o.op ?? "replaceDirectory",
      `${dir} does not check out as complete and ${recovery.notes.join("; ")}; ` +
        `move one of them away before saving again`,
    );
  }
  const had = await exists(dir);
  if (had) await o.mayReplace?.(dir);
  // After recovery a leftover `.partial` is never the only complete copy.
  await removeTree(partial);
  await removeTree(old);
  await Deno.mkdir(parentOf(partial), { recursive: true });
  await Deno.mkdir(partial);
  try {
    await fill(partial);
  } catch (e) {
    await removeTree(partial).catch(() => {});
    throw e;
  }
  await syncDirectory(partial);
  if (had) await Deno.rename(dir, old);
  await Deno.rename(partial, dir);
  await syncDirectory(parentOf(dir));
  if (had) await removeTree(old);
}
