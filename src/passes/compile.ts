/**
 * Compiles a graph into a step program: legalize → schedule → lower every kernel to WGSL →
 * plan memory. The result is independent of any device buffers: inputs, outputs and
 * temporaries are slots, bound at run time.
 */
import { type Exp, i32, resetExpTable, variable, walk as walkExp } from "../../codegen/exp.ts";
import {
  type ElementwiseKernel,
  elementwiseShader,
  type RowKernel,
  rowShader,
  type ShaderProgram,
} from "../../codegen/kernel.ts";
import {
  groupReductions,
  KernelChecks,
  Lowerer,
  lowerGroup,
  LoweringConflict,
  resetLowerCaches,
  scalarType,
  unravel,
} from "../../codegen/lower.ts";
import { matmulShader } from "../../codegen/templates/matmul.ts";
import { groupedMatmulShader, groupedWgradShader } from "../../codegen/templates/grouped.ts";
import { fillShader, scatterAddShader } from "../../codegen/templates/scatter.ts";
import { scanShader } from "../../codegen/templates/scan.ts";
import { segmentSumShader } from "../../codegen/templates/segment.ts";
import { finiteCheckShader } from "../../codegen/templates/finite.ts";
import { topkShader } from "../../codegen/templates/topk.ts";
import {
  attentionBackwardKVShader,
  attentionBackwardQShader,
  attentionForwardShader,
  type AttentionShape,
} from "../../codegen/templates/attention.ts";
import {
  radixSelectPrograms,
  selectHistBytes,
  selectStateBytes,
} from "../../codegen/templates/select.ts";
import { deviceItemSize } from "../dtype.ts";
import { envVar } from "../env.ts";
import { stats } from "../runtime/stats.ts";
import type { Node } from "../ir/node.ts";
import { toposort } from "../ir/graph.ts";
import type { OpArgs } from "../ir/ops.ts";
import { fmtShape, prod } from "../shape.ts";
import { fail } from "../errors.ts";
import { formatBytes } from "../memory.ts";
import { DEFAULT_LIMITS, legalize, type LegalizeLimits } from "./legalize.ts";
import { type MatmulOperand, type PlannedKernel, schedule, throughIdentity } from "./schedule.ts";

export interface CompileOptions {
  fuse: boolean;
  /** The device's storage-buffer limit per shader stage. */
  maxBindings: number;
  limits?: LegalizeLimits;
  /** Alignment of a binding's offset into a buffer (the error buffer's regions); default 256. */
  errorAlign?: number;
  /** The largest buffer a kernel may bind (bytes), and the limit's name for the error. */
  maxBufferBytes?: { bytes: number; name: string };
  /**
   * Run one op per kernel and test every f32 value for NaN/Inf by its bits
   * (mj.debug.checkNumerics): a finite-check launch follows each value's producer.
   */
  checkNumerics?: boolean;
}

export interface Launch {
  program: ShaderProgram;
  /** Step slot bound at each binding index of the program (negative: the kernel's scratch). */
  slots: number[];
  /** Total invocations (0 means the launch is skipped). */
  work: number;
  /** Byte sizes of the kernel's scratch buffers (slots −1, −2, …), if it uses any. */
  scratch?: number[];
  /**
   * The `checkIndex` nodes this launch checks, by kernel-local id (its program's last binding is
   * then the error buffer), and where its region of the step's error buffer starts (bytes).
   */
  checks?: Node[];
  /** The value a numerics-check launch tests (its error region holds two words). */
  finite?: Node;
  errorOffset?: number;
}

export interface SlotInfo {
  bytes: number;
  /** The value the slot holds. */
  node: Node;
  kind: "input" | "output" | "temp";
  /** Index into the step's inputs / outputs, or the physical temp buffer. */
  index: number;
  label: string;
}

export interface StepProgram {
  inputs: Node[];
  /** For each requested root, the slot holding its value (an input slot when it is an input). */
  outputSlots: number[];
  slots: SlotInfo[];
  launches: Launch[];
  /** Byte sizes of the physical temporary buffers (shared between slots by liveness). */
  temps: number[];
  /** Bytes of the error buffer the launches' index checks write (0: no checks). */
  errorBytes: number;
  /** Human-readable schedule (for MOEJIT_DEBUG). */
  describe(): string;
}

