/**
 * Checkpoints: a directory holding
 *
 *  - `model.safetensors`: the parameters under Hugging Face names (F32, `__metadata__` exactly
 *    `{"format": "pt"}`, see hf.ts), loadable by the HF stack for the stock combinations;
 *  - `config.json`: the HF keys of the family that computes the model (or moejit's own model
 *    type, with the reasons none does) plus the full ModelConfig under `"moejit"`;
 *  - `generation_config.json`, `README.md` (the family, the tokenizer, how to load and continue
 *    the run) and `megatron_args.txt` (the equivalent Megatron-Core flags);
 *  - `training_state.safetensors` (optional): any tree of tensors (optimizer moments, per-layer
 *    MoE state such as `ehat`/`lossFreeBias`/`bipQ`, …) under their dotted tree paths, with the
 *    tree's structure, a JSON value (step, RNG and data positions, …) and the SHA-256 of the
 *    `model.safetensors` bytes saved with it in `__metadata__`. Loading checks that hash, so a
 *    model and a training state from different saves are never paired.
 *
 *  - `manifest.json`: the size and SHA-256 of every other file, written last.
 *
 * A save writes the whole directory next to the old one (`dir.partial`) and swaps it in by
 * renames (files.ts, replaceDirectory), so a kill at any instant leaves a complete checkpoint, and
 * a load first settles whatever state a kill left (recoverDirectory). A load checks every file
 * against the manifest and the files against each other (config.json's Hugging Face keys against
 * its "moejit" block and against the training state's copy of the configuration, the tensors'
 * shapes against the configuration) before it builds any tensor, so a truncated, altered,
 * missing or mismatched file throws, naming the file and the problem, and returns nothing.
 * Checkpoints never hold NaN or ±Inf: a save of non-finite parameters or training state fails.
 */
import { fail, MoejitError } from "../errors.ts";
import { getBackend } from "../backend.ts";
import type { DType, TypedArray } from "../dtype.ts";
import { Tensor } from "../tensor.ts";
import { fromHost } from "../ops/creation.ts";
import { flatten } from "../autodiff/tree.ts";
import { type ModelConfig, modelConfig, parameterShapes } from "../nn/config.ts";
import { recoverDirectory, replaceDirectory, stagingPaths, writeFileSynced } from "./files.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  moejitDtype,
  type Safetensors,
  safetensorsDtype,
  type SafetensorsInput,
  toMoejitData,
} from "./safetensors.ts";
import {
  fromHfTensors,
  hfConfigJson,
  hfGenerationConfig,
  modelConfigFromHf,
  SHAPE_FIELDS,
  toHfTensors,
} from "./hf.ts";
import { checkRunInfo, type RunInfo } from "./run_info.ts";
import { modelCard } from "./model_card.ts";
import { megatronArgs } from "./megatron.ts";

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
  /**
   * The run behind the checkpoint (tokenizer, sequence length, optimizer settings): config.json's
   * special token ids, README.md and megatron_args.txt say what they know of it.
   */
  run?: RunInfo;
}

/** What {@link loadCheckpoint} returns. */
export interface Checkpoint<P = ParamTree> {
  /** The checkpoint's configuration (from config.json). */
  config: ModelConfig;
  /** The parameter tree, in the structure of `parameterShapes(config)`, as host-backed tensors. */
  params: P;
  /** The saved training state, or null when the checkpoint has none. */
  trainingState: { tensors: unknown; json: unknown } | null;
  /**
   * What the load did to settle a save that a crash interrupted (e.g. "recovered the previous
   * copy (a save was interrupted) from out/run/checkpoint.old"); empty normally.
   */
  recovered: string[];
}

/** File names inside a checkpoint directory. */
export const MODEL_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";
export const STATE_FILE = "training_state.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
export const MANIFEST_FILE = "manifest.json";
export const GENERATION_FILE = "generation_config.json";
export const README_FILE = "README.md";
export const MEGATRON_FILE = "megatron_args.txt";

const STATE_FORMAT = "1";
const MANIFEST_FORMAT = "moejit.checkpoint-manifest/1";
const META = {
  format: "moejit.format",
  tree: "moejit.tree",
  json: "moejit.json",
  hash: "moejit.model_sha256",
  config: "moejit.config",
};

/** One file of a checkpoint as written: its name in the directory and its bytes. */
interface CheckpointFile {
  name: string;
  bytes: Uint8Array;
}

