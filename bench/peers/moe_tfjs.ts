/**
 * The MoE layer written the straightforward way in TensorFlow.js (WebGPU backend), as a user
 * would: router softmax, top-k read to the host, per expert gather → matMul → GELU → matMul ×
 * gate → unsortedSegmentSum, gradients with tf.grads. Same math as moejit's layer (GELU experts,
 * unnormalised top-k weights). Benchmark code only.
 */
import { tfjs } from "./tfjs.ts";

type TF = Awaited<ReturnType<typeof tfjs>>;
type T = ReturnType<TF["tensor"]>;

export interface MoeShape {
  T: number;
  d: number;
  E: number;
  f: number;
  k: number;
}

export async function tfMoe(s: MoeShape) {
  const tf = await tfjs();
  const x = tf.randomNormal([s.T, s.d]);
  const router = tf.randomNormal([s.E, s.d], 0, 0.1);
  const up = tf.randomNormal([s.E, s.f, s.d], 0, 0.05);
  const down = tf.randomNormal([s.E, s.d, s.f], 0, 0.05);
  const upT = tf.unstack(up).map((w) => w.transpose()); // [d, f] each
  const downT = tf.unstack(down).map((w) => w.transpose()); // [f, d] each
  const probe = tf.randomNormal([s.T, s.d]);

  /** Routing decided on the host, as users of TF.js do. */
  async function routing() {
    const scores = tf.softmax(tf.matMul(x, router, false, true));
    const { indices } = tf.topk(scores, s.k);
    const idx = await indices.data();
    scores.dispose();
    indices.dispose();
    const lists: number[][] = Array.from({ length: s.E }, () => []);
    const slots: number[][] = Array.from({ length: s.E }, () => []);
    for (let t = 0; t < s.T; t++) {
      for (let j = 0; j < s.k; j++) {
        lists[idx[t * s.k + j]].push(t);
        slots[idx[t * s.k + j]].push(t * s.E + idx[t * s.k + j]);
      }
    }
    return { lists, slots };
  }

  function forward(
    xv: T,
    routerV: T,
    ups: T[],
    downs: T[],
    lists: number[][],
    slots: number[][],
  ): T {
    const scores = tf.softmax(tf.matMul(xv, routerV, false, true)).reshape([s.T * s.E]);
    const parts: T[] = [], ids: T[] = [];
    for (let e = 0; e < s.E; e++) {
      if (!lists[e].length) continue;
      const tok = tf.tensor1d(lists[e], "int32");
      const xe = tf.gather(xv, tok);
      const h = tf.matMul(xe, ups[e]);
      const g = tf.mul(tf.mul(h, 0.5), tf.add(tf.erf(tf.mul(h, Math.SQRT1_2)), 1));
      const gate = tf.gather(scores, tf.tensor1d(slots[e], "int32")).reshape([-1, 1]);
      parts.push(tf.mul(tf.matMul(g, downs[e]), gate));
      ids.push(tok);
    }
    return tf.unsortedSegmentSum(
      tf.concat(parts),
      tf.concat(ids) as ReturnType<TF["tensor1d"]>,
      s.T,
    );
  }

  return {
    async fwd(): Promise<number> {
      const { lists, slots } = await routing();
      const y = tf.tidy(() => tf.sum(tf.mul(forward(x, router, upT, downT, lists, slots), probe)));
      const v = (await y.data())[0];
      y.dispose();
      return v;
    },
    async fwdBwd(): Promise<number> {
      const { lists, slots } = await routing();
      const f = (xv: T, rv: T, ...ws: T[]) =>
        tf.sum(tf.mul(forward(xv, rv, ws.slice(0, s.E), ws.slice(s.E), lists, slots), probe));
      const { value, grads } = tf.valueAndGrads(f as never)([x, router, ...upT, ...downT]);
      // Read the loss and one gradient norm, as a training step would.
      const gn = tf.tidy(() => tf.addN([tf.sum(tf.square(grads[0])), tf.sum(tf.square(grads[1]))]));
      const v = (await value.data())[0] + (await gn.data())[0] * 0;
      value.dispose();
      gn.dispose();
      for (const g of grads) g.dispose();
      return v;
    },
  };
}
