/**
 * Stop requests of a training run — Ctrl-C (SIGINT) and a caller's AbortSignal — seen in every
 * phase of the run (data loading, compiling, training, evaluation, checkpointing, sampling).
 *
 * A signal listener only runs when the event loop gets a turn; a loop that awaits promises which
 * are already resolved (the interpreter computes synchronously) never gives it one, and Ctrl-C
 * would wait for the next file write. The run therefore yields to the event loop between steps,
 * evaluation batches and sampled tokens (`yieldToEventLoop`).
 */
import { MoejitError } from "../errors.ts";

export { yieldToEventLoop } from "../event_loop.ts";

/**
 * A run stopped by Ctrl-C or its AbortSignal before it trained a step: nothing was written.
 * (A stop after the first step ends the run normally, with a checkpoint.)
 */
export class TrainInterrupted extends MoejitError {
  constructor(message: string) {
    super("train", message);
    this.name = "TrainInterrupted";
  }
}

/**
 * Collects stop requests: the first Ctrl-C asks the run to stop at the next safe point; a second
 * one exits at once (status 130) — safe, because checkpoints are swapped in whole.
 *
 * @example
 * ```ts
 * const stop = new StopRequests({ signal, sigint: true });
 * try {
 *   while (!stop.reason) await step();
 * } finally {
 *   stop.dispose();
 * }
 * ```
 */
export class StopRequests {
  #reason: string | null = null;
  readonly #signal?: AbortSignal;
  readonly #listener?: () => void;
  readonly #abort = new AbortController();
  readonly #follow = () => this.#abort.abort();

  constructor(o: { signal?: AbortSignal; sigint: boolean }) {
    this.#signal = o.signal;
    o.signal?.addEventListener("abort", this.#follow, { once: true });
    if (o.sigint && Deno.build.os !== "windows") {
      this.#listener = () => {
        if (this.#reason) Deno.exit(130);
        this.#reason = "interrupted (Ctrl-C)";
        this.#abort.abort();
      };
      Deno.addSignalListener("SIGINT", this.#listener);
    }
  }

  /** Aborted at the first stop request (for APIs that take an AbortSignal). */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Why the run should stop, or null. */
  get reason(): string | null {
    return this.#reason ?? (this.#signal?.aborted ? "stopped (signal)" : null);
  }

  /** Removes the Ctrl-C handler (the default, exit at once, applies again). */
  dispose(): void {
    if (this.#listener) Deno.removeSignalListener("SIGINT", this.#listener);
    this.#signal?.removeEventListener("abort", this.#follow);
  }
}
