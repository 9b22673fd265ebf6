/**
 * Fused scaled-dot-product attention (FlashAttention's recurrences, one query or key row per
 * invocation). The S×S scores and probabilities never touch memory:
 *
 *  - forward: per query row, an online softmax over the keys (running max m, running sum l,
 *    unnormalised output acc) → o = acc / l and lse = m + log l, packed as [rows, Dh + 1];
 *  - backward for q: per query row, recompute p = exp(s − lse), dp = dO·v, ds = p(dp − D) and
 *    accumulate dq = scale Σ_j ds k_j (D = rowsum(dO ⊙ o) − dlse, computed by the caller);
 *  - backward for k and v: per key row, dv = Σ_i p dO_i and dk = scale Σ_i ds q_i, packed as
 *    [rows, 2·Dh].
 *
 * The head dimension is unrolled into vec4 registers (Dh % 4 == 0), so the only loop runs over
 * the other sequence: at most S iterations, far below llvmpipe's 65,535-iteration loop cap for
 * any sequence the front end sends here. Causal masking is the loop bound (keys j ≤ i + Sk − S),
 * so masked entries cost nothing.
 */
import {
  type Binding,
  bindingDecls,
  foldGrid,
  type ShaderProgram,
  uniqueBindings,
} from "../kernel.ts";

/**
 * Invocations per workgroup. A workgroup covers consecutive rows of one batch entry, so the
 * key/value row index of the inner loop is uniform across it: llvmpipe (and GPUs) then load
 * each k_j, v_j once per workgroup and broadcast it, instead of a per-lane gather.
 */
const GROUP = 32;

export interface AttentionShape {
  /** Batch × heads. */
  batch: number;
  /** Query rows and key rows per batch entry. */
  S: number;
  Sk: number;
  /** Head size (a multiple of 4). */
  Dh: number;
  causal: boolean;
  scale: number;
}

export interface AttentionForwardSpec extends AttentionShape {
  label: string;
  q: number;
  k: number;
  v: number;
  /** [batch, S, Dh + 1]: o then lse per row. */
  out: number;
}

export interface AttentionBackwardSpec extends AttentionShape {
  label: string;
  q: number;
  k: number;
  v: number;
  dO: number;
  /** [batch, S] row log-sum-exp from the forward. */
  lse: number;
  /** [batch, S] rowsum(dO ⊙ o) − dlse. */
  delta: number;
  /** dq [batch, S, Dh] or packed dk|dv [batch, Sk, 2·Dh]. */
  out: number;
}

function f(x: number): string {
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** vec4 register names `${p}0 … ${p}{n-1}`. */
const regs = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);

function vecBinding(slot: number, write = false): Binding {
  return { slot, type: "f32", write, vec4: true };
}

/**
 * A kernel over `rowsPerBatch` rows of each batch entry, GROUP rows per workgroup. The body
 * sees `b` (batch entry, uniform), `r0` (the workgroup's first row, uniform), `r` (this
 * invocation's row, clamped into range so it computes harmlessly) and `live` (whether it stores).
 */
function program(
  label: string,
  batch: number,
  rowsPerBatch: number,
  bindings: Binding[],
  body: string,
): ShaderProgram {
  const perBatch = Math.ceil(rowsPerBatch / GROUP);
  const grid = foldGrid(batch * perBatch);
  const unique = uniqueBindings(bindings);
  const wg = grid[1] > 1 ? `wid.x + wid.y * ${grid[0]}u` : "wid.x";
  const code = `${bindingDecls(unique)}
@compute @workgroup_size(${GROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = i32(${wg});
  if (w >= ${batch * perBatch}i) { return; }
  let b = w / ${perBatch}i;
  let r0 = (w % ${perBatch}i) * ${GROUP}i;
  let live = r0 + i32(lid) < ${rowsPerBatch}i;
  let r = min(r0 + i32(lid), ${rowsPerBatch - 1}i);
${body}
}
`;
  return { label, code, bindings: unique, grid };
}

/** The forward kernel: one invocation per query row. */
export function attentionForwardShader(s: AttentionForwardSpec): ShaderProgram {
  const n = s.Dh / 4;
  const q = regs("q", n), acc = regs("a", n);
  const shift = s.Sk - s.S; // query i sees keys j ≤ i + shift
  // The loop bound is the workgroup's (uniform); later keys of earlier rows are masked.
  const hi = s.causal ? `min(r0 + ${GROUP + shift}i, ${s.Sk}i)` : `${s.Sk}i`;
  const body = `  let row = b * ${s.S}i + r;
  let qb = row * ${n}i;
${q.map((x, d) => `  let ${x} = buf${s.q}[qb + ${d}i] * ${f(s.scale)};`).join("\n")}
${acc.map((x) => `  var ${x} = vec4<f32>(0.0);`).join("\n")}
  var m = -3.0e38;
  var l = 0.0;
  let kb = b * ${s.Sk * n}i;
  let lim = r + ${shift}i;
  for (var j = 0i; j < ${hi}; j++) {
    let o = kb + j * ${n}i;
    let dotqk = ${q.map((x, d) => `dot(${x}, buf${s.k}[o + ${d}i])`).join(" + ")};
    let sc = ${s.causal ? "select(-3.0e38, dotqk, j <= lim)" : "dotqk"};
    let mNew = max(m, sc);
    let c = exp(m - mNew);
    let p = exp(sc - mNew);
    l = l * c + p;
${acc.map((x, d) => `    ${x} = ${x} * c + p * buf${s.v}[o + ${d}i];`).join("\n")}
    m = mNew;
  }
  if (!live) { return; }
  let inv = 1.0 / l;
  let ob = row * ${s.Dh + 1}i;
${
    acc.map((x, d) =>
      `  let w${d} = ${x} * inv;\n` +
      [0, 1, 2, 3].map((c) => `  buf${s.out}[ob + ${4 * d + c}i] = w${d}.${"xyzw"[c]};`).join("\n")
    ).join("\n")
  }
  buf${s.out}[ob + ${s.Dh}i] = m + log(l);`;
  return program(s.label, s.batch, s.S, [vecBinding(s.q), vecBinding(s.k), vecBinding(s.v), {
    slot: s.out,
    type: "f32",
    write: true,
  }], body);
}

