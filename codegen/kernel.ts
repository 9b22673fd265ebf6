/**
 * The kernel IR and its WGSL generators for fused elementwise and row-reduction kernels. A kernel
 * has one output; its body is scalar expressions over the output index (`gidx`), or over a row
 * (`row`) with a reduction loop variable (`r`) for each sequential reduction.
 */
import { Emitter, literal, storageType } from "./emit.ts";
import { type Exp, type ScalarType, walk } from "./exp.ts";

export const WORKGROUP = 64;
/** WebGPU's per-dimension workgroup-count limit. */
export const MAX_GRID = 65535;

export interface Binding {
  slot: number;
  type: ScalarType;
  write: boolean;
  /** Declared as array<atomic<...>> (scatter-add targets). */
  atomic?: boolean;
  /** Declared as array<vec4<f32>> (matmul fast paths). */
  vec4?: boolean;
  /**
   * The step's error buffer (`mj_err`, atomic u32) where index checks record failures; always
   * the last binding, bound by the executor to the launch's own region (not a step slot).
   */
  errors?: boolean;
}

/** The error-buffer binding of a kernel that checks indices. */
export const ERROR_BINDING: Binding = {
  slot: -1,
  type: "u32",
  write: true,
  atomic: true,
  errors: true,
};

/** Whether any expression of a kernel checks an index (and so binds the error buffer). */
export function hasChecks(exps: readonly Exp[]): boolean {
  let found = false;
  walk(exps, (e) => {
    if (e.op === "check") found = true;
  });
  return found;
}

/**
 * A generated kernel, ready to run: a WGSL compute shader (a pipeline and a dispatch of `grid`
 * workgroups) or a C function (`code` defines `KERNEL_NAME`, its parameters the bindings in
 * order; `grid` is unused).
 */
export interface KernelProgram {
  label: string;
  code: string;
  /** Binding i of the kernel is `bindings[i]`. */
  bindings: Binding[];
  grid: [number, number, number];
}

export type ReduceKind = "sum" | "max" | "min";

export interface ElementwiseKernel {
  kind: "elementwise";
  label: string;
  n: number;
  out: { slot: number; type: ScalarType };
  /** The output element at `gidx`. */
  value: Exp;
  /**
   * Set (C target only) when the value is indexed by `gidx_o` and `gidx_i` instead, the element
   * being gidx_o · inner + gidx_i (LowerOptions.splitLastAxis).
   */
  inner?: number;
}

export interface RowReduction {
  kind: ReduceKind;
  /** The reduced element, over `row` and `r` (and earlier accumulators). */
  value: Exp;
  /** Name of the accumulator variable later expressions refer to. */
  acc: string;
  type: ScalarType;
}

export interface RowKernel {
  kind: "row";
  label: string;
  rows: number;
  /** Length of every reduction (and of the per-element output loop). */
  R: number;
  reductions: RowReduction[];
  out: { slot: number; type: ScalarType };
  /** perRow: value over `row` and the accumulators, stored at `index` (default `row`).
   *  perElement: a final loop over `r` stores `value` at `index`. */
  output: { perElement: boolean; value: Exp; index: Exp };
  /**
   * Set (C target only) when rows are indexed by `row_o` and `row_i` instead of `row`, the row
   * being row_o · innerRows + row_i (LowerOptions.splitLastAxis).
   */
  innerRows?: number;
}

/** Folds a 1-D count of workgroups into a 2-D grid within the per-dimension limit. */
export function foldGrid(workgroups: number): [number, number, number] {
  if (workgroups <= MAX_GRID) return [Math.max(1, workgroups), 1, 1];
  const y = Math.ceil(workgroups / MAX_GRID);
  return [Math.ceil(workgroups / y), y, 1];
}

function collectBindings(exps: readonly Exp[], out: { slot: number; type: ScalarType }): Binding[] {
  const reads = new Map<number, ScalarType>();
  walk(exps, (e) => {
    if (e.op === "load") reads.set(e.attr as number, e.type);
  });
  const bindings: Binding[] = [...reads.entries()].sort((a, b) => a[0] - b[0])
    .filter(([slot]) => slot !== out.slot)
    .map(([slot, type]) => ({ slot, type, write: false }));
  bindings.push({ slot: out.slot, type: out.type, write: true });
  if (hasChecks(exps)) bindings.push(ERROR_BINDING);
  return bindings;
}

/**
 * Merges bindings of one slot (a template may read one buffer as two operands, e.g. x @ xᵀ);
 * they must agree on how the buffer is declared.
 */
export function uniqueBindings(bindings: readonly Binding[]): Binding[] {
  const out: Binding[] = [];
  for (const b of bindings) {
    const same = out.find((o) => o.slot === b.slot);
    if (!same) {
      out.push(b);
      continue;
    }
    if (!!same.vec4 !== !!b.vec4 || same.type !== b.type || !!same.atomic !== !!b.atomic) {
      throw new Error(`internal: slot ${b.slot} is bound twice with different declarations`);
    }
    same.write ||= b.write;
  }
  return out;
}

export function bindingDecls(bindings: readonly Binding[]): string {
  return bindings.map((b, i) => {
    const elem = b.vec4
      ? "vec4<f32>"
      : b.atomic
      ? `atomic<${storageType(b.type)}>`
      : storageType(b.type);
    const access = b.write ? "read_write" : "read";
    const name = b.errors ? "mj_err" : `buf${b.slot}`;
    return `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${elem}>;`;
  }).join("\n");
}

