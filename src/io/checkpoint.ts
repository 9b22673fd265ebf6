/**
 * Checkpoints: a directory holding
 *
 *  - `model.safetensors`: the parameters under Hugging Face names (F32, `__metadata__` exactly
 *    `{"format": "pt"}`, see hf.ts), loadable by the HF stack for the stock combinations;
 *  - `config.json`: the family's HF keys plus the full ModelConfig under `"moejit"`;
 *  - `training_state.safetensors` (optional): any tree of tensors (optimizer moments, per-layer
 *    MoE state such as `ehat`/`lossFreeBias`/`bipQ`, …) under their dotted tree paths, with the
 *    tree's structure, a JSON value (step, RNG and data positions, …) and the SHA-256 of the
 *    `model.safetensors` bytes saved with it in `__metadata__`. Loading checks that hash, so a
 *    model and a training state from different saves are never paired.
 *
 * Every file is written atomically (temporary file + rename); a load validates every file before
 * it builds any tensor, so a corrupt checkpoint throws and returns nothing.
 */
import { fail } from "../errors.ts";
import { getBackend } from "../backend.ts";
import type { DType, TypedArray } from "../dtype.ts";
import { Tensor } from "../tensor.ts";
import { fromHost } from "../ops/creation.ts";
import { flatten } from "../autodiff/tree.ts";
import { type ModelConfig, modelConfig, parameterShapes } from "../nn/config.ts";
import { writeFileAtomic } from "./files.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  moejitDtype,
  type Safetensors,
  safetensorsDtype,
  type SafetensorsInput,
  toMoejitData,
} from "./safetensors.ts";
import { fromHfTensors, hfConfigJson, modelConfigFromHf, SHAPE_FIELDS, toHfTensors } from "./hf.ts";

/** A tree of tensors: nested plain objects and arrays with Tensor leaves. */
export type ParamTree = { [key: string]: Tensor | ParamTree | ParamTree[] | Tensor[] | undefined };

/** Training state to save next to the model. */
export interface TrainingStateIn {
  /**
   * Any tree (nested plain objects/arrays) whose leaves are tensors (f32, i32, u32, bool) or
   * JSON values (numbers, strings, booleans, null); undefined leaves are dropped.
   */
  tensors?: unknown;
  /** Anything JSON can hold exactly: step, RNG state, data positions, schedules, … */
  json?: unknown;
}

/** What {@link saveCheckpoint} saves. */
export interface SaveCheckpointOptions {
  /** The model's configuration (written to config.json). */
  config: ModelConfig;
  /** The parameter tree (layout of `parameterShapes(config)`), f32 tensors. */
  params: unknown;
  /** Optimizer moments, MoE layer state, step counters, … (training_state.safetensors). */
  trainingState?: TrainingStateIn;
}

/** What {@link loadCheckpoint} returns. */
export interface Checkpoint<P = ParamTree> {
  /** The checkpoint's configuration (from config.json). */
  config: ModelConfig;
  /** The parameter tree, in the structure of `parameterShapes(config)`, as host-backed tensors. */
  params: P;
  /** The saved training state, or null when the checkpoint has none. */
  trainingState: { tensors: unknown; json: unknown } | null;
}

/** File names inside a checkpoint directory. */
export const MODEL_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";
export const STATE_FILE = "training_state.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

const STATE_FORMAT = "1";
const META = {
  format: "moejit.format",
  tree: "moejit.tree",
  json: "moejit.json",
  hash: "moejit.model_sha256",
};

function join(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== "object") return false;
  const p = Object.getPrototypeOf(x);
  return p === Object.prototype || p === null;
}

