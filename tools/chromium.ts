/**
 * Headless Chromium driven over the DevTools protocol: launch with WebGPU on, open pages, run
 * expressions in them (awaiting promises), collect console output and errors, take screenshots,
 * and always end the process. A small driver of our own: one WebSocket, flat sessions.
 */

/** Where Chromium lives: MOEJIT_CHROMIUM, else the first of the usual names on PATH. */
export function findChromium(): string | null {
  const fromEnv = Deno.env.get("MOEJIT_CHROMIUM");
  if (fromEnv) return fromEnv;
  const names = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    for (const n of names) {
      try {
        const info = Deno.statSync(`${dir}/${n}`);
        if (info.isFile) return `${dir}/${n}`;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/**
 * Flags for a headless run with WebGPU: no first-run UI, and nothing that reaches the network
 * (on a closed network Chromium otherwise floods refused connections).
 */
const FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--disable-extensions",
  "--disable-breakpad",
  "--disable-domain-reliability",
  "--metrics-recording-only",
  "--window-size=1280,960",
];

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  method: string;
}

type Listener = (params: Record<string, unknown>) => void;

/** Rejects after `ms` with `what` in the message, unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A running headless Chromium. */
export class Chromium {
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;
  readonly #ws: WebSocket;
  readonly #stderr: string[];
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<string, Listener[]>();
  #closed = false;
  readonly #onUnload = () => this.#kill();

  private constructor(child: Deno.ChildProcess, dir: string, ws: WebSocket, stderr: string[]) {
    this.#child = child;
    this.#dir = dir;
    this.#ws = ws;
    this.#stderr = stderr;
    ws.onmessage = (ev) => this.#receive(JSON.parse(ev.data as string));
    ws.onclose = () => {
      for (const p of this.#pending.values()) {
        p.reject(new Error(`${p.method}: the DevTools connection closed${this.#stderrTail()}`));
      }
      this.#pending.clear();
    };
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /**
   * Starts Chromium headless with WebGPU and connects to it.
   *
   * @example
   * ```ts
   * const browser = await Chromium.launch();
   * try {
   *   const page = await browser.open("http://127.0.0.1:8000/");
   *   console.log(await page.evaluate("navigator.gpu ? 'webgpu' : 'none'"));
   * } finally {
   *   await browser.close();
   * }
   * ```
   */
  static async launch(opts: { binary?: string; startTimeoutMs?: number } = {}): Promise<Chromium> {
    const binary = opts.binary ?? findChromium();
    if (!binary) {
      throw new Error("Chromium was not found (set MOEJIT_CHROMIUM or install chromium)");
    }
    const dir = await Deno.makeTempDir({ prefix: "moejit-chromium-" });
    const child = new Deno.Command(binary, {
      args: [...FLAGS, `--user-data-dir=${dir}`, "--remote-debugging-port=0", "about:blank"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // Keep the last lines of stderr for error messages; reading also keeps the pipe from filling.
    const stderr: string[] = [];
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        stderr.push(...dec.decode(chunk).split("\n").filter((l) => l && !/dbus|bus\.cc/.test(l)));
        if (stderr.length > 200) stderr.splice(0, stderr.length - 200);
      }
    })().catch(() => {});
    let exited = false;
    child.status.then(() => (exited = true));
    try {
      const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
      let port = "", path = "";
      while (!port) {
        if (exited) throw new Error(`Chromium exited at start:\n${stderr.slice(-20).join("\n")}`);
        if (Date.now() > deadline) throw new Error("Chromium did not open its DevTools port");
        try {
          [port, path] = (await Deno.readTextFile(`${dir}/DevToolsActivePort`)).trim().split("\n");
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          ws.onopen = () => resolve();
          ws.onerror = () => reject(new Error("could not connect to Chromium's DevTools socket"));
        }),
        10_000,
        "DevTools connection",
      );
      const browser = new Chromium(child, dir, ws, stderr);
      // Pages under test may offer downloads: refuse them rather than write to the home folder.
      await browser.send("Browser.setDownloadBehavior", { behavior: "deny" });
      return browser;
    } catch (e) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  #stderrTail(): string {
    const tail = this.#stderr.slice(-10);
    return tail.length ? `\nChromium's stderr (last lines):\n${tail.join("\n")}` : "";
  }

  #receive(msg: Record<string, unknown>): void {
    if (typeof msg.id === "number") {
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      const err = msg.error as { message?: string; data?: string } | undefined;
      if (err) {
        p.reject(new Error(`${p.method}: ${err.message}${err.data ? ` (${err.data})` : ""}`));
      } else p.resolve((msg.result ?? {}) as Record<string, unknown>);
      return;
    }
    const key = `${msg.sessionId ?? ""}|${msg.method}`;
    for (const l of this.#listeners.get(key) ?? []) {
      l((msg.params ?? {}) as Record<string, unknown>);
    }
  }

  /** Sends a DevTools command (to a page when `sessionId` is given) and awaits its result. */
  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(new Error(`${method}: Chromium was closed`));
    const id = this.#nextId++;
    const p = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
    });
    this.#ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return withTimeout(p, timeoutMs, method).finally(() => this.#pending.delete(id));
  }

  /** Calls `fn` with every `method` event of a session (or of the browser). */
  on(method: string, fn: Listener, sessionId?: string): void {
    const key = `${sessionId ?? ""}|${method}`;
    this.#listeners.set(key, [...(this.#listeners.get(key) ?? []), fn]);
  }

  /**
   * Opens a new tab at `url` and waits for its load event; `beforeLoad` is a script that runs in
   * the page before any of its own (e.g. to take an API away).
   */
  async open(url: string, opts: { timeoutMs?: number; beforeLoad?: string } = {}): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId as string);
    await this.send("Page.enable", {}, sessionId as string);
    await this.send("Runtime.enable", {}, sessionId as string);
    if (opts.beforeLoad) {
      await this.send(
        "Page.addScriptToEvaluateOnNewDocument",
        { source: opts.beforeLoad },
        sessionId as string,
      );
    }
    await page.goto(url, opts.timeoutMs);
    return page;
  }

  /** Chromium's recent stderr (D-Bus noise dropped), for failure messages. */
  stderrTail(): string[] {
    return this.#stderr.slice(-30);
  }

  #kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Closes the browser (politely, then by force), and removes its profile directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    globalThis.removeEventListener("unload", this.#onUnload);
    try {
      await this.send("Browser.close", {}, undefined, 3_000);
    } catch {
      // force below
    }
    this.#closed = true;
    const exited = await withTimeout(this.#child.status, 5_000, "Chromium exit").then(
      () => true,
      () => false,
    );
    if (!exited) {
      this.#kill();
      await this.#child.status;
    }
    try {
      this.#ws.close();
    } catch {
      // closed by the browser already
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** One tab. */
export class Page {
  readonly #browser: Chromium;
  readonly sessionId: string;
  /** Console messages and uncaught errors of the page and its workers, in order. */
  readonly logs: string[] = [];

  constructor(browser: Chromium, sessionId: string) {
    this.#browser = browser;
    this.sessionId = sessionId;
    browser.on("Runtime.consoleAPICalled", (p) => {
      const args = (p.args as { value?: unknown; description?: string }[]) ?? [];
      this.logs.push(
        `console.${p.type}: ${
          args.map((a) => a.value !== undefined ? String(a.value) : a.description).join(" ")
        }`,
      );
    }, sessionId);
    browser.on("Runtime.exceptionThrown", (p) => {
      const d = p.exceptionDetails as { text?: string; exception?: { description?: string } };
      this.logs.push(`uncaught: ${d.exception?.description ?? d.text}`);
    }, sessionId);
  }

  /** Navigates and waits for the load event. */
  async goto(url: string, timeoutMs = 30_000): Promise<void> {
    const loaded = new Promise<void>((resolve) =>
      this.#browser.on("Page.loadEventFired", () => resolve(), this.sessionId)
    );
    await this.#browser.send("Page.navigate", { url }, this.sessionId);
    await withTimeout(loaded, timeoutMs, `loading ${url}`);
  }

  /**
   * Evaluates `expression` in the page, awaits it if it is a promise, and returns its value as
   * JSON. A thrown error becomes an Error here with the page's message and stack.
   */
  async evaluate<T = unknown>(expression: string, timeoutMs = 60_000): Promise<T> {
    const r = await this.#browser.send(
      "Runtime.evaluate",
      {
        expression,
        awaitPromise: true,
        returnByValue: true,
      },
      this.sessionId,
      timeoutMs,
    );
    const ex = r.exceptionDetails as
      | { text?: string; exception?: { description?: string } }
      | undefined;
    if (ex) {
      throw new Error(
        `in the page: ${ex.exception?.description ?? ex.text}\npage log:\n${
          this.logs.slice(-20).join("\n")
        }`,
      );
    }
    return (r.result as { value?: T }).value as T;
  }

  /** Polls `expression` until it is truthy; returns its value. */
  async waitFor<T = unknown>(expression: string, timeoutMs = 60_000, everyMs = 250): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const v = await this.evaluate<T>(expression, timeoutMs);
      if (v) return v;
      if (Date.now() > deadline) {
        throw new Error(
          `waited ${timeoutMs} ms for ${expression}\npage log:\n${this.logs.slice(-20).join("\n")}`,
        );
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /** A PNG of the page (the viewport, or the whole page with `fullPage`). */
  async screenshot(opts: { fullPage?: boolean } = {}): Promise<Uint8Array> {
    const r = await this.#browser.send("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: !!opts.fullPage,
    }, this.sessionId);
    const bin = atob(r.data as string);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
}
