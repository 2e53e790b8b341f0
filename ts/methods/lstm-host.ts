// The sequence model's LSTM step and read-out on the host, in float64, for the forward-mode
// methods (RTRL, UORO: ./rtrl.ts, ./uoro.ts), which carry derivatives of the state w.r.t. the
// core's weights from step to step instead of backpropagating through a stored window.
//
// Why the host: the forward-mode recursions scale each sensitivity row by a per-unit, per-example
// gate factor and mix the four gate rows of a unit (below); no op does that, and each step needs
// the read-out's gradient before the next one can be folded in, so a device path would be a
// round trip per step. Float64 also makes RTRL's gradient exact to rounding (its check against
// full BPTT is to 1e-5). The computation is the one ../nn/lstm.ts and ../recurrent/model.ts make
// on the device: gates a = W [x; h] + b (blocks i | f | g | o), c' = σ(f) c + σ(i) tanh(g),
// h' = σ(o) tanh(c'), logits = R h' + r, softmax cross-entropy per scored row divided by the
// batch (rows not scored count in the divisor, as the op does).
//
// The core's parameters as one vector θ of P = 4H·K entries, K = I + H + 1: entry (r, k) = r·K + k
// is W[r, k] for k < I + H and b[r] for k = I + H, so that a_r = Σ_k θ_(r,k) z_k with
// z = [x; h; 1]. hostGradientToLSTM splits it back into W and b.

/** The weights of an LSTMSequenceModel, as float64 host arrays. */
export interface HostWeights {
  /** I: one-hot input width */
  readonly inputs: number;
  /** H */
  readonly hidden: number;
  /** read-out width */
  readonly outputs: number;
  /** [4H, I + H], gate blocks i | f | g | o */
  readonly W: Float64Array;
  /** [4H] */
  readonly b: Float64Array;
  /** read-out [outputs, H] */
  readonly R: Float64Array;
  /** read-out bias [outputs] */
  readonly r: Float64Array;
}

/** Gradients of a window's loss; θ is the core's, laid out as in the file comment. */
export interface HostGradients {
  /** [P] = [4H·K] */
  readonly theta: Float64Array;
  /** [outputs, H] */
  readonly R: Float64Array;
  /** [outputs] */
  readonly r: Float64Array;
}

/** One step's values for a batch, each row-major per example. */
export interface HostStep {
  /** z = [x; h_prev; 1] per example, [B, K] */
  readonly z: Float64Array;
  /** the gates' activations σ(i), σ(f), tanh(g), σ(o), [B, 4H] */
  readonly gates: Float64Array;
  readonly cPrev: Float64Array;
  readonly c: Float64Array;
  /** tanh(c), [B, H] */
  readonly tanhC: Float64Array;
  readonly h: Float64Array;
}

/** K = I + H + 1: the width of z, and θ's entries per gate row. */
export function rowWidth(w: { inputs: number; hidden: number }): number {
  return w.inputs + w.hidden + 1;
}

/** P = 4H·K: the core's parameters. */
export function coreParameterCount(inputs: number, hidden: number): number {
  return 4 * hidden * (inputs + hidden + 1);
}

