/**
 * `deno task serve`: builds the playground (tools/bundle.ts) and serves it on 127.0.0.1.
 *
 *   deno task serve              # http://127.0.0.1:8000/
 *   deno task serve --port 0     # any free port
 */
import { parseArgs } from "node:util";
import { buildPlayground } from "./bundle.ts";
import { stopEsbuild } from "./esbuild.ts";
import { serveStatic } from "./static_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { port: { type: "string", default: "8000" } },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer from 0 to 65535, got ${values.port}`);
  Deno.exit(2);
}
try {
  await buildPlayground("dist/playground");
} finally {
  await stopEsbuild();
}
const server = serveStatic({ dir: "dist/playground" }, { port });
console.log(`moejit playground: ${server.url}  (Ctrl-C stops)`);