/** Thrown when a kernel binds more buffers than the device allows; the node gets realized. */
class TooManyBindings extends LoweringConflict {}

export function compileStep(
  roots: readonly Node[],
  isInput: (n: Node) => boolean,
  opts: CompileOptions,
): StepProgram {
  const { roots: legal } = legalize(roots, opts.limits ?? DEFAULT_LIMITS, isInput);
  const forced = new Set<Node>();
  for (let attempt = 0;; attempt++) {
    if (attempt > 10000) throw new Error("internal: scheduling did not converge");
    const sched = schedule(legal, isInput, {
      fuse: opts.fuse && !opts.checkNumerics,
      realizeConstants: opts.checkNumerics,
      forced,
    });
    try {
      return build(roots, legal, sched.inputs, sched.realized, sched.kernels, isInput, opts);
    } catch (e) {
      if (e instanceof LoweringConflict && !forced.has(e.node)) {
        if (envVar("MOEJIT_DEBUG_SCHEDULE")) {
          console.error(
            `schedule: realize ${e.node.op}${JSON.stringify(e.node.shape)}: ${e.message}`,
          );
        }
        forced.add(e.node);
        continue;
      }
      throw e;
    }
  }
}

function bytesOf(n: Node): number {
  return Math.max(4, n.size * deviceItemSize(n.dtype));
}

function build(
  userRoots: readonly Node[],
  roots: readonly Node[],
  inputs: Node[],
  realized: ReadonlySet<Node>,
  kernels: PlannedKernel[],
  isInput: (n: Node) => boolean,
  opts: CompileOptions,
): StepProgram {
  resetExpTable();
  resetLowerCaches();
  const slotOf = new Map<Node, number>();
  const slots: SlotInfo[] = [];
  inputs.forEach((n, i) => {
    slotOf.set(n, slots.length);
    slots.push({ bytes: bytesOf(n), node: n, kind: "input", index: i, label: `input ${i}` });
  });
  const outputs = [...new Set(roots)];
  for (const k of kernels) {
    slotOf.set(k.root, slots.length);
    const outIndex = outputs.indexOf(k.root);
    slots.push({
      bytes: bytesOf(k.root),
      node: k.root,
      kind: outIndex >= 0 ? "output" : "temp",
      index: outIndex,
      label: `${k.root.op}${JSON.stringify(k.root.shape)}`,
    });
  }
  const isRealized = (n: Node) => realized.has(n) || isInput(n);
  const launches: Launch[] = [];
  const lastUse = new Map<number, number>();
  const nodeOfSlot: Node[] = [];
  for (const [n, slot] of slotOf) nodeOfSlot[slot] = n;
  const slotOfKey = new Map<string, number>();
  for (const [n, slot] of slotOf) slotOfKey.set(n.key, slot);
  let nodeByKey: Map<string, Node> | undefined;
  const findNode = (key: string) => {
    nodeByKey ??= new Map(toposort(roots, isInput).map((n) => [n.key, n]));
    return nodeByKey.get(key);
  };
  const finiteCheck = (n: Node) => {
    const slot = slotOf.get(n);
    if (!opts.checkNumerics || n.dtype !== "f32" || n.size === 0 || slot === undefined) return;
    const program = finiteCheckShader(`${n.op}${JSON.stringify(n.shape)}`, n.size, 0);
    const li = launches.length;
    lastUse.set(slot, li);
    launches.push({ program, slots: [slot], work: n.size, finite: n });
  };
  inputs.forEach(finiteCheck);
  for (const k of kernels) {
    let made = cachedKernel(
      k,
      isRealized,
      slotOf,
      nodeOfSlot,
      slotOfKey,
      findNode,
      opts.maxBindings,
    );
    const scratch = made.find((l) => l.scratch?.length)?.scratch ?? [];
    if (scratch.length) {
      // The kernel's scratch buffers become temporaries of this step.
      const base = slots.length;
      scratch.forEach((bytes, i) =>
        slots.push({
          bytes,
          node: k.root,
          kind: "temp",
          index: -1,
          label: `scratch ${i} of ${k.root.op}`,
        })
      );
      made = made.map((l) => ({ ...l, slots: l.slots.map((s) => (s < 0 ? base - s - 1 : s)) }));
    }
    for (const l of made) {
      const li = launches.length;
      for (const s of l.slots) lastUse.set(s, li);
      launches.push(l);
    }
    finiteCheck(k.root);
  }
  if (opts.maxBufferBytes) checkBufferSizes(slots, opts.maxBufferBytes);
  const temps = planMemory(slots, launches, lastUse);
  const errorBytes = placeErrorRegions(launches, opts.errorAlign ?? 256);
  const outputSlots = userRoots.map((_, i) => {
    const s = slotOf.get(roots[i]);
    if (s === undefined) throw new Error(`internal: output ${i} has no slot`);
    return s;
  });
  return {
    inputs,
    outputSlots,
    slots,
    launches,
    temps,
    errorBytes,
    describe: () => describeStep(launches, slots, temps),
  };
}