export function zeroGradients(w: HostWeights): HostGradients {
  return {
    theta: new Float64Array(coreParameterCount(w.inputs, w.hidden)),
    R: new Float64Array(w.outputs * w.hidden),
    r: new Float64Array(w.outputs),
  };
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** One LSTM step for every example: symbols `ids` [B], from (hPrev, cPrev) [B, H] each. */
export function lstmStep(w: HostWeights, ids: Int32Array, hPrev: Float64Array, cPrev: Float64Array): HostStep {
  const { inputs: I, hidden: H } = w;
  const B = ids.length;
  const K = I + H + 1;
  const z = new Float64Array(B * K);
  const gates = new Float64Array(B * 4 * H);
  const c = new Float64Array(B * H);
  const tanhC = new Float64Array(B * H);
  const h = new Float64Array(B * H);
  for (let e = 0; e < B; e++) {
    const zs = z.subarray(e * K, (e + 1) * K);
    zs[ids[e]] = 1;
    for (let j = 0; j < H; j++) zs[I + j] = hPrev[e * H + j];
    zs[K - 1] = 1;
    const gs = gates.subarray(e * 4 * H, (e + 1) * 4 * H);
    for (let row = 0; row < 4 * H; row++) {
      const wr = row * (I + H);
      let a = w.b[row] + w.W[wr + ids[e]];
      for (let j = 0; j < H; j++) a += w.W[wr + I + j] * zs[I + j];
      gs[row] = row >= 2 * H && row < 3 * H ? Math.tanh(a) : sigmoid(a);
    }
    for (let u = 0; u < H; u++) {
      const n = e * H + u;
      c[n] = gs[H + u] * cPrev[n] + gs[u] * gs[2 * H + u];
      tanhC[n] = Math.tanh(c[n]);
      h[n] = gs[3 * H + u] * tanhC[n];
    }
  }
  return { z, gates, cPrev, c, tanhC, h };
}

/**
 * The read-out's loss on h [B, H] against `labels` [B] (-1: not scored): returns the loss (the
 * mean over B of the scored rows' cross-entropy) and dL/dh [B, H], accumulating R's and r's
 * gradients into `grads`.
 */
export function readoutStep(w: HostWeights, h: Float64Array, labels: Int32Array, grads: HostGradients): { loss: number; dh: Float64Array } {
  const { hidden: H, outputs: O } = w;
  const B = labels.length;
  const dh = new Float64Array(B * H);
  const logits = new Float64Array(O);
  let loss = 0;
  for (let e = 0; e < B; e++) {
    const label = labels[e];
    if (label < 0) continue;
    let max = -Infinity;
    for (let o = 0; o < O; o++) {
      let v = w.r[o];
      for (let j = 0; j < H; j++) v += w.R[o * H + j] * h[e * H + j];
      logits[o] = v;
      max = Math.max(max, v);
    }
    let sum = 0;
    for (let o = 0; o < O; o++) sum += Math.exp(logits[o] - max);
    loss += (max + Math.log(sum) - logits[label]) / B;
    for (let o = 0; o < O; o++) {
      const d = (Math.exp(logits[o] - max) / sum - (o === label ? 1 : 0)) / B; // dL/dlogit
      grads.r[o] += d;
      for (let j = 0; j < H; j++) {
        grads.R[o * H + j] += d * h[e * H + j];
        dh[e * H + j] += d * w.R[o * H + j];
      }
    }
  }
  return { loss, dh };
}

/**
 * The window's inputs as the forward-mode methods take them: per step, the symbols, the labels
 * (undefined: the step is not scored) and whether the state is zeroed before it.
 */
export interface HostWindow {
  readonly inputs: readonly Int32Array[];
  readonly targets: readonly (Int32Array | undefined)[];
  readonly resets: readonly boolean[];
}

/** A symbol window (time-major, -1 = not scored) split into steps. */
export function hostWindow(window: {
  steps: number;
  batch: number;
  inputs: Int32Array;
  targets: Int32Array;
  resets: readonly boolean[];
}): HostWindow {
  const { steps, batch } = window;
  const inputs: Int32Array[] = [];
  const targets: (Int32Array | undefined)[] = [];
  for (let t = 0; t < steps; t++) {
    inputs.push(window.inputs.slice(t * batch, (t + 1) * batch));
    const labels = window.targets.slice(t * batch, (t + 1) * batch);
    targets.push(labels.some((v) => v !== -1) ? labels : undefined);
  }
  return { inputs, targets, resets: window.resets };
}

/** θ's gradient split into W's [4H, I + H] and b's [4H], as float32 (the device's parameters). */
export function hostGradientToLSTM(theta: Float64Array, inputs: number, hidden: number): { W: Float32Array; b: Float32Array } {
  const K = inputs + hidden + 1;
  const W = new Float32Array(4 * hidden * (K - 1));
  const b = new Float32Array(4 * hidden);
  for (let row = 0; row < 4 * hidden; row++) {
    for (let k = 0; k < K - 1; k++) W[row * (K - 1) + k] = theta[row * K + k];
    b[row] = theta[row * K + K - 1];
  }
  return { W, b };
}

/**
 * A method that learns the core online: it keeps the state (and what it carries about the
 * state's dependence on θ) from window to window, and gives each window's gradient.
 */
export interface ForwardModeLearner {
  /** 'rtrl' or 'uoro' */
  readonly method: string;
  /** the state after the last window, [B, H] each (zeros after reset) */
  readonly h: Float64Array;
  readonly c: Float64Array;
  /** Starts a new stream of `batch` sequences: zero state, nothing carried. */
  reset(batch: number): void;
  /** Starts from a given state, with no dependence on θ carried (it is taken as a constant). */
  setState(h: Float64Array, c: Float64Array): void;
  /**
   * Runs the window's steps with the weights fixed, adds the gradient of the window's loss
   * w.r.t. the weights (through the whole history, exact or estimated) to `grads`, and
   * returns the window's loss (the sum over steps of each step's batch-mean cross-entropy).
   */
  window(w: HostWeights, window: HostWindow, grads: HostGradients): number;
}