/** `manifest.json`: every other file of the checkpoint with its size and SHA-256. */
interface Manifest {
  format: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

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
 * A save refused because a tensor holds NaN or ±Inf (`where`: e.g. "params.embed", `value`: e.g.
 * "NaN (element 3 of 8)"); nothing was written.
 */
export class NonFiniteCheckpoint extends MoejitError {
  constructor(readonly where: string, readonly value: string) {
    super(
      "saveCheckpoint",
      `${where} holds ${value}; a checkpoint with non-finite values is not written`,
    );
    this.name = "NonFiniteCheckpoint";
  }
}

/** The first NaN or ±Inf of a host array, as "NaN (element 3 of 8)", or null. */
function firstNonFinite(v: ArrayLike<number>): string | null {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) return `${v[i]} (element ${i} of ${v.length})`;
  }
  return null;
}

/** `manifest.json` for the files of a checkpoint. */
async function manifestBytes(files: CheckpointFile[]): Promise<Uint8Array> {
  const m: Manifest = { format: MANIFEST_FORMAT, files: {} };
  for (const f of files) {
    m.files[f.name] = { bytes: f.bytes.length, sha256: await sha256Hex(f.bytes) };
  }
  return new TextEncoder().encode(JSON.stringify(m, null, 2) + "\n");
}

/** Refuses to replace a directory that holds files but no checkpoint (a save replaces it whole). */
async function refuseNonCheckpoint(dir: string): Promise<void> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  if (names.length === 0 || names.includes(MANIFEST_FILE) || names.includes(CONFIG_FILE)) return;
  names.sort();
  fail(
    "saveCheckpoint",
    `${dir} holds files that are not a checkpoint (${names.slice(0, 5).join(", ")}${
      names.length > 5 ? ", …" : ""
    }); a save replaces the directory whole, so give a new or empty directory`,
  );
}

/**
 * Saves a checkpoint: `model.safetensors`, `config.json`, `generation_config.json`,
 * `README.md`, `megatron_args.txt` (what `run` says of the training run goes into these),
 * `training_state.safetensors` when a training state is given, and `manifest.json` (size and
 * SHA-256 of each). The directory is
 * replaced whole and crash-safely: the files are written to `dir.partial` and swapped in by
 * renames, so a kill at any point leaves the previous checkpoint or the new one complete
 * (loadCheckpoint recovers either). An existing directory that holds files but no checkpoint
 * is refused. Non-finite parameters or f32 training-state values are an error: a checkpoint
 * never holds NaN or ±Inf. All tensors are read back in one batch.
 *
 * @example
 * ```ts
 * await mj.io.saveCheckpoint("runs/a/step-1000", {
 *   config,
 *   params,
 *   trainingState: { tensors: { opt: { m, v }, moe: layerStates }, json: { step: 1000 } },
 *   run: { tokenizer: { name: "byte" }, seqLength: 128, step: 1000 },
 * });
 * ```
 */
export async function saveCheckpoint(dir: string, opts: SaveCheckpointOptions): Promise<void> {
  const op = "saveCheckpoint";
  if (typeof dir !== "string" || dir === "") fail(op, `expected a directory path, got ${dir}`);
  if (!opts || typeof opts !== "object") fail(op, "expected { config, params, trainingState? }");
  for (const k of Object.keys(opts)) {
    if (!["config", "params", "trainingState", "run"].includes(k)) {
      fail(op, `unknown option ${JSON.stringify(k)}; expected config, params, trainingState, run`);
    }
  }
  const config = modelConfig(opts.config);
  const run = opts.run === undefined ? {} : checkRunInfo(op, opts.run);
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
      // The configuration the state belongs to: a config.json edited later is caught on load.
      [META.config]: JSON.stringify(config),
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
    const bad = firstNonFinite(host[p]);
    if (bad) throw new NonFiniteCheckpoint(`params.${p}`, bad);
  });
  const modelBytes = encodeSafetensors(toHfTensors(host, config));
  // The one list of the checkpoint's files: the manifest covers exactly what is written.
  const text = (v: string) => new TextEncoder().encode(v);
  const json = (v: unknown) => text(JSON.stringify(v, null, 2) + "\n");
  const tokenizer = run.tokenizer ? { tokenizer: run.tokenizer } : {};
  const files: CheckpointFile[] = [
    { name: MODEL_FILE, bytes: modelBytes },
    { name: CONFIG_FILE, bytes: json(hfConfigJson(config, tokenizer)) },
    { name: GENERATION_FILE, bytes: json(hfGenerationConfig(config, tokenizer)) },
    { name: README_FILE, bytes: text(modelCard(config, run)) },
    { name: MEGATRON_FILE, bytes: text(megatronArgs(config, run)) },
  ];
  if (stateMeta) {
    const entries: Record<string, SafetensorsInput> = {};
    stateTensors.forEach((t, i) => {
      let v: TypedArray = vals[shapes.length + i];
      if (t.dtype === "f32" && !(v instanceof Float32Array)) v = Float32Array.from(v);
      if (t.dtype === "f32") {
        const bad = firstNonFinite(v);
        if (bad) throw new NonFiniteCheckpoint(`trainingState.tensors.${stateNames[i]}`, bad);
      }
      entries[stateNames[i]] = { dtype: safetensorsDtype(t.dtype), shape: t.shape, data: v };
    });
    stateMeta[META.hash] = await sha256Hex(modelBytes);
    files.push({ name: STATE_FILE, bytes: encodeSafetensors(entries, stateMeta) });
  }
  const manifest = await manifestBytes(files);
  await replaceDirectory(dir, async (staging) => {
    for (const f of files) await writeFileSynced(join(staging, f.name), f.bytes);
    // Last: a directory with a manifest is complete.
    await writeFileSynced(join(staging, MANIFEST_FILE), manifest);
  }, { isComplete: (d) => isCompleteCheckpoint(d, dir), mayReplace: refuseNonCheckpoint, op });
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