/** The u32 words of the error buffer a launch writes: two per index check, two for a value test. */
export function errorWords(l: Launch): number {
  return l.checks ? 2 * l.checks.length : l.finite ? 2 : 0;
}

/** Refuses, before anything is allocated, a value larger than one buffer binding may be. */
function checkBufferSizes(slots: SlotInfo[], limit: { bytes: number; name: string }): void {
  for (const s of slots) {
    if (s.bytes <= limit.bytes) continue;
    const n = s.node;
    const what = s.kind === "input" ? "the input" : "the result";
    fail(
      n.op,
      `${what} ${n.dtype}${fmtShape(n.shape)} takes ${formatBytes(s.bytes)}, more than this ` +
        `device binds in one buffer (${limit.name} = ${formatBytes(limit.bytes)}); ` +
        `use smaller tensors, or the native or cpu backend`,
    );
  }
}

/**
 * Gives every launch that checks indices its own region of the step's error buffer (two words
 * per check, at an offset the device can bind), so kernels stay independent of the step they
 * are part of (and cacheable); returns the buffer's size.
 */
function placeErrorRegions(launches: Launch[], align: number): number {
  let bytes = 0;
  for (const l of launches) {
    const words = errorWords(l);
    if (!words) continue;
    l.errorOffset = bytes;
    bytes += Math.ceil((4 * words) / align) * align;
  }
  return bytes;
}

/**
 * The kernel cache: a kernel's signature (its kind, its root's content key, and the realized
 * values it reads) determines its WGSL, so later steps with the same kernel skip lowering and
 * emission. Bindings are stored by content key and resolved to the current step's slots.
 */
const kernelCache = new Map<
  string,
  {
    programs: ShaderProgram[];
    reads: string[][];
    work: number[];
    scratch: number[];
    /** Content keys of each launch's checkIndex nodes. */
    checks: (string[] | undefined)[];
  }
>();
const KERNEL_CACHE_LIMIT = 4096;

function kernelSignature(k: PlannedKernel, isRealized: (n: Node) => boolean): string {
  const reads: string[] = [];
  const seen = new Set<Node>();
  const visit = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n !== k.root && isRealized(n)) {
      reads.push(n.key);
      return;
    }
    n.src.forEach(visit);
  };
  visit(k.root);
  return `${k.kind}|${k.root.key}|${reads.join(",")}`;
}

