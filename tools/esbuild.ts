/**
 * esbuild for the browser: bundles an entry point into one ESM file and refuses any module that
 * needs Deno. A module fails when it names the `Deno` global anywhere in its code (found by
 * esbuild itself: `Deno` is defined to a marker, which only free references turn into; strings,
 * comments, types and `globalThis.Deno` lookups are not references), or imports an `npm:`,
 * `node:` or `jsr:` specifier. Modules are checked whole, before tree shaking, so an unused
 * file-system function in a module the page imports is an error too: split the module instead.
 */
import * as esbuild from "esbuild";

/** The marker free `Deno` references become; no source names it. */
const DENO_MARKER = "__moejit_deno_global__";

/** What one bundling produced. */
export interface BundleOutput {
  /** The JavaScript (ESM). */
  code: string;
  /** Its source map (JSON), when asked for. */
  map?: string;
  /** Source files in the bundle, relative to the working directory. */
  inputs: string[];
}

/** Options of {@link bundleEntry}. */
export interface BundleOptions {
  minify?: boolean;
  /** Write a source map next to the output (`sourcemap: "linked"` needs `outfile`). */
  sourcemap?: boolean;
  /** The output file name the source map comment points at (default "bundle.js"). */
  outfile?: string;
}

function relative(path: string): string {
  const cwd = Deno.cwd() + "/";
  return path.startsWith(cwd) ? path.slice(cwd.length) : path;
}

/** The first source line naming Deno as a global (for the error message; esbuild decides). */
function firstDenoLine(source: string): number {
  const lines = source.split("\n");
  const i = lines.findIndex((l) =>
    /(^|[^\w."'`$])Deno\s*[.?[]/.test(l) && !/^\s*(\*|\/\/)/.test(l)
  );
  return i + 1;
}

/**
 * An esbuild plugin that fails the build on Deno-only modules reached from the entry point, and
 * names the chain of imports that reached each one.
 */
export function portabilityGuard(): esbuild.Plugin {
  return {
    name: "moejit-portability-guard",
    setup(build) {
      const importedBy = new Map<string, string>();
      const chain = (path: string): string => {
        const seen: string[] = [relative(path)];
        let p = importedBy.get(path);
        while (p && seen.length < 20) {
          seen.push(relative(p));
          p = importedBy.get(p);
        }
        return seen.reverse().join(" → ");
      };
      build.onResolve({ filter: /^(npm|node|jsr):/ }, (args) => ({
        errors: [{
          text: `${args.path} is Deno-only (imported from ${chain(args.importer)}); ` +
            "a browser entry must not reach it: split the module so the portable part " +
            "imports no npm:, node: or jsr: specifier",
        }],
      }));
      build.onResolve({ filter: /^\.\.?\// }, (args) => {
        const url = new URL(args.path, `file://${args.resolveDir}/`);
        const path = decodeURIComponent(url.pathname);
        if (!importedBy.has(path)) importedBy.set(path, args.importer);
        return undefined;
      });
      build.onLoad({ filter: /\.[cm]?[jt]s$/ }, async (args) => {
        const source = await Deno.readTextFile(args.path);
        const loader = args.path.endsWith("ts") ? "ts" : "js";
        const probe = await esbuild.transform(source, {
          loader,
          define: { Deno: DENO_MARKER },
          // Keep every statement: the check is on the module, not on what a page happens to use.
          treeShaking: false,
        });
        if (probe.code.includes(DENO_MARKER)) {
          return {
            errors: [{
              text:
                `${relative(args.path)} uses the Deno global (line ${
                  firstDenoLine(source)
                }); reached from the entry point by ${chain(args.path)}. ` +
                "Move the Deno-only code to a module the browser entry does not import " +
                "(or look Deno up on globalThis where it is only a feature test)",
            }],
          };
        }
        return { contents: source, loader };
      });
    },
  };
}

/**
 * Bundles `entry` for browsers (ESM, ES2022, one file) with the portability guard.
 *
 * @example
 * ```ts
 * const { code } = await bundleEntry("browser.ts", { minify: true });
 * ```
 */
export async function bundleEntry(entry: string, opts: BundleOptions = {}): Promise<BundleOutput> {
  const outfile = opts.outfile ?? "bundle.js";
  const r = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: !!opts.minify,
    sourcemap: opts.sourcemap ? "linked" : false,
    // Library and test modules read no package.json of ours: resolve relative to this checkout.
    absWorkingDir: Deno.cwd(),
    outfile,
    write: false,
    metafile: true,
    logLevel: "silent",
    legalComments: "none",
    plugins: [portabilityGuard()],
  }).catch((e: { errors?: esbuild.Message[] }) => {
    const msgs = e.errors?.map((m) =>
      m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text
    );
    throw new Error(`bundling ${entry} failed:\n  ${msgs?.join("\n  ") ?? String(e)}`);
  });
  const js = r.outputFiles!.find((f) => f.path.endsWith(".js"))!;
  const map = r.outputFiles!.find((f) => f.path.endsWith(".map"));
  return {
    code: js.text,
    map: map?.text,
    inputs: Object.keys(r.metafile!.inputs),
  };
}

/** Ends esbuild's service process (call once, when done bundling). */
export function stopEsbuild(): Promise<void> {
  return esbuild.stop();
}
