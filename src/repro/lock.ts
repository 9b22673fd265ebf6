/**
 * A lock file naming the process that holds a directory, so that two runners (or a runner and a
 * child left over from a killed one) never train the same run at once. A lock whose process is
 * gone is stale and taken over.
 */
import { fail } from "../errors.ts";

interface LockInfo {
  pid: number;
  started: string;
  what: string;
}

/** True when a process with this id exists (Linux: /proc; elsewhere: assumed gone). */
async function alive(pid: number): Promise<boolean> {
  if (pid === Deno.pid) return true;
  return await Deno.stat(`/proc/${pid}`).then(() => true, () => false);
}

/**
 * Takes the lock at `path` for this process, or fails naming the process that holds it.
 *
 * @example
 * ```ts
 * await acquireLock("reports/grin/.lock", "deno task reproduce --suite grin");
 * try { … } finally { await releaseLock("reports/grin/.lock"); }
 * ```
 */
export async function acquireLock(path: string, what: string): Promise<void> {
  const info: LockInfo = { pid: Deno.pid, started: new Date().toISOString(), what };
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || ".", { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      // createNew: of two processes racing for the lock, one gets it.
      await Deno.writeTextFile(path, JSON.stringify(info) + "\n", { createNew: true });
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    let held: LockInfo | null = null;
    try {
      held = JSON.parse(await Deno.readTextFile(path)) as LockInfo;
    } catch { /* unreadable: stale */ }
    if (held?.pid === Deno.pid) return;
    if (held && (await alive(held.pid))) {
      fail(
        "reproduce",
        `${path} is held by process ${held.pid} (${held.what}, since ${held.started}); wait for it to finish or stop it`,
      );
    }
    await Deno.remove(path).catch(() => {}); // stale: its process is gone
  }
  fail("reproduce", `could not take the lock ${path}: another process keeps taking it`);
}

/**
 * Releases a lock this process holds (another process's lock is left alone).
 *
 * @example
 * ```ts
 * await releaseLock("reports/grin/.lock");
 * ```
 */
export async function releaseLock(path: string): Promise<void> {
  try {
    const held = JSON.parse(await Deno.readTextFile(path)) as LockInfo;
    if (held.pid === Deno.pid) await Deno.remove(path);
  } catch { /* already gone */ }
}
