// Unbiased Online Recurrent Optimization (Tallec & Ollivier, ICLR 2018) for the sequence model's
// LSTM core: RTRL's sensitivity ∂s_t/∂θ replaced by a random rank-one estimate s̃_t θ̃_tᵀ whose
// expectation is the true sensitivity. The rule: docs/methods/uoro.md.
//
// Per example (the state s = [h; c], 2H wide; θ as in ./lstm-host.ts), one step s_t = F(x_t, s_(t-1), θ):
//   s̃' = (∂F/∂s) s̃                  forward-mode: the tangent carried one step
//   ν  = 2H independent random signs ±1
//   θ̃' = νᵀ ∂F/∂θ                    reverse-mode through this one step only
//   ρ0 = √((‖θ̃‖ + ε) / (‖s̃'‖ + ε)),  ρ1 = √((‖θ̃'‖ + ε) / (‖ν‖ + ε))
//   s̃ ← ρ0 s̃' + ρ1 ν,   θ̃ ← θ̃ / ρ0 + θ̃' / ρ1
// and a scored step adds (∂L_t/∂s_t · s̃) θ̃ to the gradient. Since E[ν νᵀ] = 1 and ρ0, ρ1 are even
// functions of ν, E[s̃ θ̃ᵀ] follows the exact sensitivity's recursion: unbiased. The ρ's make the
// two terms' norms equal, which minimises the variance of the estimate among such rescalings
// (the paper's Proposition 1). Cost per example and step: O(H² + P), as a step of backprop. A reset
// zeroes the state, s̃ and θ̃. The read-out's gradient is exact (it is not recurrent).
import { Random } from '../random';
import { ForwardModeLearner, HostGradients, HostWeights, HostWindow, coreParameterCount, lstmStep, readoutStep } from './lstm-host';

/** ε of ρ0 and ρ1: keeps them finite when a norm is 0 (e.g. θ̃ = 0 after a reset). */
export const UORO_EPSILON = 1e-7;

const norm = (v: Float64Array) => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
};

export class UoroLSTM implements ForwardModeLearner {
  readonly method = 'uoro';
  h = new Float64Array(0);
  c = new Float64Array(0);
  /** s̃ per example, [B, 2H] ([h̃, c̃]) */
  private sTilde = new Float64Array(0);
  /** θ̃ per example, [B, P] */
  private thetaTilde = new Float64Array(0);
  private batch = 0;
  private readonly P: number;

  /** `sign()` draws each ν_i (±1): UoroLSTM.signsFrom(rng), or given signs in a test */
  constructor(
    readonly inputs: number,
    readonly hidden: number,
    private readonly sign: () => number,
  ) {
    this.P = coreParameterCount(inputs, hidden);
  }

  /** Random signs from `rng`, each ±1 with probability 1/2. */
  static signsFrom(rng: Random): () => number {
    return () => (rng.next() < 0.5 ? -1 : 1);
  }

  reset(batch: number): void {
    this.batch = batch;
    this.h = new Float64Array(batch * this.hidden);
    this.c = new Float64Array(batch * this.hidden);
    this.sTilde = new Float64Array(batch * 2 * this.hidden);
    this.thetaTilde = new Float64Array(batch * this.P);
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
    const sNext = new Float64Array(2 * H);
    const nu = new Float64Array(2 * H);
    const da = new Float64Array(4 * H);
    const thetaNew = new Float64Array(P);
    let loss = 0;
    for (let t = 0; t < window.inputs.length; t++) {
      if (window.resets[t]) this.reset(B);
      const s = lstmStep(w, window.inputs[t], this.h, this.c);
      const labels = window.targets[t];
      const read = labels ? readoutStep(w, s.h, labels, grads) : undefined;
      if (read) loss += read.loss;
      for (let e = 0; e < B; e++) {
        const sTilde = this.sTilde.subarray(e * 2 * H, (e + 1) * 2 * H);
        const thetaTilde = this.thetaTilde.subarray(e * P, (e + 1) * P);
        const g = s.gates.subarray(e * 4 * H, (e + 1) * 4 * H);
        const z = s.z.subarray(e * K, (e + 1) * K);
        // s̃' = (∂F/∂s) s̃: the gates' tangent W_h h̃, then the cell's.
        for (let row = 0; row < 4 * H; row++) {
          let v = 0;
          for (let j = 0; j < H; j++) v += w.W[row * (I + H) + I + j] * sTilde[j];
          da[row] = v;
        }
        for (let u = 0; u < H; u++) {
          const n = e * H + u;
          const [i, f, gg, o] = [g[u], g[H + u], g[2 * H + u], g[3 * H + u]];
          const dc =
            f * (1 - f) * s.cPrev[n] * da[H + u] + f * sTilde[H + u] + i * (1 - i) * gg * da[u] + i * (1 - gg * gg) * da[2 * H + u];
          sNext[H + u] = dc;
          sNext[u] = o * (1 - o) * s.tanhC[n] * da[3 * H + u] + o * (1 - s.tanhC[n] * s.tanhC[n]) * dc;
        }
        // θ̃' = νᵀ ∂F/∂θ: ν backpropagated through this step to the gates, times z.
        for (let q = 0; q < 2 * H; q++) nu[q] = this.sign();
        for (let u = 0; u < H; u++) {
          const n = e * H + u;
          const [i, f, gg, o] = [g[u], g[H + u], g[2 * H + u], g[3 * H + u]];
          const dcTotal = nu[H + u] + nu[u] * o * (1 - s.tanhC[n] * s.tanhC[n]);
          da[u] = dcTotal * gg * i * (1 - i);
          da[H + u] = dcTotal * s.cPrev[n] * f * (1 - f);
          da[2 * H + u] = dcTotal * i * (1 - gg * gg);
          da[3 * H + u] = nu[u] * s.tanhC[n] * o * (1 - o);
        }
        for (let row = 0; row < 4 * H; row++) for (let k = 0; k < K; k++) thetaNew[row * K + k] = da[row] * z[k];
        const rho0 = Math.sqrt((norm(thetaTilde) + UORO_EPSILON) / (norm(sNext) + UORO_EPSILON));
        const rho1 = Math.sqrt((norm(thetaNew) + UORO_EPSILON) / (norm(nu) + UORO_EPSILON));
        for (let q = 0; q < 2 * H; q++) sTilde[q] = rho0 * sNext[q] + rho1 * nu[q];
        for (let p = 0; p < P; p++) thetaTilde[p] = thetaTilde[p] / rho0 + thetaNew[p] / rho1;
        if (read) {
          let coef = 0;
          for (let u = 0; u < H; u++) coef += read.dh[e * H + u] * sTilde[u];
          if (coef !== 0) for (let p = 0; p < P; p++) grads.theta[p] += coef * thetaTilde[p];
        }
      }
      this.h = s.h;
      this.c = s.c;
    }
    return loss;
  }
}
