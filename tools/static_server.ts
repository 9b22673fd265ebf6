/**
 * A tiny static file server on the loopback interface, for the playground (`deno task serve`)
 * and the browser tests: files from a folder, or from memory, GET and HEAD only, no listing.
 */

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wasm": "application/wasm",
};

/** The content type of a path, by extension. */
export function contentType(path: string): string {
  const dot = path.lastIndexOf(".");
  return (dot >= 0 && TYPES[path.slice(dot).toLowerCase()]) || "application/octet-stream";
}

/** Files by URL path ("/index.html"), or a folder to serve. */
export type Source = Map<string, string | Uint8Array> | { dir: string };

/** A running server. */
export interface StaticServer {
  /** The base URL, e.g. "http://127.0.0.1:8000/". */
  url: string;
  port: number;
  close(): Promise<void>;
}

async function lookup(source: Source, path: string): Promise<string | Uint8Array | null> {
  if (source instanceof Map) return source.get(path) ?? null;
  // Normalised URL paths never contain "..": resolve against the folder and stay inside it.
  const parts = path.split("/").filter((p) => p && p !== "." && p !== "..");
  try {
    return await Deno.readFile(`${source.dir}/${parts.join("/")}`);
  } catch {
    return null;
  }
}

/**
 * Serves `source` on 127.0.0.1 (`port` 0 picks a free one).
 *
 * @example
 * ```ts
 * const server = serveStatic(new Map([["/index.html", "<h1>hi</h1>"]]), { port: 0 });
 * console.log(server.url); // http://127.0.0.1:<port>/
 * await server.close();
 * ```
 */
export function serveStatic(source: Source, opts: { port?: number } = {}): StaticServer {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: opts.port ?? 0, onListen: () => {} },
    async (req) => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("method not allowed", { status: 405 });
      }
      let path = decodeURIComponent(new URL(req.url).pathname);
      if (path.endsWith("/")) path += "index.html";
      const body = await lookup(source, path);
      if (body === null) return new Response(`not found: ${path}`, { status: 404 });
      return new Response(req.method === "HEAD" ? null : body as BodyInit, {
        headers: { "content-type": contentType(path), "cache-control": "no-store" },
      });
    },
  );
  const port = (server.addr as Deno.NetAddr).port;
  return { url: `http://127.0.0.1:${port}/`, port, close: () => server.shutdown() };
}