function cachedKernel(
  k: PlannedKernel,
  isRealized: (n: Node) => boolean,
  slotOf: Map<Node, number>,
  nodeOfSlot: Node[],
  slotOfKey: Map<string, number>,
  findNode: (key: string) => Node | undefined,
  maxBindings: number,
): Launch[] {
  const sig = kernelSignature(k, isRealized);
  const hit = kernelCache.get(sig);
  if (hit) {
    const resolve = (
      key: string,
    ) => (key.startsWith("#scratch") ? Number(key.slice(8)) : slotOfKey.get(key));
    const slots = hit.reads.map((keys) => keys.map(resolve));
    const checks = hit.checks.map((keys) => keys?.map(findNode));
    if (
      slots.every((l) => l.every((s) => s !== undefined)) &&
      checks.every((l) => !l || l.every((n) => n !== undefined))
    ) {
      return hit.programs.map((program, i) => ({
        program,
        slots: slots[i] as number[],
        work: hit.work[i],
        ...(hit.scratch.length ? { scratch: hit.scratch } : {}),
        ...(checks[i] ? { checks: checks[i] as Node[] } : {}),
      }));
    }
  }
  const made = lowerKernel(k, isRealized, (n) => slotOf.get(n), maxBindings);
  stats.kernelsGenerated += made.length;
  if (kernelCache.size >= KERNEL_CACHE_LIMIT) kernelCache.delete(kernelCache.keys().next().value!);
  kernelCache.set(sig, {
    programs: made.map((l) => l.program),
    reads: made.map((l) =>
      l.slots.map((slot) => (slot < 0 ? `#scratch${slot}` : nodeOfSlot[slot].key))
    ),
    work: made.map((l) => l.work),
    scratch: made.find((l) => l.scratch?.length)?.scratch ?? [],
    checks: made.map((l) => l.checks?.map((n) => n.key)),
  });
  return made;
}

/** Liveness: temporaries share physical buffers of equal size once their last use is past. */
function planMemory(slots: SlotInfo[], launches: Launch[], lastUse: Map<number, number>): number[] {
  const temps: number[] = [];
  const free = new Map<number, number[]>();
  const firstWrite = new Map<number, number>();
  launches.forEach((l, i) => {
    const out = l.slots[l.slots.length - 1];
    if (!firstWrite.has(out)) firstWrite.set(out, i);
  });
  const releaseAt = new Map<number, number[]>();
  slots.forEach((s, slot) => {
    if (s.kind !== "temp") return;
    const end = lastUse.get(slot) ?? firstWrite.get(slot) ?? 0;
    const list = releaseAt.get(end) ?? [];
    list.push(slot);
    releaseAt.set(end, list);
  });
  const assign = (slot: number) => {
    const s = slots[slot];
    const pool = free.get(s.bytes);
    if (pool?.length) s.index = pool.pop()!;
    else {
      s.index = temps.length;
      temps.push(s.bytes);
    }
  };
  launches.forEach((_, i) => {
    for (const [slot, w] of firstWrite) if (w === i && slots[slot].kind === "temp") assign(slot);
    for (const slot of releaseAt.get(i) ?? []) {
      const list = free.get(slots[slot].bytes) ?? [];
      list.push(slots[slot].index);
      free.set(slots[slot].bytes, list);
    }
  });
  return temps;
}

function describeStep(launches: Launch[], slots: SlotInfo[], temps: number[]): string {
  const name = (s: number) => {
    const i = slots[s];
    return i.kind === "temp"
      ? `t${s}(buf${i.index})`
      : `${i.kind === "input" ? "in" : "out"}${i.index}`;
  };
  const lines = launches.map((l, i) => {
    const reads = l.slots.slice(0, -1).map(name).join(", ");
    return `  k${i} ${l.program.label}: ${name(l.slots[l.slots.length - 1])} <- ${
      reads || "-"
    }  grid ${l.program.grid.join("x")}`;
  });
  const tempBytes = temps.reduce((a, b) => a + b, 0);
  return `${launches.length} kernels, ${temps.length} temporary buffers (${tempBytes} bytes)\n${
    lines.join("\n")
  }`;
}

/**
 * Local binding numbers for a kernel: inputs in first-use order, then the output. Templates
 * with several passes may also ask for scratch buffers; their step slots are negative
 * placeholders (−1, −2, …) until `build` allocates them.
 */
