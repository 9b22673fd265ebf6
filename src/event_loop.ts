/**
 * Giving the event loop a turn. A signal listener (Ctrl-C), a timer or an I/O callback only runs
 * when the event loop gets one; a loop that awaits promises which are already resolved (the
 * interpreter computes synchronously) never gives it one.
 */

/**
 * Lets pending events (signals, timers, I/O completions) run, then continues: a message-channel
 * round trip of a few microseconds, not a timer with its millisecond clamp.
 *
 * @example
 * ```ts
 * for (const batch of batches) {
 *   await work(batch);
 *   await yieldToEventLoop(); // a Ctrl-C handler can run here
 * }
 * ```
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      port2.close();
      resolve();
    };
    port2.postMessage(null);
  });
}