/** Checks that `v` survives JSON exactly (no NaN, functions, class instances, …). */
function checkJson(op: string, v: unknown, path: string): void {
  if (v === null || typeof v === "string" || typeof v === "boolean") return;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) fail(op, `${path} is ${v}, which JSON cannot hold`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkJson(op, x, `${path}[${i}]`));
    return;
  }
  if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (x !== undefined) checkJson(op, x, `${path}.${k}`);
    }
    return;
  }
  const what = v instanceof Tensor
    ? "a Tensor (put tensors in trainingState.tensors)"
    : typeof v === "object"
    ? `a ${v.constructor?.name ?? "object"} (only plain objects and arrays)`
    : `a ${typeof v}`;
  fail(op, `${path} is ${what}, which JSON cannot hold`);
}

// ---------------------------------------------------------------------------------------------
// Saving

/** The tree's skeleton for JSON: tensor leaves become {"$tensor": name}. */
function skeleton(op: string, tree: unknown, names: Map<Tensor, string>, path: string): unknown {
  if (tree instanceof Tensor) return { $tensor: names.get(tree) };
  if (Array.isArray(tree)) return tree.map((x, i) => skeleton(op, x, names, `${path}.${i}`));
  if (isPlainObject(tree)) {
    if ("$tensor" in tree) fail(op, `${path}: the key "$tensor" is reserved`);
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(tree)) {
      if (v !== undefined) o[k] = skeleton(op, v, names, `${path}.${k}`);
    }
    return o;
  }
  checkJson(op, tree, path);
  return tree;
}

/**
 * Saves a checkpoint: `model.safetensors`, `config.json` and, when given,
 * `training_state.safetensors`, each written atomically (a stale training state from an earlier
 * save is removed when none is given). All tensors are read back in one batch.
 *
 * @example
 * ```ts
 * await mj.io.saveCheckpoint("runs/a/step-1000", {
 *   config,
 *   params,
 *   trainingState: { tensors: { opt: { m, v }, moe: layerStates }, json: { step: 1000 } },
 * });
 * ```
 */
