/** Small helpers for the side-by-side benchmark scripts. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A plain-text table. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(w[i])).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

/** numpy/OpenBLAS sgemm GFLOP/s for M×K·K×N (median of 5), or null without python3-numpy. */
export function numpyMatmulGflops(M: number, K: number, N: number): number | null {
  const code = `
import time, numpy as np
a = np.random.rand(${M}, ${K}).astype(np.float32); b = np.random.rand(${K}, ${N}).astype(np.float32)
a @ b
ts = []
for _ in range(5):
    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
ts.sort(); print(2 * ${M} * ${K} * ${N} / ts[2] / 1e9)
`;
  try {
    const out = new Deno.Command("/usr/bin/python3", {
      args: ["-c", code],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    if (!out.success) return null;
    return Number(new TextDecoder().decode(out.stdout).trim());
  } catch {
    return null;
  }
}

/**
 * Times each variant's `run` `rounds` times, alternating between variants within every round
 * (so the machine's drift hits all of them alike) after one warm-up call each; ms per call.
 */
export async function alternate(
  variants: Record<string, { run: () => Promise<unknown> }>,
  rounds: number,
): Promise<Record<string, number[]>> {
  const times: Record<string, number[]> = Object.fromEntries(
    Object.keys(variants).map((k) => [k, []]),
  );
  for (const v of Object.values(variants)) await v.run();
  for (let r = 0; r < rounds; r++) {
    for (const [name, v] of Object.entries(variants)) {
      const t0 = performance.now();
      await v.run();
      times[name].push(performance.now() - t0);
    }
  }
  return times;
}