class LocalSlots {
  readonly order: number[] = [];
  /** Byte sizes of the scratch buffers, by placeholder −(i+1). */
  readonly scratchBytes: number[] = [];
  /** The kernel's index checks. */
  readonly checks = new KernelChecks();
  #local = new Map<number, number>();
  constructor(
    readonly global: (n: Node) => number | undefined,
    readonly isRealized: (n: Node) => boolean,
  ) {}
  /** A new scratch buffer of `bytes`, as a local binding number. */
  scratch(bytes: number): number {
    this.scratchBytes.push(Math.max(4, bytes));
    this.order.push(-this.scratchBytes.length);
    return this.order.length - 1;
  }
  of(n: Node): number | undefined {
    if (!this.isRealized(n)) return undefined;
    const g = this.global(n);
    if (g === undefined) throw new Error(`internal: realized ${n.op} has no slot`);
    let l = this.#local.get(g);
    if (l === undefined) {
      l = this.order.length;
      this.#local.set(g, l);
      this.order.push(g);
    }
    return l;
  }
}

function launchOf(
  program: ShaderProgram,
  local: LocalSlots,
  work: number,
  maxBindings: number,
  root: Node,
): Launch {
  if (program.bindings.length > maxBindings) {
    throw new TooManyBindings(
      heaviestSource(root, local.isRealized) ?? root,
      `binds ${program.bindings.length} buffers, the device allows ${maxBindings}`,
    );
  }
  const launch: Launch = {
    program,
    slots: program.bindings.filter((b) => !b.errors).map((b) => local.order[b.slot]),
    work,
  };
  if (local.scratchBytes.length) launch.scratch = local.scratchBytes;
  if (program.bindings.some((b) => b.errors)) launch.checks = [...local.checks.nodes];
  return launch;
}

/** The unrealized source subtree of `root` that reads the most distinct buffers. */
function heaviestSource(root: Node, isRealized: (n: Node) => boolean): Node | null {
  let best: Node | null = null, bestCount = 0;
  const reads = (n: Node, acc: Set<Node>, seen: Set<Node>) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (isRealized(n)) {
      acc.add(n);
      return;
    }
    n.src.forEach((s) => reads(s, acc, seen));
  };
  const visit = (n: Node, seen: Set<Node>) => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const s of n.src) {
      if (isRealized(s)) continue;
      const acc = new Set<Node>();
      reads(s, acc, new Set());
      if (acc.size > bestCount && s.src.length) {
        best = s;
        bestCount = acc.size;
      }
      visit(s, seen);
    }
  };
  visit(root, new Set());
  return bestCount > 1 ? best : null;
}

function labelOf(k: PlannedKernel): string {
  const ops = new Set<string>();
  const seen = new Set<Node>();
  const walk = (n: Node, first: boolean) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (!first && n.src.length === 0) return;
    ops.add(n.op);
    for (const s of n.src) if (s.src.length && !(k.root !== s && seen.has(s))) walk(s, false);
  };
  walk(k.root, true);
  const list = [...ops].slice(0, 6).join("+");
  return `${k.kind === "fused" ? list : k.kind}${ops.size > 6 ? "+…" : ""} → ${k.root.dtype}[${
    k.root.shape.join(",")
  }]`;
}