export async function saveCheckpoint(dir: string, opts: SaveCheckpointOptions): Promise<void> {
  const op = "saveCheckpoint";
  if (!opts || typeof opts !== "object") fail(op, "expected { config, params, trainingState? }");
  for (const k of Object.keys(opts)) {
    if (!["config", "params", "trainingState"].includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected config, params, trainingState`);
    }
  }
  const config = modelConfig(opts.config);
  // The parameter tree must be exactly the configuration's layout.
  const flat = flatten(opts.params);
  const got = new Map<string, unknown>();
  flat.paths.forEach((p, i) => {
    if (flat.leaves[i] !== undefined) got.set(p, flat.leaves[i]);
  });
  const shapes = parameterShapes(config);
  const missing = shapes.filter(([p]) => !got.has(p)).map(([p]) => p);
  if (missing.length) fail(op, `params is missing ${missing.join(", ")}`);
  const known = new Set(shapes.map(([p]) => p));
  const extra = [...got.keys()].filter((p) => !known.has(p));
  if (extra.length) {
    fail(op, `params has entries outside this configuration's layout: ${extra.join(", ")}`);
  }
  const paramTensors: Tensor[] = shapes.map(([p, shape]) => {
    const t = got.get(p);
    if (!(t instanceof Tensor)) return fail(op, `params.${p} must be a Tensor, got ${typeof t}`);
    if (t.dtype !== "f32") fail(op, `params.${p} must be f32, got ${t.dtype}`);
    if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
      fail(op, `params.${p} has shape [${t.shape}], expected [${shape}]`);
    }
    return t;
  });

  // Training state: tensors by unique dotted path, plus the skeleton to rebuild the tree.
  const ts = opts.trainingState;
  const stateTensors: Tensor[] = [];
  const stateNames: string[] = [];
  let stateMeta: Record<string, string> | null = null;
  if (ts !== undefined) {
    if (!isPlainObject(ts)) fail(op, "trainingState must be { tensors?, json? }");
    for (const k of Object.keys(ts)) {
      if (k !== "tensors" && k !== "json") {
        fail(op, `unknown trainingState field ${JSON.stringify(k)}; expected tensors, json`);
      }
    }
    const sf = flatten(ts.tensors ?? {});
    const names = new Map<Tensor, string>();
    const used = new Set<string>();
    sf.leaves.forEach((l, i) => {
      if (!(l instanceof Tensor)) return;
      if (names.has(l)) return; // the same tensor twice: stored once
      const name = sf.paths[i] === "" ? "tensor" : sf.paths[i];
      if (used.has(name)) fail(op, `trainingState.tensors has two tensors at path ${name}`);
      if (l.dtype === "f16") fail(op, `trainingState.tensors.${name}: f16 is not supported`);
      used.add(name);
      names.set(l, name);
      stateTensors.push(l);
      stateNames.push(name);
    });
    const tree = skeleton(op, ts.tensors ?? {}, names, "trainingState.tensors");
    if (ts.json !== undefined) checkJson(op, ts.json, "trainingState.json");
    stateMeta = {
      [META.format]: STATE_FORMAT,
      [META.tree]: JSON.stringify(tree),
      [META.json]: JSON.stringify(ts.json ?? null),
    };
  }

  // One readback for everything.
  const vals = await (await getBackend()).realize(
    [...paramTensors, ...stateTensors].map((t) => t.node),
  );
  const host: Record<string, Float32Array> = {};
  shapes.forEach(([p], i) => {
    const v = vals[i];
    host[p] = v instanceof Float32Array ? v : Float32Array.from(v as Float64Array);
  });
  const modelBytes = encodeSafetensors(toHfTensors(host, config));
  let stateBytes: Uint8Array | null = null;
  if (stateMeta) {
    const entries: Record<string, SafetensorsInput> = {};
    stateTensors.forEach((t, i) => {
      let v: TypedArray = vals[shapes.length + i];
      if (t.dtype === "f32" && !(v instanceof Float32Array)) v = Float32Array.from(v);
      entries[stateNames[i]] = { dtype: safetensorsDtype(t.dtype), shape: t.shape, data: v };
    });
    stateMeta[META.hash] = await sha256Hex(modelBytes);
    stateBytes = encodeSafetensors(entries, stateMeta);
  }
  await writeFileAtomic(join(dir, MODEL_FILE), modelBytes);
  await writeFileAtomic(
    join(dir, CONFIG_FILE),
    JSON.stringify(hfConfigJson(config), null, 2) + "\n",
  );
  if (stateBytes) {
    await writeFileAtomic(join(dir, STATE_FILE), stateBytes);
  } else {
    await Deno.remove(join(dir, STATE_FILE)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return fail("loadCheckpoint", `${path} is missing (${what})`);
    }
    return fail("loadCheckpoint", `${path}: cannot read (${(e as Error).message})`);
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * True when `dir` holds a checkpoint (`config.json` and `model.safetensors`); it is not
 * validated (loadCheckpoint does that).
 *
 * @example
 * ```ts
 * if (await mj.io.checkpointExists("runs/a/last")) resume = await mj.io.loadCheckpoint("runs/a/last");
 * ```
 */
export async function checkpointExists(dir: string): Promise<boolean> {
  return (await isFile(join(dir, CONFIG_FILE))) &&
    ((await isFile(join(dir, MODEL_FILE))) || (await isFile(join(dir, INDEX_FILE))));
}

/**
 * The model's tensors: `model.safetensors`, or the shards listed by a Hugging Face
 * `model.safetensors.index.json` (`{"weight_map": {name: file}}`). `bytes` identifies the model
 * for the training-state hash (the single file, or the index for sharded weights).
 */
async function readModel(
  dir: string,
): Promise<{ bytes: Uint8Array; tensors: Safetensors["tensors"]; source: string }> {
  const single = join(dir, MODEL_FILE), indexPath = join(dir, INDEX_FILE);
  if ((await isFile(single)) || !(await isFile(indexPath))) {
    const bytes = await readBytes(single, "the model weights");
    return { bytes, tensors: decodeSafetensors(bytes, single).tensors, source: single };
  }
  const bad = (msg: string): never => fail("loadCheckpoint", `${indexPath}: ${msg}`);
  const bytes = await readBytes(indexPath, "the index of the weight shards");
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return bad(`not valid JSON (${(e as Error).message})`);
  }
  const map = index?.weight_map;
  if (!isPlainObject(map) || !Object.values(map).every((f) => typeof f === "string")) {
    bad(`"weight_map" must be an object of tensor name → file name`);
  }
  const wanted = map as Record<string, string>;
  const tensors: Safetensors["tensors"] = {};
  for (const file of [...new Set(Object.values(wanted))].sort()) {
    if (file.includes("/") || file.includes("\\")) {
      bad(`shard ${JSON.stringify(file)} is not a plain file name`);
    }
    const path = join(dir, file);
    const shard = decodeSafetensors(await readBytes(path, `a shard listed in ${INDEX_FILE}`), path);
    for (const [name, t] of Object.entries(shard.tensors)) {
      if (wanted[name] !== file) {
        bad(
          `${file} holds ${name}, which the index places in ${
            JSON.stringify(wanted[name] ?? null)
          }`,
        );
      }
      tensors[name] = t;
    }
  }
  const absent = Object.keys(wanted).filter((n) => !(n in tensors));
  if (absent.length) {
    bad(`tensors listed but not found in their shards: ${absent.slice(0, 8).join(", ")}`);
  }
  return { bytes, tensors, source: `${join(dir, "model-*.safetensors")}` };
}

/**
 * Differences in shape-relevant fields, as "field is A in the checkpoint but B in this run".
 *
 * @example
 * ```ts
 * const diffs = mj.io.configDifferences(ck.config, config); // [] when compatible
 * ```
 */
export function configDifferences(checkpoint: ModelConfig, run: ModelConfig): string[] {
  const out: string[] = [];
  for (const k of SHAPE_FIELDS) {
    if (k === "experts" && (checkpoint.ffn !== "moe" || run.ffn !== "moe")) continue;
    if (k === "attention" && (checkpoint.attnExperts === 1 || run.attnExperts === 1)) continue;
    if (checkpoint[k] !== run[k]) {
      out.push(
        `${k} is ${JSON.stringify(checkpoint[k])} in the checkpoint but ${
          JSON.stringify(run[k])
        } in this run`,
      );
    }
  }
  return out;
}

/** Builds a tree of objects/arrays from dotted paths (numeric segments make arrays). */
function treeFromPaths(entries: [string, unknown][]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, value] of entries) {
    const keys = path.split(".");
    let node = root;
    keys.forEach((k, i) => {
      if (i === keys.length - 1) {
        node[k] = value;
        return;
      }
      node[k] ??= /^\d+$/.test(keys[i + 1]) ? [] : {};
      node = node[k] as Record<string, unknown>;
    });
  }
  return root;
}

