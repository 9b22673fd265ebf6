/**
 * mod.ts works when imported from a URL: the repository is served over HTTP on 127.0.0.1 and a
 * subprocess imports http://127.0.0.1:PORT/mod.ts and computes something (library code uses
 * relative imports only, so nothing else is needed).
 */
import { assert } from "./helpers.ts";

const root = new URL("../", import.meta.url);

Deno.test("mod.ts can be imported from a URL and computes", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).replace(/^\/+/, "");
    if (path.includes("..")) return new Response("forbidden", { status: 403 });
    try {
      const body = await Deno.readFile(new URL(path, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const port = server.addr.port;
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/user.ts`;
    await Deno.writeTextFile(
      script,
      `import * as mj from "http://127.0.0.1:${port}/mod.ts";
mj.setBackend("cpu");
const x = mj.tensor([[1, 2], [3, 4]]);
const [g] = mj.grad((x: mj.Tensor) => x.square().sum())(x);
console.log(JSON.stringify({ y: Array.from(await x.matmul(x).data()), g: Array.from(await g.data()) }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      // A fresh cache dir: the import really goes over HTTP.
      args: ["run", "-A", "--no-lock", "--no-config", script],
      env: { DENO_DIR: `${dir}/deno-dir`, XDG_RUNTIME_DIR: "/tmp" },
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const res = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(res, { y: [7, 10, 15, 22], g: [2, 4, 6, 8] });
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
