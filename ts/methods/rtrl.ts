// Real-time recurrent learning (Williams & Zipser 1989) for the sequence model's LSTM core:
// exact, untruncated gradients by carrying the sensitivities of the state w.r.t. the core's
// weights forward through time. The rule and its cost: docs/methods/rtrl.md.
//
// Per example, J_h = ∂h_t/∂θ and J_c = ∂c_t/∂θ ([H, P] each, θ as in ./lstm-host.ts). One step:
//   M = ∂a_t/∂θ = W_h J_h(t-1) + (the immediate term: row r of θ's block r gets z_t)   [4H, P]
//   J_c(t)[u] = σ'(f_u) c_(t-1),u M[f_u] + σ(f_u) J_c(t-1)[u] + σ'(i_u) g_u M[i_u] + σ(i_u) g'_u M[g_u]
//   J_h(t)[u] = σ'(o_u) tanh(c_t,u) M[o_u] + σ(o_u) (1 − tanh²(c_t,u)) J_c(t)[u]
// and a scored step adds Σ_u ∂L_t/∂h_t,u · J_h(t)[u] to the gradient. A reset zeroes the state
// and both sensitivities (the zero state does not depend on θ). The weights are fixed within a
// window (one optimizer step per window, as the other recurrent methods); across windows the
// sensitivities carry over computed with the older weights, as RTRL run online does.
//
// Cost: W_h J_h is 4H·H·P multiply-adds per example and step, P = 4H(I + H + 1), i.e. of order
// 16H⁴; the sensitivities take 2H·P numbers per example. That limits RTRL to small cores:
// RTRL_MAX_HIDDEN (see rtrlCost for the figures a refused size is given).
import { rangeError } from '../errors';
import { ForwardModeLearner, HostGradients, HostWeights, HostWindow, coreParameterCount, lstmStep, readoutStep } from './lstm-host';

/** The largest LSTM RTRL accepts (at 10 input symbols: P = 5,504, 0.35M sensitivities and 23M multiply-adds per example and step). */
export const RTRL_MAX_HIDDEN = 32;

/** RTRL's size per example: P, the sensitivities carried, and the multiply-adds of one step. */
export function rtrlCost(inputs: number, hidden: number): { parameters: number; sensitivities: number; multiplyAdds: number } {
  const parameters = coreParameterCount(inputs, hidden);
  return { parameters, sensitivities: 2 * hidden * parameters, multiplyAdds: 4 * hidden * hidden * parameters };
}

/** Throws, naming the size and its cost, when an LSTM of `hidden` units is too large for RTRL. */
export function checkRtrlSize(owner: string, inputs: number, hidden: number): void {
  if (hidden <= RTRL_MAX_HIDDEN) return;
  const cost = rtrlCost(inputs, hidden);
  throw rangeError(
    `${owner}: RTRL's cost grows as the fourth power of the state: an LSTM of ${hidden} units (${inputs} inputs) has ` +
      `P = ${cost.parameters.toLocaleString('en-US')} core weights, so each example carries 2H·P = ${cost.sensitivities.toLocaleString('en-US')} ` +
      `sensitivities (${((cost.sensitivities * 8) / 2 ** 20).toFixed(0)} MiB in float64) and costs 4H²·P = ${cost.multiplyAdds.toExponential(2)} ` +
      `multiply-adds per step; RTRL runs at hidden <= ${RTRL_MAX_HIDDEN} (use 'uoro' for a larger core)`,
  );
}

export class RtrlLSTM implements ForwardModeLearner {
  readonly method = 'rtrl';
  h = new Float64Array(0);
  c = new Float64Array(0);
  /** ∂h/∂θ and ∂c/∂θ per example, [B, H, P] */
  private jh = new Float64Array(0);
  private jc = new Float64Array(0);
  private batch = 0;
  /** the sensitivities are zero (after a reset): the dense W_h J_h product can be skipped */
  private zero = true;
  private readonly P: number;

  constructor(
    readonly inputs: number,
    readonly hidden: number,
  ) {
    checkRtrlSize('rtrl', inputs, hidden);
    this.P = coreParameterCount(inputs, hidden);
  }

  reset(batch: number): void {
    const n = batch * this.hidden;
    this.batch = batch;
    this.h = new Float64Array(n);
    this.c = new Float64Array(n);
    this.jh = new Float64Array(n * this.P);
    this.jc = new Float64Array(n * this.P);
    this.zero = true;
  }

  setState(h: Float64Array, c: Float64Array): void {
    this.reset(h.length / this.hidden);
    this.h.set(h);
    this.c.set(c);
  }

  window(w: HostWeights, window: HostWindow, grads: HostGradients): number {
    const { inputs: I, hidden: H } = w;
    const P = this.P;
    const K = I + H + 1;
    const B = window.inputs[0].length;
    if (B !== this.batch) this.reset(B);
    const HP = H * P;
    const M = new Float64Array(4 * H * P);
    const jcNext = new Float64Array(HP);
    let loss = 0;
    for (let t = 0; t < window.inputs.length; t++) {
      if (window.resets[t]) this.reset(B);
      const s = lstmStep(w, window.inputs[t], this.h, this.c);
      const labels = window.targets[t];
      const read = labels ? readoutStep(w, s.h, labels, grads) : undefined;
      if (read) loss += read.loss;
      for (let e = 0; e < B; e++) {
        const jh = this.jh.subarray(e * HP, (e + 1) * HP);
        const jc = this.jc.subarray(e * HP, (e + 1) * HP);
        // M = W_h J_h(t-1), then the immediate term.
        M.fill(0);
        for (let row = 0; row < 4 * H; row++) {
          const m = M.subarray(row * P, (row + 1) * P);
          for (let j = 0; j < H && !this.zero; j++) {
            const wv = w.W[row * (I + H) + I + j];
            const src = jh.subarray(j * P, (j + 1) * P);
            for (let p = 0; p < P; p++) m[p] += wv * src[p];
          }
          for (let k = 0; k < K; k++) m[row * K + k] += s.z[e * K + k];
        }
        const g = s.gates.subarray(e * 4 * H, (e + 1) * 4 * H);
        for (let u = 0; u < H; u++) {
          const n = e * H + u;
          const i = g[u];
          const f = g[H + u];
          const gg = g[2 * H + u];
          const o = g[3 * H + u];
          const kf = f * (1 - f) * s.cPrev[n];
          const ki = i * (1 - i) * gg;
          const kg = i * (1 - gg * gg);
          const ko = o * (1 - o) * s.tanhC[n];
          const kc = o * (1 - s.tanhC[n] * s.tanhC[n]);
          const mi = u * P;
          const mf = (H + u) * P;
          const mg = (2 * H + u) * P;
          const mo = (3 * H + u) * P;
          const base = u * P;
          for (let p = 0; p < P; p++) {
            const dc = kf * M[mf + p] + f * jc[base + p] + ki * M[mi + p] + kg * M[mg + p];
            jcNext[base + p] = dc;
            jh[base + p] = ko * M[mo + p] + kc * dc;
          }
        }
        jc.set(jcNext);
        if (read) {
          for (let u = 0; u < H; u++) {
            const d = read.dh[e * H + u];
            if (d === 0) continue;
            const base = u * P;
            for (let p = 0; p < P; p++) grads.theta[p] += d * jh[base + p];
          }
        }
      }
      this.h = s.h;
      this.c = s.c;
      this.zero = false;
    }
    return loss;
  }
}
