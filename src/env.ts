/**
 * Reads an environment variable without requiring `--allow-env` and without `Deno` existing
 * (the npm bundle runs in browsers): missing permission or runtime reads as unset.
 */
export function envVar(name: string): string | undefined {
  try {
    // deno-lint-ignore no-explicit-any
    const d = (globalThis as any).Deno;
    return d?.env?.get(name) ?? undefined;
  } catch {
    return undefined;
  }
}