/** Parses and checks the training state file; returns a function that builds its tensors. */
function parseState(
  st: Safetensors,
  path: string,
  modelHash: string,
): () => { tensors: unknown; json: unknown } {
  const bad = (msg: string): never => fail("loadCheckpoint", `${path}: ${msg}`);
  const m = st.metadata;
  if (m[META.format] !== STATE_FORMAT) {
    bad(
      `${META.format} is ${
        JSON.stringify(m[META.format])
      } in __metadata__, expected "${STATE_FORMAT}" (not a moejit training state?)`,
    );
  }
  if (m[META.hash] !== modelHash) {
    bad(
      `it was saved with a different ${MODEL_FILE} (SHA-256 ${
        String(m[META.hash]).slice(0, 16)
      }…, ` +
        `the model file's is ${
          modelHash.slice(0, 16)
        }…): the model and the training state come from different saves`,
    );
  }
  let tree: unknown, json: unknown;
  try {
    tree = JSON.parse(m[META.tree]);
    json = JSON.parse(m[META.json]);
  } catch (e) {
    return bad(`the tree or json in __metadata__ is not valid JSON (${(e as Error).message})`);
  }
  const referenced = new Set<string>();
  const check = (x: unknown): void => {
    if (Array.isArray(x)) return x.forEach(check);
    if (isPlainObject(x)) {
      if ("$tensor" in x) {
        const name = x.$tensor as string;
        if (!(name in st.tensors)) {
          bad(`the tree refers to tensor ${JSON.stringify(name)}, which the file does not hold`);
        }
        referenced.add(name);
        return;
      }
      Object.values(x).forEach(check);
    }
  };
  check(tree);
  const extra = Object.keys(st.tensors).filter((n) => !referenced.has(n));
  if (extra.length) bad(`tensors not in the saved tree: ${extra.join(", ")}`);
  // Convert every tensor's data now, so a range error surfaces before anything is returned.
  const data = new Map<string, { data: TypedArray; shape: number[]; dtype: DType }>();
  for (const [name, t] of Object.entries(st.tensors)) {
    data.set(name, {
      data: toMoejitData(t, `${path}: tensor ${name}`),
      shape: t.shape,
      dtype: moejitDtype(t.dtype),
    });
  }
  return () => {
    const cache = new Map<string, Tensor>();
    const build = (x: unknown): unknown => {
      if (Array.isArray(x)) return x.map(build);
      if (isPlainObject(x)) {
        if ("$tensor" in x) {
          const name = x.$tensor as string;
          if (!cache.has(name)) {
            const d = data.get(name)!;
            cache.set(name, fromHost(d.data, d.shape, d.dtype));
          }
          return cache.get(name);
        }
        const o: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(x)) o[k] = build(v);
        return o;
      }
      return x;
    };
    return { tensors: build(tree), json };
  };
}

