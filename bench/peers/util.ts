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

/** A long-lived python3 peer process (pythonPeer). */
export interface PythonPeer {
  /** What followed "ready" on the script's first line (e.g. its versions as JSON), trimmed. */
  readonly info: string;
  /** Sends one request line and resolves to the script's one-line answer. */
  request(line: string): Promise<string>;
  /** `request` for scripts that answer with a number of milliseconds. */
  run(pass: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * A python3 process that times one call per request, so that a peer's rounds alternate with
 * moejit's (a burst of load from elsewhere then falls on both): `args` start a script that
 * prints "ready" (optionally followed by what it is, e.g. versions as JSON) after warming up,
 * then answers each stdin line with one line (`run`: that pass's milliseconds). null when
 * python3 or the script's imports are missing; the script's stderr goes to ours.
 *
 * @example
 * ```ts
 * const peer = await pythonPeer(["-c", 'import sys\nprint("ready")\nfor l in sys.stdin: print(1.5, flush=True)']);
 * if (peer) console.log(await peer.run("fwd"), await peer.close());
 * ```
 */
export async function pythonPeer(
  args: string[],
  env: Record<string, string> = {},
): Promise<PythonPeer | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("/usr/bin/python3", {
      args,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch {
    return null;
  }
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter())
    .getReader();
  const writer = child.stdin.getWriter();
  const next = async () => {
    const r = await lines.read();
    if (r.done) throw new Error(`${args[0]} stopped`);
    return r.value;
  };
  let first: string;
  try {
    first = await next();
  } catch {
    await child.status;
    return null;
  }
  if (!first.startsWith("ready")) {
    child.kill();
    await child.status;
    return null;
  }
  const request = async (line: string) => {
    await writer.write(new TextEncoder().encode(line + "\n"));
    return await next();
  };
  return {
    info: first.slice("ready".length).trim(),
    request,
    run: async (pass: string) => Number(await request(pass)),
    close: async () => {
      await writer.close();
      await child.status;
    },
  };
}

/** Splits a text stream into its non-blank lines. */
export function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, out) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) if (p.trim()) out.enqueue(p);
    },
    flush(out) {
      if (rest.trim()) out.enqueue(rest);
    },
  });
}

/**
 * numpy/OpenBLAS sgemm of M×K·K×N in a python3 process, one timed product per request
 * (pythonPeer); null without python3-numpy.
 */
export function numpyMatmulPeer(M: number, K: number, N: number) {
  const code = `
import sys, time, numpy as np
a = np.random.rand(${M}, ${K}).astype(np.float32); b = np.random.rand(${K}, ${N}).astype(np.float32)
a @ b; a @ b
print("ready", flush=True)
for line in sys.stdin:
    t = time.perf_counter(); a @ b; ms = (time.perf_counter() - t) * 1000
    print(ms, flush=True)
`;
  return pythonPeer(["-c", code]);
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