function lowerKernel(
  k: PlannedKernel,
  isRealized: (n: Node) => boolean,
  globalSlot: (n: Node) => number | undefined,
  maxBindings: number,
): Launch[] {
  const label = labelOf(k);
  resetLowerCaches();
  const local = new LocalSlots(globalSlot, isRealized);
  const root = k.root;
  switch (k.kind) {
    case "fused": {
      const kernel = lowerFused(root, isRealized, local, label);
      const program = kernel.kind === "elementwise" ? elementwiseShader(kernel) : rowShader(kernel);
      return [launchOf(program, local, root.size, maxBindings, root)];
    }
    case "matmul":
      return [lowerMatmul(k, isRealized, local, label, maxBindings)];
    case "grouped":
      return [lowerGrouped(k, isRealized, local, label, maxBindings)];
    case "wgrad": {
      const [R, K] = k.a.rowIndex ? [k.a.rowIndex.shape[0], k.a.node.shape[1]] : k.a.node.shape;
      const a = local.of(k.a.node)!, g = local.of(k.g)!, offsets = local.of(k.offsets)!;
      const rowIndex = k.a.rowIndex ? local.of(k.a.rowIndex)! : undefined;
      const out = registerOut(local, root);
      const program = groupedWgradShader({
        label,
        R,
        K,
        N: k.g.shape[1],
        E: k.offsets.shape[0] - 1,
        rows: (root.arg as OpArgs["groupedWgrad"]).rows,
        a,
        g,
        offsets,
        out,
        rowIndex,
      });
      return [launchOf(program, local, root.size, maxBindings, root)];
    }
    case "topk": {
      const src = throughIdentity(root.src[0]);
      const n = src.shape[src.shape.length - 1];
      const x = local.of(src)!;
      const out = registerOut(local, root);
      const rows = n === 0 ? 0 : src.size / n;
      if (root.arg && (root.arg as OpArgs["topk"]).k * n > 60000) {
        throw new Error(
          `topk: k·n = ${
            (root.arg as OpArgs["topk"]).k * n
          } per row exceeds what one WebGPU invocation may loop over (60000); use a smaller k`,
        );
      }
      const program = topkShader({
        label,
        rows,
        n,
        k: (root.arg as OpArgs["topk"]).k,
        type: scalarType(src.dtype),
        x,
        out,
      });
      return [launchOf(program, local, rows, maxBindings, root)];
    }
    case "attention":
    case "attentionBwdQ":
    case "attentionBwdKV": {
      const srcs = root.src.map(throughIdentity);
      const [q, kk] = srcs;
      const r = q.shape.length;
      const arg = root.arg as OpArgs["attention"];
      const shape: AttentionShape = {
        batch: prod(q.shape.slice(0, r - 2)),
        S: q.shape[r - 2],
        Sk: kk.shape[r - 2],
        Dh: q.shape[r - 1],
        causal: arg.causal,
        scale: arg.scale,
      };
      if (shape.Dh % 4 !== 0) {
        throw new Error(
          `${k.kind}: the fused kernel needs a head size divisible by 4, got ${shape.Dh}`,
        );
      }
      const slots = srcs.map((s) => local.of(s)!);
      const out = registerOut(local, root);
      const [qs, ks, vs, dO, lse, delta] = slots;
      const program = k.kind === "attention"
        ? attentionForwardShader({ label, ...shape, q: qs, k: ks, v: vs, out })
        : (k.kind === "attentionBwdQ" ? attentionBackwardQShader : attentionBackwardKVShader)({
          label,
          ...shape,
          q: qs,
          k: ks,
          v: vs,
          dO,
          lse,
          delta,
          out,
        });
      const rows = shape.batch * (k.kind === "attentionBwdKV" ? shape.Sk : shape.S);
      return [launchOf(program, local, rows, maxBindings, root)];
    }
    case "kthLargest": {
      const src = throughIdentity(root.src[0]);
      const [n, cols] = src.shape;
      const x = local.of(src)!;
      const state = local.scratch(selectStateBytes(cols));
      const hist = local.scratch(selectHistBytes(n, cols));
      const out = registerOut(local, root);
      const programs = radixSelectPrograms({
        label,
        n,
        cols,
        rank: (root.arg as OpArgs["kthLargest"]).rank,
        x,
        out,
        state,
        hist,
      });
      return programs.map((p) =>
        launchOf(p, local, n === 0 ? 0 : p.grid[0] * p.grid[1], maxBindings, root)
      );
    }
    case "cumsum": {
      const a = root.arg as OpArgs["cumsum"];
      const src = throughIdentity(root.src[0]);
      const x = local.of(src)!;
      const out = registerOut(local, root);
      const outer = prod(src.shape.slice(0, a.axis)), inner = prod(src.shape.slice(a.axis + 1));
      const program = scanShader({
        label,
        outer,
        length: src.shape[a.axis],
        inner,
        reverse: a.reverse,
        exclusive: a.exclusive,
        type: scalarType(src.dtype),
        x,
        out,
      });
      return [launchOf(program, local, outer * inner, maxBindings, root)];
    }
    case "segmentSum": {
      const [x, order, offsets] = root.src.map(throughIdentity);
      const slots = { x: local.of(x)!, order: local.of(order)!, offsets: local.of(offsets)! };
      const out = registerOut(local, root);
      const [S, L] = root.shape;
      const program = segmentSumShader({
        label,
        S,
        L,
        rows: (root.arg as OpArgs["segmentSum"]).rows,
        ...slots,
        out,
      });
      return [launchOf(program, local, root.size, maxBindings, root)];
    }
    case "scatterAdd": {
      const a = root.arg as OpArgs["scatterAdd"];
      const [upd, idx] = root.src.map(throughIdentity);
      const u = local.of(upd)!, ix = local.of(idx)!;
      const out = registerOut(local, root);
      const fillLocal = new LocalSlots(globalSlot, isRealized);
      const fo = registerOut(fillLocal, root);
      const fill = fillShader(`zero ${label}`, root.size, fo, scalarType(root.dtype));
      const program = scatterAddShader({
        label,
        outer: prod(upd.shape.slice(0, a.axis)),
        m: upd.shape[a.axis],
        inner: prod(upd.shape.slice(a.axis + 1)),
        n: root.shape[a.axis],
        type: scalarType(root.dtype),
        upd: u,
        idx: ix,
        out,
      });
      return [
        launchOf(fill, fillLocal, root.size, maxBindings, root),
        launchOf(program, local, upd.size, maxBindings, root),
      ];
    }
  }
}