/** Reads one file of the checkpoint by name (`what` says what it holds, for errors). */
type FileReader = (name: string, what: string) => Promise<Uint8Array>;

/** Reads and checks `manifest.json`; null when the directory has none. */
async function readManifest(dir: string): Promise<Manifest | null> {
  const path = join(dir, MANIFEST_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    return fail("loadCheckpoint", `${path}: cannot read (${(e as Error).message})`);
  }
  const bad = (msg: string): never => fail("loadCheckpoint", `${path}: ${msg}`);
  let m: Manifest;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return bad(`not valid JSON (${(e as Error).message}); the file is damaged`);
  }
  if (!isPlainObject(m) || m.format !== MANIFEST_FORMAT || !isPlainObject(m.files)) {
    bad(`expected {"format": "${MANIFEST_FORMAT}", "files": {…}}; the file is damaged`);
  }
  for (const [name, f] of Object.entries(m.files)) {
    if (name.includes("/") || name.includes("\\") || name === MANIFEST_FILE) {
      bad(`lists ${JSON.stringify(name)}, which is not a file of the checkpoint`);
    }
    if (
      !isPlainObject(f) || !Number.isInteger(f.bytes) || f.bytes < 0 ||
      typeof f.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256)
    ) {
      bad(`the entry of ${name} must be {"bytes": n, "sha256": "<64 hex digits>"}`);
    }
  }
  return m;
}

/** Files a load reads by name; present but unlisted in a manifest, they are not of this save. */
const KNOWN_FILES = [MODEL_FILE, CONFIG_FILE, STATE_FILE, INDEX_FILE];

/**
 * Reads every file the manifest lists and checks its size and SHA-256; returns the bytes of the
 * files that check out and one line per problem (missing, truncated, longer, altered, unlisted).
 */
async function checkAgainstManifest(
  dir: string,
  m: Manifest,
): Promise<{ files: Map<string, Uint8Array>; problems: Map<string, string> }> {
  const files = new Map<string, Uint8Array>();
  const problems = new Map<string, string>();
  for (const name of Object.keys(m.files).sort()) {
    const path = join(dir, name), want = m.files[name];
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      problems.set(
        name,
        e instanceof Deno.errors.NotFound
          ? `${path} is missing (${MANIFEST_FILE} lists it)`
          : `${path}: cannot read (${(e as Error).message})`,
      );
      continue;
    }
    if (bytes.length < want.bytes) {
      problems.set(
        name,
        `${path} is truncated or was changed after the save: ${bytes.length} bytes, ${MANIFEST_FILE} records ${want.bytes}`,
      );
      continue;
    }
    if (bytes.length > want.bytes) {
      problems.set(
        name,
        `${path} was changed after the save: ${bytes.length} bytes, ${MANIFEST_FILE} records ${want.bytes}`,
      );
      continue;
    }
    const got = await sha256Hex(bytes);
    if (got !== want.sha256) {
      problems.set(
        name,
        `${path} is corrupt: its SHA-256 is ${got.slice(0, 16)}…, ${MANIFEST_FILE} records ${
          want.sha256.slice(0, 16)
        }… (changed after the save)`,
      );
      continue;
    }
    files.set(name, bytes);
  }
  for (const name of KNOWN_FILES) {
    if (!(name in m.files) && (await isFile(join(dir, name)))) {
      problems.set(name, `${join(dir, name)} is not listed in ${MANIFEST_FILE} (not of this save)`);
    }
  }
  return { files, problems };
}

