/**
 * Training progress on stderr: a single redrawn bar (steps, tokens/s, loss, ETA) on a terminal,
 * plain lines otherwise (CI logs, pipes), so logs stay readable either way.
 */

export interface ProgressOptions {
  /** Total steps of the run. */
  total: number;
  /** Step the run starts after (a resumed run starts past 0). */
  start?: number;
  /** Force the bar (true) or plain lines (false); default: a bar when stderr is a terminal. */
  tty?: boolean;
  /** Where text goes (default Deno's stderr). */
  write?: (text: string) => void;
  /** Minimum milliseconds between redraws of the bar (default 100). */
  interval?: number;
}

/** Formats seconds as 1h02m, 3m05s or 12s. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

function stderrWriter(): (text: string) => void {
  const enc = new TextEncoder();
  return (text) => Deno.stderr.writeSync(enc.encode(text));
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * A progress display for a training run.
 *
 * @example
 * ```ts
 * const bar = new Progress({ total: 500 });
 * bar.update(10, { tokensPerSec: 9000, loss: 3.2 });
 * bar.log("step 10: val ppl 12.3"); // printed above the bar
 * bar.done();
 * ```
 */
export class Progress {
  readonly #total: number;
  readonly #start: number;
  readonly #tty: boolean;
  readonly #write: (text: string) => void;
  readonly #interval: number;
  readonly #t0 = performance.now();
  #lastDraw = 0;
  #line = "";

  constructor(o: ProgressOptions) {
    this.#total = o.total;
    this.#start = o.start ?? 0;
    this.#tty = o.tty ?? stderrIsTerminal();
    this.#write = o.write ?? stderrWriter();
    this.#interval = o.interval ?? 100;
  }

  /**
   * Reports that `step` is done. On a terminal the bar is redrawn (at most every `interval` ms);
   * otherwise a plain line is printed when `print` is true (the caller's logging cadence).
   */
  update(step: number, info: { tokensPerSec?: number; loss?: number }, print = false): void {
    const done = step - this.#start, left = this.#total - step;
    const elapsed = (performance.now() - this.#t0) / 1000;
    const eta = done > 0 ? (elapsed / done) * left : NaN;
    const pct = this.#total ? step / this.#total : 1;
    const parts = [
      `step ${String(step).padStart(String(this.#total).length)}/${this.#total}`,
      info.tokensPerSec !== undefined
        ? `${Math.round(info.tokensPerSec).toLocaleString("en-US")} tok/s`
        : "",
      info.loss !== undefined ? `loss ${info.loss.toFixed(4)}` : "",
      `ETA ${formatDuration(eta)}`,
    ].filter(Boolean);
    if (this.#tty) {
      const now = performance.now();
      if (now - this.#lastDraw < this.#interval && step < this.#total) return;
      this.#lastDraw = now;
      const width = 24, fill = Math.round(pct * width);
      this.#line = `[${"█".repeat(fill)}${"·".repeat(width - fill)}] ${parts.join("  ")}`;
      this.#write(`\r\x1b[2K${this.#line}`);
    } else if (print) {
      this.#write(parts.join("  ") + "\n");
    }
  }

  /** Prints a line without disturbing the bar. */
  log(text: string): void {
    if (this.#tty) this.#write(`\r\x1b[2K${text}\n${this.#line}`);
    else this.#write(text + "\n");
  }

  /** Ends the bar (moves to a fresh line). */
  done(): void {
    if (this.#tty && this.#line) this.#write("\n");
    this.#line = "";
  }
}