function storeText(type: ScalarType, value: string): string {
  return type === "bool" ? `select(0u, 1u, ${value})` : value;
}

/** The linear invocation index over a folded grid. */
export function invocationIndex(grid: [number, number, number]): string {
  return grid[1] > 1 ? `i32(gid.x + gid.y * ${grid[0] * WORKGROUP}u)` : `i32(gid.x)`;
}

export function elementwiseShader(k: ElementwiseKernel): KernelProgram {
  if (k.inner) throw new Error("internal: WGSL kernels index elements by gidx alone");
  const bindings = collectBindings([k.value], k.out);
  const grid = foldGrid(Math.ceil(k.n / WORKGROUP));
  const em = new Emitter((s) => `buf${s}`);
  const top = em.segment(false, ["gidx"]);
  em.count([k.value]);
  const v = em.render(k.value, top);
  const body = em.lines(top);
  const code = `${bindingDecls(bindings)}
${em.helperText()}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let gidx = ${invocationIndex(grid)};
  if (gidx >= ${k.n}i) { return; }
${body.map((l) => "  " + l).join("\n")}
  buf${k.out.slot}[gidx] = ${storeText(k.out.type, v)};
}
`;
  return { label: k.label, code, bindings, grid };
}

function accInit(kind: ReduceKind, type: ScalarType): string {
  if (kind === "sum") return literal(0, type);
  const big = kind === "max" ? -1 : 1;
  if (type === "f32") return literal(big * Infinity, "f32");
  if (type === "i32") return literal(kind === "max" ? -2147483648 : 2147483647, "i32");
  return literal(kind === "max" ? 0 : 4294967295, "u32");
}

function combine(kind: ReduceKind, type: ScalarType, acc: string, v: string): string {
  if (kind === "sum") return `${acc} + ${v}`;
  if (type === "f32") {
    // Like the interpreter: NaN wins (WGSL max/min leave NaN unspecified), and on ties the
    // earlier element stays, which decides between -0 and +0 (WGSL max/min may pick either).
    const nan = (x: string) => `((bitcast<u32>(${x}) & 0x7fffffffu) > 0x7f800000u)`;
    const better = kind === "max" ? `${v} > ${acc}` : `${v} < ${acc}`;
    return `select(select(${acc}, ${v}, ${better}), ${acc} + ${v}, ${nan(acc)} || ${nan(v)})`;
  }
  return `${kind}(${acc}, ${v})`;
}

export function rowShader(k: RowKernel): KernelProgram {
  if (k.innerRows) throw new Error("internal: WGSL kernels index rows by row alone");
  const roots = [...k.reductions.map((r) => r.value), k.output.value, k.output.index];
  const bindings = collectBindings(roots, k.out);
  const grid = foldGrid(Math.ceil(k.rows / WORKGROUP));
  const em = new Emitter((s) => `buf${s}`);
  em.count(roots);
  const top = em.segment(false, ["row"]);
  const parts: { seg: number; pre: string[]; post: string[] }[] = [];
  for (const red of k.reductions) {
    const body = em.segment(true, ["r"]);
    const v = em.render(red.value, body);
    em.line(body, `${red.acc} = ${combine(red.kind, red.type, red.acc, v)};`);
    const init = accInit(red.kind, red.type);
    if (init.includes("mj_f32_bits")) em.helpers.add("mj_f32_bits"); // ±inf for max/min
    parts.push({
      seg: body,
      pre: [
        `var ${red.acc} = ${init};`,
        `for (var r = 0i; r < ${k.R}i; r++) {`,
      ],
      post: ["}"],
    });
    // Accumulators are visible from here on.
    const after = em.segment(false, [red.acc]);
    parts.push({ seg: after, pre: [], post: [] });
  }
  const store = `buf${k.out.slot}[${"IDX"}] = ${"VAL"};`;
  if (k.output.perElement) {
    const body = em.segment(true, ["r"]);
    const v = em.render(k.output.value, body);
    const idx = em.render(k.output.index, body);
    em.line(body, store.replace("IDX", idx).replace("VAL", storeText(k.out.type, v)));
    parts.push({ seg: body, pre: [`for (var r = 0i; r < ${k.R}i; r++) {`], post: ["}"] });
  } else {
    const seg = em.segment(false, []);
    const v = em.render(k.output.value, seg);
    const idx = em.render(k.output.index, seg);
    em.line(seg, store.replace("IDX", idx).replace("VAL", storeText(k.out.type, v)));
    parts.push({ seg, pre: [], post: [] });
  }
  const lines: string[] = [...em.lines(top).map((l) => "  " + l)];
  for (const p of parts) {
    const inLoop = p.pre.some((l) => l.startsWith("for"));
    for (const l of p.pre) lines.push("  " + l);
    for (const l of em.lines(p.seg)) lines.push((inLoop ? "    " : "  ") + l);
    for (const l of p.post) lines.push("  " + l);
  }
  const code = `${bindingDecls(bindings)}
${em.helperText()}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = ${invocationIndex(grid)};
  if (row >= ${k.rows}i) { return; }
${lines.join("\n")}
}
`;
  return { label: k.label, code, bindings, grid };
}
