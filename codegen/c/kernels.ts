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

export function rowC(k: RowKernel): KernelProgram {
  const roots = [...k.reductions.map((r) => r.value), k.output.value, k.output.index];
  const bindings = collectBindings(roots, k.out);
  const em = new CEmitter((s) => `buf${s}`);
  em.count(roots);
  const top = em.segment(false, ["row"]);
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
  const body = `${
    parallelFor(k.rows, perRow * costOf(roots) / Math.max(1, roots.length))
  }  for (int32_t row = 0; row < ${k.rows}; row++) {
${indent(lines, "    ")}
  }
`;
  return { label: k.label, code: cFunction(bindings, body), bindings, grid: [1, 1, 1] };
}
