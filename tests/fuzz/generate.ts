/**
 * Random fuzz programs from a seed, type-correct by construction: the generator builds every
 * node as it goes (over placeholder constants, nothing runs), so it always knows shapes and
 * dtypes, and it tracks an interval for every number so that it only draws ops that are
 * well-conditioned there (log of positives, division by values away from 0, exp of moderate
 * arguments, sums and products that stay moderate).
 *
 * Graphs mix the public ops with the structures the fuser cares about: values with several
 * consumers, reductions feeding elementwise ops feeding reductions (x − mean(x), softmax, norms),
 * matmuls with elementwise producers and consumers, movement ops in between, and small motifs
 * (layer norm, MLP, attention, top-k routing, cross-entropy). Three size classes: small odd
 * sizes (1, 3, 7, 65, …), big ones past the legalizer's split points (reduce 4,096, scan 8,192,
 * top-k 16,384, matmul K 32,768), and long axes past llvmpipe's 65,535-iteration loop cap.
 */
import * as mj from "../../mod.ts";
import { mulberry32 } from "./data.ts";
import {
  type Binary,
  type Dim,
  type DT,
  type Env,
  exec,
  numel,
  type Op,
  operands,
  type Program,
  type Reduction,
  resolve,
  resolveDim,
  type Unary,
} from "./program.ts";

export type SizeClass = "small" | "big" | "long";

type Range = [number, number];

const SMALL = [1, 2, 3, 5, 7, 9, 13, 16, 17, 31, 33, 65];
const BIG = [1031, 4099, 8209, 16411, 33331];
const LONG = [65537, 70001, 100003, 131101];

/** Largest element count of any node, per size class. */
const CAP: Record<SizeClass, number> = { small: 1 << 14, big: 1 << 17, long: 1 << 19 };
/** Largest multiply-add count of one matmul (the interpreter runs them in plain loops). */
const MAX_MACS = 1 << 21;
/** Largest magnitude any value may reach. */
const MAX_MAG = 1e5;

/** Thrown by a step that cannot apply here; the step's nodes are rolled back. */
class Skip extends Error {}

const mag = (r: Range) => Math.max(Math.abs(r[0]), Math.abs(r[1]));
const hull = (...xs: number[]): Range => [Math.min(...xs), Math.max(...xs)];
const round3 = (v: number) => Number(v.toPrecision(3));

