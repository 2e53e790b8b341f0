// A float64 LSTM window with a linear read-out, written out from its definition (see
// ts/nn/lstm.ts and ts/recurrent/model.ts), for the recurrent tests' finite differences and
// hand computations. Matrices are row-major; per-step arrays are [B, F].
export interface LSTMParams {
  /** [4H, I+H], gate blocks i | f | g | o */
  W: ArrayLike<number>;
  /** [4H] */
  b: ArrayLike<number>;
  /** read-out [O, H] and [O] */
  Wr: ArrayLike<number>;
  br: ArrayLike<number>;
}

export interface Dims {
  B: number;
  I: number;
  H: number;
  O: number;
}

export interface WindowSpec {
  /** x_t [B, I] per step */
  xs: ArrayLike<number>[];
  /** labels [B] per step (-1: not scored), or undefined: the step is not scored; softmax */
  labels?: (ArrayLike<number> | undefined)[];
  /** sigmoid targets [B, O] per step (undefined: not scored) instead of labels */
  bits?: (ArrayLike<number> | undefined)[];
  resets?: boolean[];
  h0: ArrayLike<number>;
  c0: ArrayLike<number>;
}

export interface WindowResult {
  /** Σ_t (1/B) Σ_b ℓ_{t,b} */
  loss: number;
  hs: Float64Array[];
  cs: Float64Array[];
  h: Float64Array;
  c: Float64Array;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** The window's forward pass and loss. */
export function lstmWindow(p: LSTMParams, d: Dims, w: WindowSpec): WindowResult {
  const { B, I, H, O } = d;
  let h = Float64Array.from(w.h0);
  let c = Float64Array.from(w.c0);
  let loss = 0;
  const hs: Float64Array[] = [];
  const cs: Float64Array[] = [];
  for (let t = 0; t < w.xs.length; t++) {
    if (w.resets?.[t]) {
      h = new Float64Array(B * H);
      c = new Float64Array(B * H);
    }
    const hn = new Float64Array(B * H);
    const cn = new Float64Array(B * H);
    for (let r = 0; r < B; r++) {
      const xh = [...Array.from({ length: I }, (_, k) => w.xs[t][r * I + k]), ...Array.from({ length: H }, (_, k) => h[r * H + k])];
      const z = new Float64Array(4 * H);
      for (let j = 0; j < 4 * H; j++) {
        let s = p.b[j];
        for (let k = 0; k < I + H; k++) s += p.W[j * (I + H) + k] * xh[k];
        z[j] = s;
      }
      for (let u = 0; u < H; u++) {
        const i = sigmoid(z[u]),
          f = sigmoid(z[H + u]),
          g = Math.tanh(z[2 * H + u]),
          o = sigmoid(z[3 * H + u]);
        cn[r * H + u] = f * c[r * H + u] + i * g;
        hn[r * H + u] = o * Math.tanh(cn[r * H + u]);
      }
    }
    h = hn;
    c = cn;
    hs.push(h);
    cs.push(c);
    const labels = w.labels?.[t];
    const bits = w.bits?.[t];
    if (!labels && !bits) continue;
    for (let r = 0; r < B; r++) {
      if (labels && labels[r] === -1) continue;
      const logits = new Float64Array(O);
      for (let o = 0; o < O; o++) {
        let s = p.br[o];
        for (let u = 0; u < H; u++) s += p.Wr[o * H + u] * h[r * H + u];
        logits[o] = s;
      }
      if (labels) {
        const m = Math.max(...logits);
        const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0));
        loss += (lse - logits[labels[r]]) / B;
      } else {
        for (let o = 0; o < O; o++) {
          const z = logits[o],
            y = bits![r * O + o];
          loss += (Math.max(z, 0) - z * y + Math.log(1 + Math.exp(-Math.abs(z)))) / B;
        }
      }
    }
  }
  return { loss, hs, cs, h, c };
}
