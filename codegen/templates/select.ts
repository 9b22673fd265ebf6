/**
 * Radix select: the rank-th largest of every column of x [n, cols], without sorting. Floats map
 * to u32 keys ordered like the floats. Four passes, one key byte each: one workgroup per (row
 * chunk, column) builds a 256-bin histogram in workgroup memory (atomics) over the rows that
 * match the prefix found so far, then one invocation per column sums the chunks and walks the
 * bins from the top to the byte holding the wanted rank. The byte position lives in the state
 * buffer, so the four passes share one histogram pipeline and one pick pipeline (the private
 * 256-entry array of a per-invocation histogram took llvmpipe ~0.5 s to compile per pass).
 * Loops stay far below the 65,535-iteration cap: 32 rows per invocation per chunk, 256 bins ×
 * at most 200 chunks per pick. Columns of 65,536 rows (BIP over a big batch) take 10 launches.
 */
import {
  type Binding,
  bindingDecls,
  foldGrid,
  invocationIndex,
  type KernelProgram,
  MAX_GRID,
  WORKGROUP,
} from "../kernel.ts";

export interface SelectSpec {
  label: string;
  n: number;
  cols: number;
  rank: number;
  /** Local slots: input, output, and two scratch buffers (state [3·cols] u32, histograms). */
  x: number;
  out: number;
  state: number;
  hist: number;
}

/** Rows per workgroup chunk. */
const CHUNK = 2048;
const HIST_WG = 64;

export function selectChunks(n: number): number {
  const chunks = Math.max(1, Math.ceil(n / CHUNK));
  if (chunks > 200) {
    throw new Error(
      `kthLargest: columns of ${n} rows exceed the ${200 * CHUNK} this kernel supports`,
    );
  }
  return chunks;
}

/** Bytes of the histogram scratch buffer. */
export function selectHistBytes(n: number, cols: number): number {
  return selectChunks(n) * 256 * cols * 4;
}

/** Bytes of the state scratch buffer: prefix, remaining rank and shift per column. */
export function selectStateBytes(cols: number): number {
  return 3 * cols * 4;
}

const KEY_FNS = `fn okey(v: f32) -> u32 {
  // Keys ordered like the floats, with every NaN (whatever its sign bit) the largest.
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0xffffffffu; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn oval(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}`;

/** A kernel with one invocation per column. */
function perColumn(label: string, bindings: Binding[], cols: number, body: string): KernelProgram {
  const grid = foldGrid(Math.ceil(cols / WORKGROUP));
  const code = `${bindingDecls(bindings)}
${KEY_FNS}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = ${invocationIndex(grid)};
  if (col >= ${cols}i) { return; }
${body}
}
`;
  return { label, code, bindings, grid };
}

export function radixSelectPrograms(s: SelectSpec): KernelProgram[] {
  const chunks = selectChunks(s.n);
  const { cols } = s;
  const x: Binding = { slot: s.x, type: "f32", write: false };
  const stateR: Binding = { slot: s.state, type: "u32", write: false };
  const stateW: Binding = { slot: s.state, type: "u32", write: true };
  const histR: Binding = { slot: s.hist, type: "u32", write: false };
  const histW: Binding = { slot: s.hist, type: "u32", write: true };
  const out: Binding = { slot: s.out, type: "f32", write: true };
  const S = `buf${s.state}`, H = `buf${s.hist}`;
  const init = perColumn(
    `${s.label} (init)`,
    [stateW],
    cols,
    `  ${S}[col] = 0u;
  ${S}[${cols}i + col] = ${s.rank}u;
  ${S}[${2 * cols}i + col] = 24u;`,
  );
  const histBindings = [x, stateR, histW];
  const groups = chunks * cols;
  const hist: KernelProgram = {
    label: `${s.label} (histogram)`,
    bindings: histBindings,
    grid: [Math.min(groups, MAX_GRID), Math.ceil(groups / MAX_GRID), 1],
    code: `${bindingDecls(histBindings)}
${KEY_FNS}
var<workgroup> h: array<atomic<u32>, 256>;
@compute @workgroup_size(${HIST_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = i32(wid.x + wid.y * ${MAX_GRID}u);
  if (group >= ${groups}i) { return; }
  let col = group % ${cols}i;
  let chunk = group / ${cols}i;
  for (var b = lid; b < 256u; b += ${HIST_WG}u) { atomicStore(&h[b], 0u); }
  workgroupBarrier();
  let prefix = ${S}[col];
  let shift = ${S}[${2 * cols}i + col];
  let end = min(${s.n}i, (chunk + 1i) * ${CHUNK}i);
  for (var i = chunk * ${CHUNK}i + i32(lid); i < end; i += ${HIST_WG}i) {
    let key = okey(buf${s.x}[i * ${cols}i + col]);
    // A shift of 32 is not a WGSL shift: the first pass matches every row.
    if (shift == 24u || (key >> (shift + 8u)) == prefix) {
      atomicAdd(&h[(key >> shift) & 255u], 1u);
    }
  }
  workgroupBarrier();
  for (var b = lid; b < 256u; b += ${HIST_WG}u) {
    ${H}[(u32(chunk) * 256u + b) * ${cols}u + u32(col)] = atomicLoad(&h[b]);
  }
}
`,
  };
  const pick = perColumn(
    `${s.label} (pick)`,
    [histR, stateW],
    cols,
    `  let r = ${S}[${cols}i + col];
  var above = 0u;
  var chosen = 0u;
  var rest = r;
  var found = false;
  for (var b = 255i; b >= 0i; b--) {
    var count = 0u;
    for (var c = 0i; c < ${chunks}i; c++) { count += ${H}[(c * 256i + b) * ${cols}i + col]; }
    if (!found && above + count >= r) {
      found = true;
      chosen = u32(b);
      rest = r - above;
    }
    above += count;
  }
  ${S}[col] = (${S}[col] << 8u) | chosen;
  ${S}[${cols}i + col] = rest;
  ${S}[${2 * cols}i + col] = ${S}[${2 * cols}i + col] - 8u;`,
  );
  const decode = perColumn(
    `${s.label} (decode)`,
    [stateR, out],
    cols,
    `  buf${s.out}[col] = oval(${S}[col]);`,
  );
  return [init, hist, pick, hist, pick, hist, pick, hist, pick, decode];
}