/**
 * True when `d` is a whole checkpoint: its manifest checks out, or it has none and is not the
 * staging copy of `target` (a checkpoint written before manifests existed counts when its
 * config.json and weights are there).
 */
async function isCompleteCheckpoint(d: string, target: string): Promise<boolean> {
  try {
    const m = await readManifest(d);
    if (m === null) return d !== stagingPaths(target).partial && (await checkpointExists(d));
    return (await checkAgainstManifest(d, m)).problems.size === 0;
  } catch {
    return false;
  }
}

/**
 * Hugging Face keys of config.json that disagree with its "moejit" block: the keys that restate
 * a field of the configuration (HF_FIELD) and the family (`model_type`). Other keys (token ids,
 * notes a writer adds) are not the configuration's to check.
 */
function hfKeyDifferences(json: Record<string, unknown>, config: ModelConfig): string[] {
  if (json.moejit === undefined) return [];
  const expected = hfConfigJson(config);
  const out: string[] = [];
  for (const k of ["model_type", ...Object.keys(HF_FIELD)]) {
    if (!(k in expected) || !(k in json)) continue;
    if (JSON.stringify(json[k]) !== JSON.stringify(expected[k])) {
      const field = HF_FIELD[k];
      out.push(
        `${k} is ${JSON.stringify(json[k])} but the "moejit" block gives ${
          JSON.stringify(expected[k])
        }${field ? ` (moejit.config.${field})` : ""}`,
      );
    }
  }
  return out;
}

/** The ModelConfig field behind each Hugging Face key that restates one. */
const HF_FIELD: Record<string, string> = {
  vocab_size: "vocabSize",
  hidden_size: "dModel",
  intermediate_size: "dFf",
  num_hidden_layers: "nLayers",
  num_attention_heads: "nHeads",
  num_key_value_heads: "nHeads",
  hidden_act: "activation",
  max_position_embeddings: "maxSeqLen",
  rms_norm_eps: "normEps",
  rope_theta: "ropeTheta",
  tie_word_embeddings: "tiedEmbeddings",
  initializer_range: "initStd",
  num_local_experts: "experts",
  num_experts_per_tok: "topK",
  router_jitter_noise: "jitterEps",
};

/** Fields in which config.json's configuration differs from the one saved with the state. */
function stateConfigDifferences(config: ModelConfig, given: unknown): string[] {
  if (!isPlainObject(given)) return [];
  // A state saved before a field existed lacks it: compare with the defaults filled in.
  let saved: Record<string, unknown> = given;
  try {
    saved = modelConfig(given as Partial<ModelConfig>) as unknown as Record<string, unknown>;
  } catch {
    // Not a valid configuration: compare as written, so the message shows what differs.
  }
  const keys = new Set([...Object.keys(config), ...Object.keys(saved)]);
  const out: string[] = [];
  for (const k of keys) {
    const a = JSON.stringify((config as unknown as Record<string, unknown>)[k]);
    const b = JSON.stringify(saved[k]);
    if (a !== b) {
      out.push(`${k} is ${a ?? "absent"} in ${CONFIG_FILE} but ${b ?? "absent"} in ${STATE_FILE}`);
    }
  }
  return out;
}

