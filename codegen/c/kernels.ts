/**
 * Fused elementwise and row-reduction kernels as C functions: one loop over the output (or its
 * rows), parallel across threads when there is enough work; a row's reductions run in order
 * within one thread, so results do not depend on the thread count.
 */
import { type Exp, walk } from "../exp.ts";
import {
  type Binding,
  type ElementwiseKernel,
  ERROR_BINDING,
  hasChecks,
  type KernelProgram,
  type ReduceKind,
  type RowKernel,
} from "../kernel.ts";
import type { ScalarType } from "../exp.ts";
import { CEmitter, cLiteral, cStorageType } from "./emit.ts";

/** The C parameter list of `bindings` (in order): `buf<slot>` pointers, `mj_err` last. */
export function cParams(bindings: readonly Binding[]): string {
  return bindings.map((b) =>
    b.errors
      ? "uint32_t *restrict mj_err"
      : `${b.write ? "" : "const "}${cStorageType(b.type)} *restrict buf${b.slot}`
  ).join(", ");
}

/** A C kernel function; `KERNEL_NAME` is replaced by the step file's name for it. */
export function cFunction(bindings: readonly Binding[], body: string): string {
  return `static void KERNEL_NAME(${cParams(bindings)}) {\n${body}}\n`;
}

/** The OpenMP pragma of a loop over `n` iterations costing about `cost` operations each. */
export function parallelFor(n: number, cost = 1): string {
  return n * cost >= 16384 && n > 1 ? "#pragma omp parallel for schedule(static)\n" : "";
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

function store(type: ScalarType, value: string): string {
  return type === "bool" ? `(uint8_t)(${value})` : value;
}

const indent = (lines: readonly string[], by: string) => lines.map((l) => by + l).join("\n");

/** Rough per-element cost of an expression, for the parallel threshold. */
function costOf(exps: readonly Exp[]): number {
  let n = 0;
  walk(exps, (e) => {
    n += e.op === "exp" || e.op === "log" || e.op === "tanh" || e.op === "pow" || e.op === "erf"
      ? 8
      : 1;
  });
  return n;
}

export function elementwiseC(k: ElementwiseKernel): KernelProgram {
  const bindings = collectBindings([k.value], k.out);
  if (k.inner) return elementwiseNestC(k, k.inner, bindings);
  const em = new CEmitter((s) => `buf${s}`);
  const top = em.segment(false, ["gidx"]);
  em.count([k.value]);
  const v = em.render(k.value, top);
  const body = `${
    parallelFor(k.n, costOf([k.value]))
  }  for (int32_t gidx = 0; gidx < ${k.n}; gidx++) {
${indent(em.lines(top), "    ")}
    buf${k.out.slot}[gidx] = ${store(k.out.type, v)};
  }
`;
  return { label: k.label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}

/**
 * An elementwise kernel indexed by (gidx_o, gidx_i): a loop over the outer elements (parallel),
 * whose values that do not depend on gidx_i are computed once per row, around a loop along the
 * last axis.
 */
function elementwiseNestC(k: ElementwiseKernel, inner: number, bindings: Binding[]): KernelProgram {
  const em = new CEmitter((s) => `buf${s}`);
  const outer = em.segment(false, ["gidx_o"]);
  const row = em.segment(false, ["gidx_i"]);
  em.count([k.value]);
  const v = em.render(k.value, row);
  const body = `${parallelFor(k.n, costOf([k.value]))}  for (int32_t gidx_o = 0; gidx_o < ${
    k.n / inner
  }; gidx_o++) {
${indent(em.lines(outer), "    ")}
    for (int32_t gidx_i = 0; gidx_i < ${inner}; gidx_i++) {
${indent(em.lines(row), "      ")}
      buf${k.out.slot}[(int64_t)gidx_o * ${inner} + gidx_i] = ${store(k.out.type, v)};
    }
  }
`;
  return { label: k.label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}

function accInit(kind: ReduceKind, type: ScalarType): string {
  if (kind === "sum") return cLiteral(0, type);
  const big = kind === "max" ? -1 : 1;
  if (type === "f32") return cLiteral(big * Infinity, "f32");
  if (type === "i32") return kind === "max" ? "INT32_MIN" : "INT32_MAX";
  return kind === "max" ? "0u" : "UINT32_MAX";
}

function combine(kind: ReduceKind, type: ScalarType, acc: string, v: string): string {
  if (kind === "sum") return `${acc} + ${v}`;
  if (type === "f32") return `mj_r${kind}(${acc}, ${v})`;
  return `mj_${type === "u32" ? "u" : "i"}${kind}(${acc}, ${v})`;
}

/**
 * The value of an integer index expression at given variable values, or undefined when it reads
 * memory or uses an op this does not follow.
 */
function evalIndex(e: Exp, env: Record<string, number>): number | undefined {
  const a = e.args.map((x) => evalIndex(x, env));
  if (a.some((v) => v === undefined)) return undefined;
  const [x, y] = a as number[];
  switch (e.op) {
    case "const":
      return e.value;
    case "var":
      return env[e.attr as string];
    case "add":
      return x + y;
    case "sub":
      return x - y;
    case "mul":
      return x * y;
    case "div":
      return y === 0 ? x : Math.trunc(x / y);
    case "mod":
      return y === 0 ? 0 : x % y;
    case "max":
      return Math.max(x, y);
    case "min":
      return Math.min(x, y);
    case "cast":
      return x;
    default:
      return undefined;
  }
}

/**
 * Whether a row kernel's reductions read memory along rows rather than along the reduced axis
 * (a column sum: the gradient of a norm's weight, per-expert statistics): then a block of rows
 * is reduced together, the innermost loop running over the rows of the block (contiguous, so it
 * vectorizes) instead of striding through memory one row at a time. Each row still sums in the
 * order of r, so the result is the same bits either way.
 */
function readsAlongRows(k: RowKernel): boolean {
  if (k.rows < 8 || k.R < 2) return false;
  let along = 0, across = 0;
  walk(k.reductions.map((r) => r.value), (e) => {
    if (e.op !== "load") return;
    const L = k.innerRows ?? 1;
    const at = (row: number, r: number) =>
      evalIndex(e.args[0], { row, r, row_o: Math.floor(row / L), row_i: row % L });
    const base = at(1, 1), dRow = at(2, 1), dR = at(1, 2);
    if (base === undefined || dRow === undefined || dR === undefined) return;
    if (Math.abs(dRow - base) === 1 && Math.abs(dR - base) > 1) along++;
    else across++;
  });
  return along > 0 && across === 0;
}

/** The split row variables (RowKernel.innerRows) from `row`. */
const splitRow = (L: number) =>
  `const int32_t row_o = row / ${L}, row_i = row % ${L}; (void)row_o; (void)row_i;`;

/** Rows reduced together in the blocked order. */
const ROW_BLOCK = 64;

/** The blocked order of a row kernel (see readsAlongRows). */
function rowBlockedC(k: RowKernel, bindings: Binding[]): KernelProgram {
  const roots = [...k.reductions.map((r) => r.value), k.output.value, k.output.index];
  const em = new CEmitter((s) => `buf${s}`);
  em.count(roots);
  const lines: string[] = [];
  const accs: string[] = [];
  const loadAccs = () =>
    accs.map((a) => `const ${a.split(" ")[0]} ${a.split(" ")[1]} = ${a.split(" ")[1]}_b[b];`);
  for (const red of k.reductions) {
    const t = red.type === "bool" ? "int" : cStorageType(red.type);
    lines.push(`${t} ${red.acc}_b[${ROW_BLOCK}];`);
    lines.push(`for (int b = 0; b < nb; b++) ${red.acc}_b[b] = ${accInit(red.kind, red.type)};`);
    const seg = em.segment(true, ["r", "row", ...k.reductions.map((x) => x.acc)]);
    const v = em.render(red.value, seg);
    lines.push(`for (int32_t r = 0; r < ${k.R}; r++) {`);
    lines.push(`  for (int b = 0; b < nb; b++) {`);
    lines.push(`    const int32_t row = row0 + b;`);
    if (k.innerRows) lines.push(`    ${splitRow(k.innerRows)}`);
    for (const l of loadAccs()) lines.push(`    ${l}`);
    for (const l of em.lines(seg)) lines.push(`    ${l}`);
    lines.push(`    ${red.acc}_b[b] = ${combine(red.kind, red.type, `${red.acc}_b[b]`, v)};`);
    lines.push(`  }`, `}`);
    accs.push(`${t} ${red.acc}`);
  }
  const seg = em.segment(true, ["r", "row", ...k.reductions.map((x) => x.acc)]);
  const v = em.render(k.output.value, seg);
  const idx = em.render(k.output.index, seg);
  const store1 = `buf${k.out.slot}[${idx}] = ${store(k.out.type, v)};`;
  const inner = [
    `const int32_t row = row0 + b;`,
    ...(k.innerRows ? [splitRow(k.innerRows)] : []),
    ...loadAccs(),
    ...em.lines(seg),
    store1,
  ];
  if (k.output.perElement) {
    lines.push(`for (int32_t r = 0; r < ${k.R}; r++) {`, `  for (int b = 0; b < nb; b++) {`);
    lines.push(...inner.map((l) => `    ${l}`), `  }`, `}`);
  } else {
    lines.push(`for (int b = 0; b < nb; b++) {`, ...inner.map((l) => `  ${l}`), `}`);
  }
  const blocks = Math.ceil(k.rows / ROW_BLOCK);
  const body = `  ${
    parallelFor(blocks, ROW_BLOCK * k.R)
  }for (int32_t row0 = 0; row0 < ${k.rows}; row0 += ${ROW_BLOCK}) {
    const int nb = ${k.rows} - row0 < ${ROW_BLOCK} ? ${k.rows} - row0 : ${ROW_BLOCK};
${indent(lines, "    ")}
  }
`;
  return { label: k.label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}

export function rowC(k: RowKernel): KernelProgram {
  const roots = [...k.reductions.map((r) => r.value), k.output.value, k.output.index];
  const bindings = collectBindings(roots, k.out);
  if (readsAlongRows(k)) return rowBlockedC(k, bindings);
  const em = new CEmitter((s) => `buf${s}`);
  em.count(roots);
  const L = k.innerRows ?? 0;
  // Split rows: values of row_o alone are computed once per outer row, the rest per row_i.
  const outer = L ? em.segment(false, ["row_o"]) : -1;
  const top = em.segment(false, L ? ["row_i"] : ["row"]);
  const parts: { seg: number; pre: string[]; post: string[] }[] = [];
  for (const red of k.reductions) {
    const body = em.segment(true, ["r"]);
    const v = em.render(red.value, body);
    em.line(body, `${red.acc} = ${combine(red.kind, red.type, red.acc, v)};`);
    const t = red.type === "bool" ? "int" : cStorageType(red.type);
    parts.push({
      seg: body,
      pre: [
        `${t} ${red.acc} = ${accInit(red.kind, red.type)};`,
        `for (int32_t r = 0; r < ${k.R}; r++) {`,
      ],
      post: ["}"],
    });
    parts.push({ seg: em.segment(false, [red.acc]), pre: [], post: [] });
  }
  if (k.output.perElement) {
    const body = em.segment(true, ["r"]);
    const v = em.render(k.output.value, body);
    const idx = em.render(k.output.index, body);
    em.line(body, `buf${k.out.slot}[${idx}] = ${store(k.out.type, v)};`);
    parts.push({ seg: body, pre: [`for (int32_t r = 0; r < ${k.R}; r++) {`], post: ["}"] });
  } else {
    const seg = em.segment(false, []);
    const v = em.render(k.output.value, seg);
    const idx = em.render(k.output.index, seg);
    em.line(seg, `buf${k.out.slot}[${idx}] = ${store(k.out.type, v)};`);
    parts.push({ seg, pre: [], post: [] });
  }
  const lines: string[] = [...em.lines(top)];
  for (const p of parts) {
    const inLoop = p.pre.some((l) => l.startsWith("for"));
    lines.push(...p.pre);
    for (const l of em.lines(p.seg)) lines.push((inLoop ? "  " : "") + l);
    lines.push(...p.post);
  }
  const perRow = Math.max(1, k.R) *
    Math.max(1, k.reductions.length + (k.output.perElement ? 1 : 0));
  const pragma = parallelFor(k.rows, perRow * costOf(roots) / Math.max(1, roots.length));
  const body = L
    ? `${pragma}  for (int32_t row_o = 0; row_o < ${k.rows / L}; row_o++) {
${indent(em.lines(outer), "    ")}
    for (int32_t row_i = 0; row_i < ${L}; row_i++) {
${indent(lines, "      ")}
    }
  }
`
    : `${pragma}  for (int32_t row = 0; row < ${k.rows}; row++) {
${indent(lines, "    ")}
  }
`;
  return { label: k.label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}