function broadcast(a: readonly number[], b: readonly number[]): number[] | null {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1, y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/**
 * The program for `seed`. The size class follows the seed unless given, so that every run of
 * eight consecutive seeds has five small programs, two big and one long.
 */
export function generate(seed: number, size?: SizeClass): Program {
  return new Generator(seed, size ?? sizeClassOf(seed)).run();
}

export function sizeClassOf(seed: number): SizeClass {
  return seed % 8 === 5 ? "long" : seed % 4 === 2 ? "big" : "small";
}

class Generator {
  readonly r: () => number;
  readonly p: Program = { dims: [], nodes: [], outputs: [] };
  readonly env: Env;
  readonly ranges: Range[] = [];
  readonly size: SizeClass;
  readonly cap: number;
  #seed: number;

  constructor(seed: number, size: SizeClass) {
    this.r = mulberry32((Math.imul(seed, 2654435761) ^ 0x5bd1e995) >>> 0);
    this.size = size;
    this.cap = CAP[this.size];
    this.env = { dims: this.p.dims, tensors: [] };
    this.#seed = (seed % 100_000) * 1000;
  }

  // ---- randomness ------------------------------------------------------------------------------
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  of<X>(xs: readonly X[]): X {
    if (!xs.length) throw new Skip();
    return xs[this.int(xs.length)];
  }
  weighted<X>(xs: readonly [X, number][]): X {
    let t = this.r() * xs.reduce((s, [, w]) => s + w, 0);
    for (const [x, w] of xs) if ((t -= w) < 0) return x;
    return xs[xs.length - 1][0];
  }

  // ---- nodes -----------------------------------------------------------------------------------
  shape(i: number): number[] {
    return this.env.tensors[i].shape;
  }
  dt(i: number): DT {
    return this.env.tensors[i].dtype as DT;
  }
  rank(i: number): number {
    return this.env.tensors[i].ndim;
  }
  range(i: number): Range {
    return this.ranges[i];
  }

  add(op: Op, range: Range): number {
    const i = this.p.nodes.length;
    let t: mj.Tensor;
    if (op.k === "input" || op.k === "index") {
      const shape = op.shape.map((d) => resolveDim(d, this.env));
      t = mj.zeros(shape).cast(op.k === "index" ? "i32" : op.dtype);
    } else {
      t = exec(resolve(op, this.env, i), this.env);
    }
    if (t.size > this.cap) throw new Skip();
    if (t.dtype === "f32" && !(mag(range) <= MAX_MAG)) throw new Skip();
    this.p.nodes.push(op);
    this.env.tensors.push(t);
    this.ranges.push(t.dtype === "bool" ? [0, 1] : range);
    return i;
  }

  nextSeed(): number {
    return ++this.#seed;
  }

  sym(n: number): Dim {
    this.p.dims.push(n);
    return { sym: this.p.dims.length - 1 };
  }

  /** A symbol (existing or new) of a small size. */
  smallDim(): Dim {
    const small = this.p.dims.map((d, i) => [d, i] as const).filter(([d]) => d <= 65);
    if (small.length && this.chance(0.6)) return { sym: this.of(small)[1] };
    return this.sym(this.of(SMALL));
  }

  dimsOf(i: number): Dim[] {
    return this.shape(i).map((_, axis) => ({ like: i, axis }));
  }

  input(shape: Dim[], dtype: DT, range: Range, grad = this.chance(0.85)): number {
    return this.add({
      k: "input",
      dtype,
      shape,
      lo: range[0],
      hi: range[1],
      seed: this.nextSeed(),
      grad,
    }, dtype === "bool" ? [0, 1] : range);
  }

  index(shape: Dim[], bound: Dim): number {
    const n = resolveDim(bound, this.env);
    return this.add({ k: "index", shape, bound, seed: this.nextSeed() }, [0, n - 1]);
  }

  /** A node satisfying `pred`, biased to recent ones (but old ones get reused too). */
  pick(pred: (i: number) => boolean = () => true): number {
    const c: number[] = [];
    for (let i = 0; i < this.p.nodes.length; i++) if (pred(i)) c.push(i);
    if (!c.length) throw new Skip();
    return this.chance(0.55) ? c[Math.max(0, c.length - 1 - this.int(3))] : this.of(c);
  }

  isF = (i: number) => this.dt(i) === "f32";

  /** A fresh input shaped like node x, some axes broadcast (1) and maybe fewer leading axes. */
  likeInput(x: number, range: Range, opts: { ones?: number; drop?: boolean } = {}): number {
    let dims = this.dimsOf(x);
    if (opts.ones) dims = dims.map((d) => (this.chance(opts.ones!) ? { lit: 1 } : d));
    if (opts.drop && dims.length > 1 && this.chance(0.3)) {
      dims = dims.slice(1 + this.int(dims.length - 1));
    }
    return this.input(dims, "f32", range);
  }

  // ---- program -----------------------------------------------------------------------------------
  run(): Program {
    this.start();
    const steps = this.size === "small"
      ? 8 + this.int(11)
      : this.size === "big"
      ? 6 + this.int(7)
      : 5 + this.int(6);
    let done = 0;
    for (let attempt = 0; done < steps && attempt < steps * 6; attempt++) {
      const mark = this.p.nodes.length, dims = this.p.dims.length;
      try {
        this.step();
        done++;
      } catch (e) {
        if (!(e instanceof Skip)) throw e;
        this.p.nodes.length = mark;
        this.env.tensors.length = mark;
        this.ranges.length = mark;
        this.p.dims.length = dims;
      }
    }
    this.chooseOutputs();
    return this.p;
  }

  start(): void {
    if (this.size === "long") {
      const L = this.sym(this.of(LONG));
      const s = this.sym(this.of([1, 2, 3]));
      const shape = this.of([[L], [s, L], [L, s]]);
      this.input(shape, "f32", this.of<Range>([[-1, 1], [0.1, 1], [-2, 0.5]]));
      if (this.chance(0.5)) this.input([...shape], "f32", [-1, 1]);
      return;
    }
    if (this.size === "big") this.sym(this.of(BIG));
    const nSyms = 3 + this.int(2);
    const pool = [...SMALL];
    for (let i = 0; i < nSyms; i++) {
      const at = this.int(pool.length);
      this.sym(pool.splice(at, 1)[0]);
    }
    const inputs = 1 + this.int(2);
    for (let k = 0; k < inputs; k++) {
      for (let tries = 0; tries < 20; tries++) {
        const rank = 1 + this.int(4);
        const shape: Dim[] = [];
        for (let a = 0; a < rank; a++) {
          // The big symbol is the last axis of the first input.
          const s = this.size === "big" && k === 0 && a === rank - 1
            ? 0
            : this.int(this.p.dims.length);
          shape.push({ sym: s });
        }
        if (numel(shape.map((d) => resolveDim(d, this.env))) > this.cap / 4) continue;
        try {
          this.input(shape, "f32", this.of<Range>([[-1, 1], [-2, 2], [0.2, 1.5]]));
          break;
        } catch (e) {
          if (!(e instanceof Skip)) throw e;
        }
      }
    }
    if (!this.p.nodes.length) this.input([{ sym: 1 }], "f32", [-1, 1]);
  }

  step(): void {
    const long = this.size === "long";
    const family = this.weighted<() => void>([
      [() => this.unary(), 16],
      [() => this.binary(), long ? 12 : 18],
      [() => this.scalar(), 9],
      [() => this.where(), 5],
      [() => this.cast(), long ? 1 : 3],
      [() => this.intOps(), long ? 0 : 3],
      [() => this.reduce(), long ? 22 : 12],
      [() => this.softmax(), long ? 8 : 4],
      [() => this.argmax(), 3],
      [() => this.topk(), 3],
      [() => this.cumsum(), long ? 6 : 3],
      [() => this.gather(), long ? 2 : 4],
      [() => this.matmul(), 7],
      [() => this.movement(), long ? 6 : 14],
      [() => this.motif(), 6],
    ]);
    family();
  }

  chooseOutputs(): void {
    const n = this.p.nodes.length;
    const used = new Set<number>(this.p.nodes.flatMap(operands));
    const outs = new Set<number>([n - 1]);
    const isComputed = (i: number) => !["input", "index"].includes(this.p.nodes[i].k);
    for (let i = n - 2; i >= 0 && outs.size < 4; i--) {
      if (isComputed(i) && !used.has(i) && this.chance(0.7)) outs.add(i);
    }
    // An interior value as an output too: it must be realized while its consumers fuse on.
    if (this.chance(0.35)) {
      const inner = [...used].filter(isComputed);
      if (inner.length) outs.add(this.of(inner));
    }
    this.p.outputs = [...outs].sort((a, b) => a - b);
  }

  // ---- families ----------------------------------------------------------------------------------
  unary(): void {
    const x = this.pick(this.isF);
    const [lo, hi] = this.range(x);
    const m = mag([lo, hi]);
    const opts: [Unary, Range, (number | string)[]?][] = [
      ["neg", [-hi, -lo]],
      ["abs", lo >= 0 ? [lo, hi] : hi <= 0 ? [-hi, -lo] : [0, m]],
      ["sin", [-1, 1]],
      ["cos", [-1, 1]],
      ["tanh", [Math.tanh(lo), Math.tanh(hi)]],
      ["sigmoid", [1 / (1 + Math.exp(-lo)), 1 / (1 + Math.exp(-hi))]],
      ["erf", [-1, 1]],
      ["relu", [Math.max(lo, 0), Math.max(hi, 0)]],
      ["gelu", [-0.2, Math.max(hi, 0)]],
      ["gelu", [-0.2, Math.max(hi, 0)], ["tanh"]],
      ["silu", [-0.3, Math.max(hi, 0)]],
      ["softplus", [Math.log1p(Math.exp(Math.min(lo, 30))), Math.max(hi, 0) + 1]],
      ["sign", [-1, 1]],
      ["floor", [Math.floor(lo), Math.floor(hi)]],
    ];
    if (hi <= 5 && lo >= -60) opts.push(["exp", [Math.exp(lo), Math.exp(hi)]]);
    if (lo >= 0.05) {
      opts.push(["log", [Math.log(lo), Math.log(hi)]]);
      opts.push(["sqrt", [Math.sqrt(lo), Math.sqrt(hi)]]);
      opts.push(["rsqrt", [1 / Math.sqrt(hi), 1 / Math.sqrt(lo)]]);
    }
    if (lo >= 0.2 || hi <= -0.2) opts.push(["reciprocal", hull(1 / lo, 1 / hi)]);
    if (m <= 30) opts.push(["square", lo >= 0 || hi <= 0 ? hull(lo * lo, hi * hi) : [0, m * m]]);
    if (hi > lo) {
      const c1 = round3(lo + (hi - lo) * 0.25), c2 = round3(lo + (hi - lo) * 0.75);
      if (c1 < c2) opts.push(["clip", [c1, c2], [c1, c2]]);
    }
    const [f, range, args] = this.of(opts);
    this.add({ k: "unary", f, x, ...(args ? { args } : {}) }, range);
  }

  /** An operand for a binary op with `a`: a pool node that broadcasts, a fresh input, or a reduction. */
  partner(a: number, want: (r: Range) => boolean, fresh: Range): number {
    const u = this.r();
    const sa = this.shape(a);
    if (u < 0.3) {
      return this.likeInput(a, fresh, { ones: 0.3, drop: true });
    }
    if (u < 0.5 && this.dt(a) === "f32" && this.rank(a) >= 1) {
      // x op reduce(x, keepdims): a reduction feeding an elementwise op over its own source.
      const axes = this.someAxes(this.rank(a));
      const f = this.of<Reduction>(["mean", "max", "min", "logsumexp"]);
      const [lo, hi] = this.range(a);
      const L = axes.reduce((p, ax) => p * sa[ax], 1);
      const range: Range = f === "logsumexp" ? [lo, hi + Math.log(L)] : [lo, hi];
      if (want(range)) return this.add({ k: "reduce", f, x: a, axes, keepdims: true }, range);
    }
    const b = this.pick((i) => {
      if (this.dt(i) !== this.dt(a) || !want(this.range(i))) return false;
      const s = broadcast(sa, this.shape(i));
      return !!s && numel(s) <= this.cap;
    });
    return b;
  }

  someAxes(rank: number): number[] {
    const axes = Array.from({ length: rank }, (_, i) => i).filter(() => this.chance(0.45));
    return axes.length ? axes : [this.int(rank)];
  }

  binary(): void {
    const a = this.pick((i) => this.dt(i) !== "bool" || this.chance(0.5));
    const dt = this.dt(a);
    if (dt === "bool") {
      const b = this.pick((i) =>
        this.dt(i) === "bool" && !!broadcast(this.shape(a), this.shape(i))
      );
      const f = this.of<Binary>(["logicalAnd", "logicalOr", "logicalXor", "eq", "ne"]);
      this.add({ k: "binary", f, a, b }, [0, 1]);
      return;
    }
    if (dt === "i32") return this.intBinary(a);
    const ra = this.range(a);
    const f = this.weighted<Binary>([
      ["add", 4],
      ["sub", 3],
      ["mul", 4],
      ["div", 2],
      ["pow", ra[0] >= 0.1 && ra[1] <= 10 ? 1 : 0],
      ["maximum", 2],
      ["minimum", 2],
      ["lt", 1],
      ["ge", 1],
      ["gt", 0.5],
      ["le", 0.5],
    ]);
    const any = (_r: Range) => true;
    switch (f) {
      case "add":
      case "sub":
      case "maximum":
      case "minimum": {
        const b = this.partner(a, any, [-1, 1]);
        const rb = this.range(b);
        const range: Range = f === "add"
          ? [ra[0] + rb[0], ra[1] + rb[1]]
          : f === "sub"
          ? [ra[0] - rb[1], ra[1] - rb[0]]
          : f === "maximum"
          ? [Math.max(ra[0], rb[0]), Math.max(ra[1], rb[1])]
          : [Math.min(ra[0], rb[0]), Math.min(ra[1], rb[1])];
        this.add({ k: "binary", f, a, b }, range);
        return;
      }
      case "mul": {
        const b = this.partner(a, (r) => mag(r) * mag(ra) <= MAX_MAG / 10, [-1.5, 1.5]);
        const rb = this.range(b);
        this.add(
          { k: "binary", f, a, b },
          hull(ra[0] * rb[0], ra[0] * rb[1], ra[1] * rb[0], ra[1] * rb[1]),
        );
        return;
      }
      case "div": {
        const away = (r: Range) => r[0] >= 0.2 || r[1] <= -0.2;
        const b = this.partner(a, away, this.of<Range>([[0.5, 2], [-2, -0.5]]));
        const rb = this.range(b);
        this.add(
          { k: "binary", f, a, b },
          hull(ra[0] / rb[0], ra[0] / rb[1], ra[1] / rb[0], ra[1] / rb[1]),
        );
        return;
      }
      case "pow": {
        const b = this.partner(a, (r) => r[0] >= -2.5 && r[1] <= 2.5, [-2, 2]);
        const rb = this.range(b);
        this.add(
          { k: "binary", f, a, b },
          hull(...[ra[0], ra[1]].flatMap((x) => [rb[0], rb[1]].map((y) => x ** y))),
        );
        return;
      }
      default: {
        const b = this.partner(a, any, [-1, 1]);
        this.add({ k: "binary", f, a, b }, [0, 1]);
      }
    }
  }

  intBinary(a: number): void {
    const ra = this.range(a);
    const b = this.pick((i) => this.dt(i) === "i32" && !!broadcast(this.shape(a), this.shape(i)));
    const rb = this.range(b);
    const m = Math.max(mag(ra), mag(rb));
    const f = this.of<Binary>([
      "add",
      "sub",
      ...(mag(ra) * mag(rb) <= 1e6 ? ["mul" as const] : []),
      "div",
      "mod",
      "maximum",
      "minimum",
      "lt",
      "eq",
      "logicalAnd",
      "logicalXor",
    ]);
    const bits = 2 ** Math.ceil(Math.log2(m + 2));
    const range: Range = f === "add"
      ? [ra[0] + rb[0], ra[1] + rb[1]]
      : f === "sub"
      ? [ra[0] - rb[1], ra[1] - rb[0]]
      : f === "mul"
      ? hull(ra[0] * rb[0], ra[0] * rb[1], ra[1] * rb[0], ra[1] * rb[1])
      : f === "div"
      ? [-mag(ra), mag(ra)]
      : f === "mod"
      ? [-Math.min(mag(ra), mag(rb)), Math.min(mag(ra), mag(rb))]
      : f === "maximum" || f === "minimum"
      ? hull(ra[0], ra[1], rb[0], rb[1])
      : f === "lt" || f === "eq"
      ? [0, 1]
      : [-bits, bits];
    this.add({ k: "binary", f, a, b }, range);
  }

  scalar(): void {
    const x = this.pick((i) => this.dt(i) !== "bool");
    const r = this.range(x);
    const [lo, hi] = r;
    if (this.dt(x) === "i32") {
      const [f, c] = this.of<[Binary, number]>([
        ["add", 7],
        ["sub", -3],
        ["mul", 3],
        ["div", 2],
        ["div", 0],
        ["div", -3],
        ["mod", 5],
        ["mod", 0],
        ["mod", -4],
        ["maximum", 0],
        ["gt", 1],
      ]);
      const m = mag(r);
      const range: Range = f === "add"
        ? [lo + c, hi + c]
        : f === "sub"
        ? [lo - c, hi - c]
        : f === "mul"
        ? hull(lo * c, hi * c)
        : f === "div" || f === "mod"
        ? [-m, m]
        : f === "maximum"
        ? [Math.max(lo, c), Math.max(hi, c)]
        : [0, 1];
      this.add({ k: "scalar", f, x, c, swap: false }, range);
      return;
    }
    const mid = round3((lo + hi) / 2);
    const opts: [Binary, number, boolean, Range][] = [
      ["add", 0.75, false, [lo + 0.75, hi + 0.75]],
      ["sub", -1.25, false, [lo + 1.25, hi + 1.25]],
      ["mul", 0.5, false, [lo * 0.5, hi * 0.5]],
      ["mul", -2, false, [-2 * hi, -2 * lo]],
      ["div", 3, false, [lo / 3, hi / 3]],
      ["maximum", mid, false, [Math.max(lo, mid), Math.max(hi, mid)]],
      ["minimum", mid, false, [Math.min(lo, mid), Math.min(hi, mid)]],
      ["gt", mid, false, [0, 1]],
      ["le", mid, false, [0, 1]],
      ["sub", 1, true, [1 - hi, 1 - lo]],
    ];
    if (lo >= 0.1 && hi <= 10) {
      opts.push(["pow", 1.5, false, [lo ** 1.5, hi ** 1.5]]);
      opts.push(["pow", -0.5, false, [hi ** -0.5, lo ** -0.5]]);
    }
    if (mag(r) <= 20) {
      opts.push(["pow", 2, false, lo >= 0 || hi <= 0 ? hull(lo * lo, hi * hi) : [0, mag(r) ** 2]]);
      opts.push(["pow", 3, false, [lo ** 3, hi ** 3]]);
    }
    if (lo >= 0.2 || hi <= -0.2) opts.push(["div", 1, true, hull(1 / lo, 1 / hi)]);
    if (lo >= -4 && hi <= 4) opts.push(["pow", 1.5, true, [1.5 ** lo, 1.5 ** hi]]);
    const [f, c, swap, range] = this.of(opts);
    // Under mj.jit, some constants are runtime scalars (arguments of the compiled step).
    this.add(
      { k: "scalar", f, x, c, swap, ...(this.chance(0.5) ? { runtime: true } : {}) },
      range,
    );
  }

  /** A bool node: an existing one, or a fresh comparison of a float node with its midpoint. */
  condition(): number {
    if (this.chance(0.4)) {
      try {
        return this.pick((i) => this.dt(i) === "bool");
      } catch (e) {
        if (!(e instanceof Skip)) throw e;
      }
    }
    const x = this.pick(this.isF);
    const [lo, hi] = this.range(x);
    return this.add(
      { k: "scalar", f: this.of<Binary>(["gt", "lt"]), x, c: round3((lo + hi) / 2), swap: false },
      [0, 1],
    );
  }

  where(): void {
    const cond = this.condition();
    const sc = this.shape(cond);
    // Both sides f32 mostly, i32 sometimes.
    const dt: DT = this.chance(0.2) && this.p.nodes.some((_, i) => this.dt(i) === "i32")
      ? "i32"
      : "f32";
    const fits = (i: number) => this.dt(i) === dt && !!broadcast(sc, this.shape(i));
    const side = (): number | { c: number } => {
      if (this.chance(0.3)) return { c: this.of(dt === "f32" ? [0, -0.5, 1] : [0, -1, 3]) };
      return this.pick(fits);
    };
    const a = side();
    // mj.where needs a tensor on at least one side.
    const b = typeof a === "number" ? side() : this.pick(fits);
    let shape: number[] | null = sc;
    for (const s of [a, b]) {
      if (shape && typeof s === "number") shape = broadcast(shape, this.shape(s));
    }
    if (!shape || numel(shape) > this.cap) throw new Skip();
    const rs = [a, b].flatMap((s) => (typeof s === "number" ? this.range(s) : [s.c, s.c]));
    this.add({ k: "where", cond, a, b }, hull(...rs));
  }

  cast(): void {
    const x = this.pick();
    const dt = this.dt(x);
    const r = this.range(x);
    if (dt === "f32") {
      // Scaled so that the truncation boundaries cut through the values.
      const m = mag(r);
      if (!(m > 0)) throw new Skip();
      const s = round3(4 / m);
      const y = this.add({ k: "scalar", f: "mul", x, c: s, swap: false }, [r[0] * s, r[1] * s]);
      const [lo, hi] = this.range(y);
      this.add({ k: "cast", x: y, dtype: "i32" }, [Math.trunc(lo), Math.trunc(hi)]);
      return;
    }
    if (dt === "i32") {
      const to = this.of<DT>(["f32", "f32", "bool"]);
      this.add({ k: "cast", x, dtype: to }, to === "f32" ? r : [0, 1]);
      return;
    }
    const to = this.of<DT>(["f32", "i32"]);
    this.add({ k: "cast", x, dtype: to }, [0, 1]);
  }

  intOps(): void {
    // Integer and bool ops of their own, on values the graph has…
    if (this.chance(0.35)) {
      const x = this.pick((i) => this.dt(i) !== "f32");
      const r = this.range(x);
      if (this.dt(x) === "bool") this.add({ k: "unary", f: "logicalNot", x }, [0, 1]);
      else {
        const [f, range] = this.of<[Unary, Range]>([
          ["neg", [-r[1], -r[0]]],
          ["abs", [0, mag(r)]],
          ["logicalNot", [-r[1] - 1, -r[0] - 1]],
        ]);
        this.add({ k: "unary", f, x }, range);
      }
      return;
    }
    // … or data of their own: counts, indices, labels.
    const x = this.pick();
    if (this.chance(0.5)) {
      this.input(this.dimsOf(x), "i32", this.of<Range>([[-20, 20], [0, 9], [-3, 3]]), false);
    } else {
      this.input(this.dimsOf(x), "bool", [0, this.of([0.3, 0.5, 0.8])], false);
    }
  }

  reduce(): void {
    const x = this.pick((i) => this.dt(i) !== "bool" && this.rank(i) >= 1);
    const dt = this.dt(x);
    const shape = this.shape(x);
    const rank = shape.length;
    let axes: number[] | null;
    if (this.chance(0.15)) axes = null;
    else if (this.size !== "small" && this.chance(0.6)) {
      // The long axis, alone or with others.
      const big = shape.indexOf(Math.max(...shape));
      axes = [...new Set([big, ...this.someAxes(rank).filter(() => this.chance(0.3))])].sort();
    } else axes = this.someAxes(rank);
    const L = (axes ?? shape.map((_, i) => i)).reduce((p, a) => p * shape[a], 1);
    const r = this.range(x);
    const fs: Reduction[] = dt === "i32"
      ? ["sum", "max", "min"]
      : ["sum", "mean", "mean", "max", "min", "var", "logsumexp"];
    let f = this.of(fs);
    if (f === "sum" && L * mag(r) > MAX_MAG) {
      if (dt === "i32") throw new Skip();
      f = "mean";
    }
    const range: Range = f === "sum"
      ? [L * Math.min(r[0], 0), L * Math.max(r[1], 0)]
      : f === "var"
      ? [0, ((r[1] - r[0]) / 2) ** 2]
      : f === "logsumexp"
      ? [r[0], r[1] + Math.log(L)]
      : r;
    // Negative axis numbers sometimes (they count from the end).
    const spelled = axes?.map((a) => (this.chance(0.2) ? a - rank : a)) ?? null;
    this.add({ k: "reduce", f, x, axes: spelled, keepdims: this.chance(0.5) }, range);
  }

  axisOf(x: number, preferLong = this.size !== "small"): number {
    const shape = this.shape(x);
    if (preferLong && this.chance(0.7)) return shape.indexOf(Math.max(...shape));
    return this.int(shape.length);
  }

  softmax(): void {
    const x = this.pick((i) => this.isF(i) && this.rank(i) >= 1);
    const axis = this.axisOf(x);
    const [lo, hi] = this.range(x);
    const n = this.shape(x)[axis];
    const f = this.of(["softmax", "logSoftmax"] as const);
    this.add(
      { k: "softmax", f, x, axis: this.chance(0.3) ? axis - this.rank(x) : axis },
      f === "softmax" ? [0, 1] : [lo - hi - Math.log(n), 0],
    );
  }

  argmax(): void {
    const x = this.pick((i) => this.dt(i) !== "bool" && this.rank(i) >= 1);
    const axis = this.axisOf(x);
    const f = this.of(["argmax", "argmin"] as const);
    this.add(
      { k: "argmax", f, x, axis, keepdims: this.chance(0.4) },
      [0, this.shape(x)[axis] - 1],
    );
  }

  topk(): number {
    const x = this.pick((i) => this.dt(i) !== "bool" && this.rank(i) >= 1);
    const n = this.shape(x)[this.rank(x) - 1];
    const kk = this.of([1, 2, 3, 4, 8]);
    const part = this.of(["values", "indices", "both"] as const);
    let last = -1;
    if (part !== "indices") last = this.add({ k: "topk", x, kk, part: "values" }, this.range(x));
    if (part !== "values") last = this.add({ k: "topk", x, kk, part: "indices" }, [0, n - 1]);
    return last;
  }

  cumsum(): void {
    const x = this.pick((i) => this.dt(i) !== "bool" && this.rank(i) >= 1);
    const axis = this.axisOf(x);
    const n = this.shape(x)[axis];
    const r = this.range(x);
    if (n * mag(r) > MAX_MAG) throw new Skip();
    this.add({
      k: "cumsum",
      x,
      axis,
      reverse: this.chance(0.4),
      exclusive: this.chance(0.4),
    }, [n * Math.min(r[0], 0), n * Math.max(r[1], 0)]);
  }

  gather(): void {
    const x = this.pick((i) => this.rank(i) >= 1);
    if (this.chance(0.3)) {
      const m = this.chance(0.5) ? this.smallDim() : { lit: 1 + this.int(4) };
      const rows = this.index([m], { like: x, axis: 0 });
      this.add({ k: "takeRows", x, rows }, this.range(x));
      return;
    }
    const axis = this.axisOf(x, false);
    const sx = this.shape(x);
    // Computed indices (argmax, top-k, casts) that fit: same rank, x's sizes off the axis, and
    // values inside it.
    const computed = (i: number) =>
      this.dt(i) === "i32" && this.p.nodes[i].k !== "index" && this.rank(i) === sx.length &&
      this.shape(i).every((d, a) => a === axis || d === sx[a]) &&
      this.range(i)[0] >= 0 && this.range(i)[1] < sx[axis];
    let index: number;
    if (this.chance(0.4) && this.p.nodes.some((_, i) => computed(i))) index = this.pick(computed);
    else {
      const shape = this.dimsOf(x);
      shape[axis] = this.of<Dim>([{ like: x, axis }, { lit: 1 }, this.smallDim()]);
      index = this.index(shape, { like: x, axis });
    }
    this.add({ k: "gather", x, axis, index }, this.range(x));
  }

  matmul(): number {
    const a = this.pick((i) => this.isF(i) && this.rank(i) >= 1 && mag(this.range(i)) <= 100);
    const sa = this.shape(a);
    const K = sa[sa.length - 1];
    const ra = this.range(a);
    let b: number;
    const s = round3(Math.min(1, 2 / Math.sqrt(K)));
    const transposed = sa.length >= 2 && this.chance(0.25);
    if (transposed) {
      // a @ aᵀ (a Gram matrix): one value, two consumers, one of them through a transpose.
      b = this.add({
        k: "permute",
        x: a,
        perm: [sa.length - 1, sa.length - 2],
        form: "swapAxes",
      }, ra);
      b = sa.length === 2 && this.chance(0.5)
        ? this.add({ k: "unary", f: "tanh", x: b }, [Math.tanh(ra[0]), Math.tanh(ra[1])])
        : b;
    } else if (sa.length >= 2 && this.chance(0.15)) {
      b = this.input([{ like: a, axis: sa.length - 1 }], "f32", [-s, s]);
    } else {
      const N = this.smallDim();
      const batch = this.dimsOf(a).slice(0, -2).map((d) => (this.chance(0.25) ? { lit: 1 } : d));
      const keep = this.chance(0.2) ? batch.slice(this.int(batch.length + 1)) : batch;
      b = this.input([...keep, { like: a, axis: sa.length - 1 }, N], "f32", [-s, s]);
    }
    const sb = this.shape(b);
    const M = sa.length >= 2 ? sa[sa.length - 2] : 1;
    const N = sb.length >= 2 ? sb[sb.length - 1] : 1;
    const batch = broadcast(sa.slice(0, -2), sb.slice(0, -2));
    if (!batch || M * N * K * numel(batch) > MAX_MACS) throw new Skip();
    const R = K * mag(ra) * mag(this.range(b));
    return this.add({ k: "matmul", a, b }, [-R, R]);
  }

  movement(): void {
    const x = this.pick();
    const shape = this.shape(x);
    const rank = shape.length;
    const r = this.range(x);
    const kind = this.of([
      "reshape",
      "reshape",
      "permute",
      "permute",
      "expand",
      "squeeze",
      "unsqueeze",
      "slice",
      "slice",
      "pad",
      "concat",
      "stack",
    ]);
    switch (kind) {
      case "reshape": {
        if (rank === 0) throw new Skip();
        const how = rank >= 2 ? this.of(["merge", "split", "flatten"] as const) : "split";
        this.add({
          k: "reshape",
          x,
          how,
          axis: this.int(how === "merge" ? rank - 1 : rank),
          infer: this.chance(0.3),
        }, r);
        return;
      }
      case "permute": {
        if (rank < 2) throw new Skip();
        const form = this.of(["permute", "transpose", "swapAxes"] as const);
        let perm = Array.from({ length: rank }, (_, i) => i);
        if (form === "swapAxes") {
          const i = this.int(rank);
          let j = this.int(rank - 1);
          if (j >= i) j++;
          perm = [i, j];
        } else if (form === "permute") {
          for (let i = rank - 1; i > 0; i--) {
            const j = this.int(i + 1);
            [perm[i], perm[j]] = [perm[j], perm[i]];
          }
          if (perm.every((p, i) => p === i)) perm.reverse();
        }
        this.add({ k: "permute", x, perm, form }, r);
        return;
      }
      case "expand": {
        // Size-1 axes stretch to the size of a node that x broadcasts to; or a new leading axis.
        const target = this.chance(0.5)
          ? this.pick((i) => {
            const b = broadcast(shape, this.shape(i));
            return !!b && b.join() === this.shape(i).join() &&
              this.shape(i).join() !== shape.join();
          })
          : -1;
        const dims: Dim[] = target >= 0
          ? this.dimsOf(target)
          : [this.smallDim(), ...this.dimsOf(x)];
        this.add({ k: "expand", x, shape: dims }, r);
        return;
      }
      case "squeeze": {
        const ones = shape.flatMap((d, i) => (d === 1 ? [i] : []));
        this.add({ k: "squeeze", x, axis: this.of(ones) }, r);
        return;
      }
      case "unsqueeze":
        this.add({ k: "unsqueeze", x, axis: this.int(2 * rank + 2) - (rank + 1) }, r);
        return;
      case "slice": {
        const axes = shape.flatMap((d, i) => (d >= 2 ? [i] : []));
        const axis = this.of(axes);
        this.add({
          k: "slice",
          x,
          axis,
          from: round3(this.r() * 0.7),
          len: round3(this.r()),
          form: this.of(["slice", "narrow", "index"] as const),
        }, r);
        return;
      }
      case "pad": {
        if (rank === 0) throw new Skip();
        const pads = shape.map(() =>
          (this.chance(0.6) ? [0, 0] : [this.int(3), this.int(3)]) as [number, number]
        );
        if (pads.every(([a, b]) => a + b === 0)) pads[this.int(rank)] = [1, 2];
        const dt = this.dt(x);
        const value = dt === "f32"
          ? this.of([0, 0.5, -1])
          : dt === "i32"
          ? this.of([0, 3])
          : this.of([0, 1]);
        this.add({ k: "pad", x, pads, value }, hull(r[0], r[1], value));
        return;
      }
      case "concat": {
        if (rank === 0) throw new Skip();
        const axis = this.int(rank);
        const parts = [x];
        const n = 1 + this.int(2);
        for (let k = 0; k < n; k++) {
          if (this.chance(0.4)) parts.push(x);
          else if (this.dt(x) === "f32") {
            const dims = this.dimsOf(x);
            dims[axis] = this.of<Dim>([{ lit: 1 }, this.smallDim(), { like: x, axis }]);
            parts.push(this.input(dims, "f32", [-1, 1]));
          } else {
            parts.push(
              this.pick((i) =>
                this.dt(i) === this.dt(x) && this.rank(i) === rank &&
                this.shape(i).every((d, j) => j === axis || d === shape[j])
              ),
            );
          }
        }
        const rs = parts.flatMap((p) => this.range(p));
        this.add({ k: "concat", xs: parts, axis }, hull(...rs));
        return;
      }
      case "stack": {
        const other = this.pick((i) =>
          this.dt(i) === this.dt(x) && this.shape(i).join() === shape.join()
        );
        const axis = this.int(rank + 1);
        const rs = [...r, ...this.range(other)];
        this.add(
          { k: "stack", xs: this.chance(0.5) ? [x, other] : [other, x, other], axis },
          hull(...rs),
        );
        return;
      }
    }
  }

  motif(): void {
    const which = this.weighted<() => void>([
      [() => this.layerNorm(), 3],
      [() => this.mlp(), this.size === "long" ? 0 : 3],
      [() => this.attention(), this.size === "long" ? 0 : 2],
      [() => this.routing(), 3],
      [() => this.crossEntropy(), 2],
      [() => this.residual(), 2],
    ]);
    which();
  }

  layerNorm(): void {
    const x = this.pick((i) => this.isF(i) && this.rank(i) >= 1 && mag(this.range(i)) <= 100);
    const axis = this.axisOf(x);
    const r = this.range(x);
    const m = this.add({ k: "reduce", f: "mean", x, axes: [axis], keepdims: true }, r);
    const w = r[1] - r[0];
    const d = this.add({ k: "binary", f: "sub", a: x, b: m }, [-w, w]);
    const v = this.chance(0.5)
      ? this.add({ k: "reduce", f: "var", x, axes: [axis], keepdims: true }, [0, w * w / 4])
      : this.add({
        k: "reduce",
        f: "mean",
        x: this.add({ k: "unary", f: "square", x: d }, [0, w * w]),
        axes: [axis],
        keepdims: true,
      }, [0, w * w]);
    const eps = this.of([0.05, 0.1]);
    const ve = this.add({ k: "scalar", f: "add", x: v, c: eps, swap: false }, [eps, w * w + eps]);
    const inv = this.add({ k: "unary", f: "rsqrt", x: ve }, [0, 1 / Math.sqrt(eps)]);
    const bound = w / Math.sqrt(eps);
    let y = this.add({ k: "binary", f: "mul", a: d, b: inv }, [-bound, bound]);
    if (this.chance(0.6)) {
      // A scale along the normalized axis, broadcast over the axes after it.
      const trailing: Dim[] = Array.from({ length: this.rank(x) - 1 - axis }, () => ({ lit: 1 }));
      const g = this.input([{ like: x, axis }, ...trailing], "f32", [0.5, 1.5]);
      y = this.add({ k: "binary", f: "mul", a: y, b: g }, [-1.5 * bound, 1.5 * bound]);
    }
  }

  mlp(): void {
    const h = this.matmul();
    const rh = this.range(h);
    const bias = this.input([{ like: h, axis: this.rank(h) - 1 }], "f32", [-0.5, 0.5]);
    const hb = this.add({ k: "binary", f: "add", a: h, b: bias }, [rh[0] - 0.5, rh[1] + 0.5]);
    const act = this.of<Unary>(["gelu", "relu", "silu", "tanh"]);
    const ha = this.add(
      { k: "unary", f: act, x: hb },
      act === "tanh" ? [-1, 1] : [-0.3, Math.max(0, rh[1] + 0.5)],
    );
    const K = this.shape(ha)[this.rank(ha) - 1];
    const s = round3(Math.min(1, 2 / Math.sqrt(K)));
    const w2 = this.input([{ like: ha, axis: this.rank(ha) - 1 }, this.smallDim()], "f32", [-s, s]);
    const R = K * mag(this.range(ha)) * s;
    this.add({ k: "matmul", a: ha, b: w2 }, [-R, R]);
  }

  attention(): void {
    const q = this.pick((i) => this.isF(i) && this.rank(i) >= 2 && mag(this.range(i)) <= 4);
    const sq = this.shape(q);
    const D = sq[sq.length - 1];
    const k = this.chance(0.5) ? q : this.input(this.dimsOf(q), "f32", [-1, 1]);
    const kt = this.add({
      k: "permute",
      x: k,
      perm: [sq.length - 2, sq.length - 1],
      form: "swapAxes",
    }, this.range(k));
    const S = sq[sq.length - 2];
    if (S * S * D * numel(sq.slice(0, -2)) > MAX_MACS) throw new Skip();
    const R = D * mag(this.range(q)) * mag(this.range(k));
    const s = this.add({ k: "matmul", a: q, b: kt }, [-R, R]);
    const c = round3(1 / Math.sqrt(D));
    const ss = this.add({ k: "scalar", f: "mul", x: s, c, swap: false }, [-R * c, R * c]);
    const p = this.add({ k: "softmax", f: "softmax", x: ss, axis: -1 }, [0, 1]);
    const v = this.input(this.dimsOf(q), "f32", [-1, 1]);
    this.add({ k: "matmul", a: p, b: v }, [-1, 1]);
  }

  routing(): void {
    const logits = this.pick((i) => this.isF(i) && this.rank(i) >= 1 && mag(this.range(i)) <= 30);
    const rank = this.rank(logits);
    const p = this.add({ k: "softmax", f: "softmax", x: logits, axis: -1 }, [0, 1]);
    const kk = this.of([1, 2, 4]);
    const vals = this.add({ k: "topk", x: p, kk, part: "values" }, [0, 1]);
    const idx = this.add({ k: "topk", x: p, kk, part: "indices" }, [
      0,
      this.shape(p)[rank - 1] - 1,
    ]);
    const total = this.add({ k: "reduce", f: "sum", x: vals, axes: [rank - 1], keepdims: true }, [
      0,
      1,
    ]);
    // The top probability of a softmax row is at least 1/n: dividing by the sum is safe.
    const w = this.add({ k: "binary", f: "div", a: vals, b: total }, [0, 1]);
    const other = this.chance(0.5) ? logits : this.likeInput(logits, [-1, 1]);
    const picked = this.add(
      { k: "gather", x: other, axis: rank - 1, index: idx },
      this.range(other),
    );
    this.add({ k: "binary", f: "mul", a: picked, b: w }, [
      -mag(this.range(other)),
      mag(this.range(other)),
    ]);
  }

  crossEntropy(): void {
    const x = this.pick((i) => this.isF(i) && this.rank(i) >= 1 && mag(this.range(i)) <= 30);
    const rank = this.rank(x);
    const [lo, hi] = this.range(x);
    const n = this.shape(x)[rank - 1];
    const ls = this.add({ k: "softmax", f: "logSoftmax", x, axis: -1 }, [lo - hi - Math.log(n), 0]);
    const dims = this.dimsOf(x);
    dims[rank - 1] = { lit: 1 };
    const labels = this.index(dims, { like: x, axis: rank - 1 });
    const picked = this.add({ k: "gather", x: ls, axis: rank - 1, index: labels }, this.range(ls));
    this.add({ k: "reduce", f: "mean", x: picked, axes: null, keepdims: false }, this.range(ls));
  }

  residual(): void {
    const x = this.pick((i) => this.isF(i) && mag(this.range(i)) <= 100);
    const r = this.range(x);
    const f = this.add({ k: "unary", f: this.of<Unary>(["tanh", "sin", "sigmoid"]), x }, [-1, 1]);
    const g = this.add({ k: "scalar", f: "mul", x: f, c: 0.5, swap: false }, [-0.5, 0.5]);
    this.add({ k: "binary", f: "add", a: x, b: g }, [r[0] - 0.5, r[1] + 0.5]);
  }
}