/** The configuration saved in a training state's metadata, or undefined (older saves). */
function savedStateConfig(st: Safetensors): unknown {
  const text = st.metadata[META.config];
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Why config.json disagrees with the rest, in words, computed leniently (for the message of an
 * altered config.json): its HF keys against its "moejit" block, and the block against the
 * configuration saved with the training state.
 */
function configFindings(configBytes: Uint8Array | undefined, stateBytes?: Uint8Array): string[] {
  if (!configBytes) return [];
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(configBytes));
  } catch (e) {
    return [`not valid JSON (${(e as Error).message})`];
  }
  try {
    const config = modelConfigFromHf(json);
    const out = hfKeyDifferences(json as Record<string, unknown>, config);
    if (stateBytes) {
      out.push(...stateConfigDifferences(config, savedStateConfig(decodeSafetensors(stateBytes))));
    }
    return out;
  } catch (e) {
    return [(e as Error).message.split("\n")[0]];
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
  read: FileReader,
): Promise<{ bytes: Uint8Array; tensors: Safetensors["tensors"]; source: string }> {
  const single = join(dir, MODEL_FILE), indexPath = join(dir, INDEX_FILE);
  if ((await isFile(single)) || !(await isFile(indexPath))) {
    const bytes = await read(MODEL_FILE, "the model weights");
    return { bytes, tensors: decodeSafetensors(bytes, single).tensors, source: single };
  }
  const bad = (msg: string): never => fail("loadCheckpoint", `${indexPath}: ${msg}`);
  const bytes = await read(INDEX_FILE, "the index of the weight shards");
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
    const shard = decodeSafetensors(await read(file, `a shard listed in ${INDEX_FILE}`), path);
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
  config: ModelConfig,
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
  const diffs = stateConfigDifferences(config, savedStateConfig(st));
  if (diffs.length) {
    bad(`it was saved with another configuration than ${CONFIG_FILE} holds: ${diffs.join("; ")}`);
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
 * directory with a single `model.safetensors`). A save that a crash interrupted is settled first
 * (the complete copy in `dir.partial` or `dir.old` becomes `dir`; see `recovered`). Every file is
 * checked before any tensor is built: against `manifest.json` (size, SHA-256; required when the
 * checkpoint has a training state), then for content — config.json's Hugging Face keys against
 * its "moejit" block and against the configuration saved with the training state, tensor names
 * and shapes against the configuration, the training state against the model file. A missing,
 * truncated, altered or mismatched file throws, naming the file and the problem. With `expect`,
 * the checkpoint's shape-relevant fields must equal the run's (each difference is named).
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
  if (typeof dir !== "string" || dir === "") fail(op, `expected a directory path, got ${dir}`);
  for (const k of Object.keys(opts)) {
    if (k !== "expect") fail(op, `unknown option ${JSON.stringify(k)}; expected expect`);
  }
  const recovery = await recoverDirectory(dir, (d) => isCompleteCheckpoint(d, dir));
  if (recovery.dir === null) {
    fail(
      op,
      `checkpoint directory ${dir} does not exist${
        recovery.notes.length ? ` (${recovery.notes.join("; ")})` : ""
      }`,
    );
  }
  const at = recovery.dir;
  if (!(await Deno.stat(at)).isDirectory) fail(op, `${at} is not a directory`);
  // Files are checked against the manifest first; a checked file is not read twice.
  const manifest = await readManifest(at);
  let verified = new Map<string, Uint8Array>();
  if (manifest) {
    const checked = await checkAgainstManifest(at, manifest);
    if (checked.problems.size) {
      const lines = [...checked.problems.values()];
      if (checked.problems.has(CONFIG_FILE)) {
        // Say what an edited config.json changed, where that can be told.
        const findings = configFindings(
          await Deno.readFile(join(at, CONFIG_FILE)).catch(() => undefined),
          checked.files.get(STATE_FILE),
        );
        if (findings.length) lines.push(`in ${CONFIG_FILE}: ${findings.join("; ")}`);
      }
      const kept = recovery.notes.length ? ` (${recovery.notes.join("; ")})` : "";
      fail(op, `${lines.join("; ")}${kept}`);
    }
    verified = checked.files;
  } else if (await isFile(join(at, STATE_FILE))) {
    fail(
      op,
      `${join(at, MANIFEST_FILE)} is missing: every checkpoint with a training state has one, ` +
        `and without it the files cannot be checked`,
    );
  }
  const read: FileReader = async (name, what) =>
    verified.get(name) ?? (await readBytes(join(at, name), what));

  const configPath = join(at, CONFIG_FILE);
  const configText = new TextDecoder().decode(await read(CONFIG_FILE, "the model configuration"));
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (e) {
    return fail(op, `${configPath} is not valid JSON (${(e as Error).message})`);
  }
  const config = modelConfigFromHf(json, configPath);
  const hfDiffs = hfKeyDifferences(json as Record<string, unknown>, config);
  if (hfDiffs.length) {
    fail(
      op,
      `${configPath}: the Hugging Face keys disagree with the "moejit" block: ${
        hfDiffs.join("; ")
      }`,
    );
  }
  if (opts.expect) {
    const diffs = configDifferences(config, modelConfig(opts.expect));
    if (diffs.length) fail("resume", `${diffs.join("; ")} (checkpoint ${at})`);
  }
  const { bytes: modelBytes, tensors, source } = await readModel(at, read);
  const host = fromHfTensors(tensors, config, source);

  const statePath = join(at, STATE_FILE);
  let buildState: (() => { tensors: unknown; json: unknown }) | null = null;
  if (await isFile(statePath)) {
    const st = decodeSafetensors(await read(STATE_FILE, "the training state"), statePath);
    buildState = parseState(st, statePath, await sha256Hex(modelBytes), config);
  }

  // Everything checked: build the tensors.
  const params = treeFromPaths(
    parameterShapes(config).map(([p, shape]) => [p, fromHost(host[p], shape, "f32")]),
  ) as P;
  return {
    config,
    params,
    trainingState: buildState ? buildState() : null,
    recovered: recovery.notes,
  };
}