/** Gives the kernel's output a local binding after its inputs. */
function registerOut(local: LocalSlots, root: Node): number {
  const g = local.global(root)!;
  local.order.push(g);
  return local.order.length - 1;
}

function lowerFused(
  root: Node,
  isRealized: (n: Node) => boolean,
  local: LocalSlots,
  label: string,
): ElementwiseKernel | RowKernel {
  const kernel = lowerGroup(root, isRealized, (n) => local.of(n), -1, label, local.checks);
  kernel.out.slot = registerOut(local, root);
  return kernel;
}

function lowerMatmul(
  k: Extract<PlannedKernel, { kind: "matmul" }>,
  isRealized: (n: Node) => boolean,
  local: LocalSlots,
  label: string,
  maxBindings: number,
): Launch {
  const { mm, root } = k;
  if (groupReductions(root, isRealized).length) {
    throw new LoweringConflict(mm, "a reduction follows in the same kernel");
  }
  const [A, B] = mm.src;
  const r = mm.shape.length;
  const M = A.shape[r - 2], K = A.shape[r - 1], N = B.shape[r - 1];
  const batchShape = mm.shape.slice(0, r - 2);
  const batch = prod(batchShape);
  const a = local.of(k.a.node)!, b = local.of(k.b.node)!;
  // Hook-free kernels build no expressions here: interned ids order commutative operands, so
  // their WGSL stays exactly what it was before prologues existed.
  const hooked = root !== mm || k.a.prologue || k.b.prologue;
  const batchCoords = hooked
    ? unravel(variable("mm_b", "i32", 0, Math.max(0, batch - 1)), batchShape)
    : [];
  const readA = lowerPrologue(k.a, batchCoords, M, K, local, [a, b]);
  const readB = lowerPrologue(k.b, batchCoords, K, N, local, [a, b]);
  let epilogue: Exp | null = null;
  if (root !== mm) {
    const coords = [
      ...batchCoords,
      variable("mm_m", "i32", 0, Math.max(0, M - 1)),
      variable("mm_n", "i32", 0, Math.max(0, N - 1)),
    ];
    epilogue = lowerEpilogue(mm, root, local, coords, [a, b], "matmul");
  }
  const out = registerOut(local, root);
  const program = matmulShader({
    label,
    batch,
    M,
    K,
    N,
    a,
    b,
    out,
    strideA: k.a.batchBroadcast ? 0 : M * K,
    strideB: k.b.batchBroadcast ? 0 : K * N,
    transA: k.a.transposed,
    transB: k.b.transposed,
    readA,
    readB,
    epilogue,
  });
  return launchOf(program, local, mm.size, maxBindings, root);
}