function backwardBindings(s: AttentionBackwardSpec): Binding[] {
  return [
    vecBinding(s.q),
    vecBinding(s.k),
    vecBinding(s.v),
    vecBinding(s.dO),
    { slot: s.lse, type: "f32", write: false },
    { slot: s.delta, type: "f32", write: false },
    vecBinding(s.out, true),
  ];
}

/** dq: one invocation per query row. */
export function attentionBackwardQShader(s: AttentionBackwardSpec): ShaderProgram {
  const n = s.Dh / 4;
  const q = regs("q", n), dO = regs("g", n), dq = regs("a", n);
  const shift = s.Sk - s.S;
  const hi = s.causal ? `min(r0 + ${GROUP + shift}i, ${s.Sk}i)` : `${s.Sk}i`;
  const body = `  let row = b * ${s.S}i + r;
  let qb = row * ${n}i;
${q.map((x, d) => `  let ${x} = buf${s.q}[qb + ${d}i] * ${f(s.scale)};`).join("\n")}
${dO.map((x, d) => `  let ${x} = buf${s.dO}[qb + ${d}i];`).join("\n")}
${dq.map((x) => `  var ${x} = vec4<f32>(0.0);`).join("\n")}
  let lse = buf${s.lse}[row];
  let delta = buf${s.delta}[row];
  let kb = b * ${s.Sk * n}i;
  let lim = r + ${shift}i;
  for (var j = 0i; j < ${hi}; j++) {
    let o = kb + j * ${n}i;
    let e = exp(${q.map((x, d) => `dot(${x}, buf${s.k}[o + ${d}i])`).join(" + ")} - lse);
    let p = ${s.causal ? "select(0.0, e, j <= lim)" : "e"};
    let dp = ${dO.map((x, d) => `dot(${x}, buf${s.v}[o + ${d}i])`).join(" + ")};
    let ds = p * (dp - delta);
${dq.map((x, d) => `    ${x} = ${x} + ds * buf${s.k}[o + ${d}i];`).join("\n")}
  }
  if (!live) { return; }
${dq.map((x, d) => `  buf${s.out}[qb + ${d}i] = ${x} * ${f(s.scale)};`).join("\n")}`;
  return program(s.label, s.batch, s.S, backwardBindings(s), body);
}

/** dk | dv: one invocation per key row. */
export function attentionBackwardKVShader(s: AttentionBackwardSpec): ShaderProgram {
  const n = s.Dh / 4;
  const k = regs("k", n), v = regs("v", n), dk = regs("dk", n), dv = regs("dv", n);
  const shift = s.Sk - s.S; // key j is seen by queries i ≥ j − shift
  const lo = s.causal ? `max(r0 - ${shift}i, 0i)` : "0i";
  const body = `  let row = b * ${s.Sk}i + r;
  let kb = row * ${n}i;
${k.map((x, d) => `  let ${x} = buf${s.k}[kb + ${d}i] * ${f(s.scale)};`).join("\n")}
${v.map((x, d) => `  let ${x} = buf${s.v}[kb + ${d}i];`).join("\n")}
${[...dk, ...dv].map((x) => `  var ${x} = vec4<f32>(0.0);`).join("\n")}
  let qrow = b * ${s.S}i;
  let first = r - ${shift}i;
  for (var i = ${lo}; i < ${s.S}i; i++) {
    let o = (qrow + i) * ${n}i;
    let e = exp(${
    k.map((x, d) => `dot(${x}, buf${s.q}[o + ${d}i])`).join(" + ")
  } - buf${s.lse}[qrow + i]);
    let p = ${s.causal ? "select(0.0, e, i >= first)" : "e"};
    let dp = ${v.map((x, d) => `dot(${x}, buf${s.dO}[o + ${d}i])`).join(" + ")};
    let ds = p * (dp - buf${s.delta}[qrow + i]);
${dv.map((x, d) => `    ${x} = ${x} + p * buf${s.dO}[o + ${d}i];`).join("\n")}
${dk.map((x, d) => `    ${x} = ${x} + ds * buf${s.q}[o + ${d}i];`).join("\n")}
  }
  if (!live) { return; }
  let ob = row * ${2 * n}i;
${dk.map((x, d) => `  buf${s.out}[ob + ${d}i] = ${x} * ${f(s.scale)};`).join("\n")}
${dv.map((x, d) => `  buf${s.out}[ob + ${n + d}i] = ${x};`).join("\n")}`;
  return program(s.label, s.batch, s.Sk, backwardBindings(s), body);
}