/**
 * Loads a checkpoint saved by {@link saveCheckpoint} (or a Hugging Face mixtral/phimoe/llama
 * directory with a single `model.safetensors`). With `expect`, the checkpoint's shape-relevant
 * fields must equal the run's (each difference is named). Every file is checked before any tensor
 * is built: a missing or corrupt file throws, naming the file and the problem.
 *
 * @example
 * ```ts
 * const ck = await mj.io.loadCheckpoint("runs/a/step-1000", { expect: config });
 * let params = ck.params;
 * const step = (ck.trainingState?.json as { step: number }).step;
 * ```
 */
export async function loadCheckpoint<P = ParamTree>(
  dir: string,
  opts: { expect?: ModelConfig } = {},
): Promise<Checkpoint<P>> {
  const op = "loadCheckpoint";
  for (const k of Object.keys(opts)) {
    if (k !== "expect") fail(op, `unknown option ${JSON.stringify(k)}; expected expect`);
  }
  try {
    const s = await Deno.stat(dir);
    if (!s.isDirectory) fail(op, `${dir} is not a directory`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail(op, `checkpoint directory ${dir} does not exist`);
    throw e;
  }
  const configPath = join(dir, CONFIG_FILE);
  const configText = new TextDecoder().decode(
    await readBytes(configPath, "the model configuration"),
  );
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (e) {
    return fail(op, `${configPath} is not valid JSON (${(e as Error).message})`);
  }
  const config = modelConfigFromHf(json, configPath);
  if (opts.expect) {
    const diffs = configDifferences(config, modelConfig(opts.expect));
    if (diffs.length) fail("resume", `${diffs.join("; ")} (checkpoint ${dir})`);
  }
  const { bytes: modelBytes, tensors, source } = await readModel(dir);
  const host = fromHfTensors(tensors, config, source);

  const statePath = join(dir, STATE_FILE);
  let buildState: (() => { tensors: unknown; json: unknown }) | null = null;
  if (await isFile(statePath)) {
    const st = decodeSafetensors(await readBytes(statePath, "the training state"), statePath);
    buildState = parseState(st, statePath, await sha256Hex(modelBytes));
  }

  // Everything checked: build the tensors.
  const params = treeFromPaths(
    parameterShapes(config).map(([p, shape]) => [p, fromHost(host[p], shape, "f32")]),
  ) as P;
  return { config, params, trainingState: buildState ? buildState() : null };
}