/**
 * A matmul operand's prologue: its elementwise expression as a function of the element `mm_v`
 * read from its base, at batch coordinates `batch`, logical row `mm_r` and column `mm_c`; null
 * when the base is read as is (also when the operand is only a reshape of it). Like an
 * epilogue it may not read the vec4-bound operands; any conflict realizes the operand instead.
 */
function lowerPrologue(
  o: MatmulOperand,
  batch: Exp[],
  rows: number,
  cols: number,
  local: LocalSlots,
  operands: readonly number[],
): Exp | null {
  const e = o.prologue;
  if (!e) return null;
  const v = variable("mm_v", "f32");
  const r = variable("mm_r", "i32", 0, Math.max(0, rows - 1));
  const c = variable("mm_c", "i32", 0, Math.max(0, cols - 1));
  const lead = o.batchBroadcast ? e.shape.slice(0, -2).map(() => i32(0)) : batch;
  const lw = new Lowerer((n) => local.of(n), new Map(), e, new Map([[o.node, v]]));
  let read: Exp;
  try {
    read = lw.lower(e, [...lead, ...(o.transposed ? [c, r] : [r, c])]);
  } catch (err) {
    if (err instanceof LoweringConflict) throw new LoweringConflict(e, err.message);
    throw err;
  }
  walkExp([read], (x) => {
    if (x.op === "load" && operands.includes(x.attr as number)) {
      throw new LoweringConflict(e, "the prologue reads a matmul operand");
    }
  });
  return read === v ? null : read;
}

/**
 * The elementwise consumer `root` of a matmul-like routine `mm`, as an expression over the
 * accumulator `mm_v` at output coordinates `coords`. The fast paths bind the operands as vec4
 * arrays, so an epilogue that reads one of them needs its own kernel (a LoweringConflict).
 */
function lowerEpilogue(
  mm: Node,
  root: Node,
  local: LocalSlots,
  coords: Exp[],
  operands: readonly number[],
  what: string,
): Exp {
  const acc = variable("mm_v", "f32");
  const lw = new Lowerer(
    (n) => (n === mm ? undefined : local.of(n)),
    new Map([[mm, { acc, kept: coords }]]),
    root,
  );
  const epilogue = lw.lower(root, coords);
  let aliased = false;
  walkExp([epilogue], (e) => {
    if (e.op === "load" && operands.includes(e.attr as number)) aliased = true;
  });
  if (aliased) throw new LoweringConflict(mm, `the epilogue reads a ${what} operand`);
  return epilogue;
}

function lowerGrouped(
  k: Extract<PlannedKernel, { kind: "grouped" }>,
  isRealized: (n: Node) => boolean,
  local: LocalSlots,
  label: string,
  maxBindings: number,
): Launch {
  const { mm, root } = k;
  if (groupReductions(root, isRealized).length) {
    throw new LoweringConflict(mm, "a reduction follows in the same kernel");
  }
  const [R, N] = mm.shape;
  const K = mm.src[0].shape[1];
  const E = k.offsets.shape[0] - 1;
  const a = local.of(k.a.node)!, b = local.of(k.b)!, offsets = local.of(k.offsets)!;
  const rowIndex = k.a.rowIndex ? local.of(k.a.rowIndex)! : undefined;
  let epilogue: Exp | null = null;
  if (root !== mm) {
    const coords = [
      variable("mm_m", "i32", 0, Math.max(0, R - 1)),
      variable("mm_n", "i32", 0, Math.max(0, N - 1)),
    ];
    epilogue = lowerEpilogue(mm, root, local, coords, [a, b], "grouped-matmul");
  }
  const out = registerOut(local, root);
  const program = groupedMatmulShader({
    label,
    R,
    K,
    N,
    E,
    a,
    b,
    offsets,
    out,
    rowIndex,
    epilogue,
  });
  return launchOf(program, local, mm.size, maxBindings, root);
}
