// The LSTM layer: a recurrent core over sequences given as one [B, F] tensor per time step.
//
// Sequences are a list of per-step [B, F] tensors, not one [T, B, F] tensor: each step's GEMM
// needs the previous step's h, so the steps run one after another anyway, and a list lets a
// window of any length (and a state carried in from the previous window) be handled without
// slicing ops. The state (h, c) is a pair of [B, H] tensors carried from window to window.
//
// One step: gates = [x_t, h_{t-1}] Wᵀ + b (one GEMM, W [4H, I+H], gate blocks i | f | g | o),
// then the fused cell op: c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t).
// Initialisation: W ~ U(-1/√H, 1/√H) (PyTorch's nn.LSTM); b = 0 except the forget block,
// b_f = forgetBias (default 1, Gers et al. 2000; Jozefowicz et al. 2015): σ(1) ≈ 0.73 keeps
// the cell's memory mostly open at the start, so gradients reach back over many steps before
// the network has learned when to forget (with b_f = 0 the cell halves every step).
//
// Backward through a window (truncated BPTT): given the gradient w.r.t. every step's output h_t
// (the read-out's, undefined where a step is not scored) and the gradient arriving at the
// window's final state (undefined: zero, plain truncated BPTT; a synthetic gradient for DNI),
// it ACCUMULATES (+=) into W and b's gradients and returns the gradient w.r.t. the state the
// window started from (what DNI's synthesizer regresses onto) and, when asked, w.r.t. each
// step's input. A reset step (the state zeroed before it) cuts the gradient there: nothing
// flows into the steps before it, and a window that starts with a reset returns zeros.
import { positiveInt, checkOptions, numberOption } from '../check';
import { Device } from '../device';
import * as ops from '../ops';
import { Random } from '../random';
import { Tensor } from '../tensor';
import { Parameter, StepContext } from './module';
import { rangeError, typeError } from '../errors';

/** The recurrent state: h and c, each [B, H]. */
export interface LSTMState {
  readonly h: Tensor;
  readonly c: Tensor;
}

/** A gradient w.r.t. a state; an undefined part is zero. */
export interface LSTMStateGradient {
  readonly h?: Tensor;
  readonly c?: Tensor;
}

export interface LSTMOptions {
  /** the forget gate's initial bias; default 1 (see the file comment) */
  forgetBias?: number;
}

/** One step's forward pass, with what its backward needs. */
interface StepSaved {
  xh: Tensor;
  gates: Tensor;
  cPrev: Tensor;
  c: Tensor;
}

export interface LSTMWindowForward {
  /** h_t for every step */
  readonly outputs: Tensor[];
  /** the state after the last step */
  readonly state: LSTMState;
  /**
   * Backpropagates through the window: `dOutputs[t]` is the gradient w.r.t. h_t (undefined:
   * none), `dFinal` the gradient arriving at the final state. Accumulates into the parameters'
   * gradients; returns the gradient w.r.t. the initial state (both parts always present) and,
   * when `needInputGrad`, w.r.t. each step's input.
   */
  backward(
    dOutputs: readonly (Tensor | undefined)[],
    dFinal: LSTMStateGradient | undefined,
    ctx: StepContext,
    needInputGrad?: boolean,
  ): { dState: LSTMState; dInputs?: Tensor[] };
}

/** An output tensor the op that follows overwrites, made in ctx.arena. */
function empty(ctx: StepContext, shape: number[]): Tensor {
  return Tensor.empty(shape, { device: ctx.device, arena: ctx.arena });
}

export class LSTM {
  readonly name: string;
  readonly forgetBias: number;
  weight?: Parameter;
  bias?: Parameter;

  constructor(
    readonly inputSize: number,
    readonly hiddenSize: number,
    options: LSTMOptions = {},
  ) {
    positiveInt('LSTM', 'inputSize', inputSize);
    positiveInt('LSTM', 'hiddenSize', hiddenSize);
    checkOptions('LSTM', options, ['forgetBias']);
    this.forgetBias = numberOption('LSTM', 'forgetBias', options.forgetBias, 1);
    if (!Number.isFinite(this.forgetBias)) throw rangeError(`LSTM: 'forgetBias' must be a finite number, got ${this.forgetBias}`);
    this.name = `LSTM(${inputSize}→${hiddenSize})`;
  }

  initialize(device: Device, rng: Random): void {
    this.dispose();
    const H = this.hiddenSize;
    const cols = this.inputSize + H;
    const bound = 1 / Math.sqrt(H);
    this.weight = Parameter.create(`${this.name}.weight`, rng.uniformArray(4 * H * cols, -bound, bound), [4 * H, cols], device);
    const b = new Float32Array(4 * H);
    b.fill(this.forgetBias, H, 2 * H); // blocks i | f | g | o
    this.bias = Parameter.create(`${this.name}.bias`, b, [4 * H], device);
  }

  parameters(): Parameter[] {
    return [this.weight, this.bias].filter((p): p is Parameter => p !== undefined);
  }

  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    this.weight = this.bias = undefined;
  }

  /** A zero state for `batch` rows, made in ctx.arena. */
  zeroState(batch: number, ctx: StepContext): LSTMState {
    return { h: ops.full(ctx, [batch, this.hiddenSize], 0), c: ops.full(ctx, [batch, this.hiddenSize], 0) };
  }

  /** Checks a state against the layer: two float32 [batch, H] tensors on the context's device. */
  checkState(owner: string, state: LSTMState, batch: number, ctx: StepContext): void {
    if (state === null || typeof state !== 'object') throw typeError(`${owner}: 'state' must be { h, c }, got ${String(state)}`);
    for (const key of ['h', 'c'] as const) {
      const t = state[key];
      if (!(t instanceof Tensor)) throw typeError(`${owner}: 'state.${key}' must be a Tensor`);
      if (t.dtype !== 'float32' || t.shape.length !== 2 || t.shape[0] !== batch || t.shape[1] !== this.hiddenSize)
        throw rangeError(`${owner}: 'state.${key}' must be float32 [${batch}, ${this.hiddenSize}], got ${t.dtype} [${t.shape.join(', ')}]`);
      if (!t.device.equals(ctx.device))
        throw typeError(`${owner}: 'state.${key}' is on ${t.device.name}, the layer runs on ${ctx.device.name}`);
    }
  }

  /**
   * Runs the window's steps from `state` (zeroed before every step t with resets[t]).
   * `inputs[t]` is x_t, float32 [B, inputSize].
   */
  forward(inputs: readonly Tensor[], state: LSTMState, ctx: StepContext, resets?: readonly boolean[]): LSTMWindowForward {
    const weight = this.weight;
    const bias = this.bias;
    if (!weight || !bias) throw typeError(`${this.name}: used before initialize(device, rng)`);
    if (!Array.isArray(inputs) || inputs.length === 0)
      throw rangeError(`${this.name}: 'inputs' must be a non-empty array of per-step tensors`);
    const batch = inputs[0].shape[0];
    this.checkState(this.name, state, batch, ctx);
    if (resets !== undefined && (!Array.isArray(resets) || resets.length !== inputs.length))
      throw rangeError(
        `${this.name}: 'resets' must have one flag per step (${inputs.length}), got ${Array.isArray(resets) ? resets.length : String(resets)}`,
      );
    inputs.forEach((x, t) => {
      if (!(x instanceof Tensor) || x.dtype !== 'float32' || x.shape.length !== 2 || x.shape[0] !== batch || x.shape[1] !== this.inputSize)
        throw rangeError(
          `${this.name}: 'inputs[${t}]' must be float32 [${batch}, ${this.inputSize}], got ${x instanceof Tensor ? `${x.dtype} [${x.shape.join(', ')}]` : String(x)}`,
        );
    });
    const H = this.hiddenSize;
    const saved: StepSaved[] = [];
    const outputs: Tensor[] = [];
    let h = state.h;
    let c = state.c;
    for (let t = 0; t < inputs.length; t++) {
      if (resets?.[t]) ({ h, c } = this.zeroState(batch, ctx));
      const xh = ops.concatColumns(ctx, inputs[t], h);
      const gates = ops.linear(ctx, xh, weight.value, bias.value); // pre-activations, replaced by activations below
      const { c: cNext, h: hNext } = ops.lstmCellForward(ctx, gates, c);
      saved.push({ xh, gates, cPrev: c, c: cNext });
      outputs.push(hNext);
      h = hNext;
      c = cNext;
    }
    return {
      outputs,
      state: { h, c },
      backward: (dOutputs, dFinal, bctx, needInputGrad = false) => {
        if (!Array.isArray(dOutputs) || dOutputs.length !== inputs.length)
          throw rangeError(
            `${this.name}: 'dOutputs' must have one entry per step (${inputs.length}), got ${Array.isArray(dOutputs) ? dOutputs.length : String(dOutputs)}`,
          );
        const dInputs: Tensor[] = [];
        // dh, dc: the gradient w.r.t. the state after step t (from later steps, or dFinal).
        let dh: Tensor | undefined = dFinal?.h;
        let dc: Tensor | undefined = dFinal?.c;
        for (let t = inputs.length - 1; t >= 0; t--) {
          const s = saved[t];
          const dOut = dOutputs[t];
          let dhTotal: Tensor | undefined = dh;
          if (dOut) {
            if (dhTotal) {
              dhTotal = ops.clone(bctx, dhTotal);
              ops.axpby(bctx, 1, dOut, 1, dhTotal);
            } else {
              dhTotal = dOut;
            }
          }
          const cut = resets?.[t] === true; // the state before step t was zeroed: no gradient flows past it
          if (!dhTotal && !dc) {
            // Nothing reaches this step (e.g. unscored steps at the end of a BPTT window).
            if (needInputGrad) dInputs[t] = ops.full(bctx, [batch, this.inputSize], 0);
            dh = dc = undefined;
            continue;
          }
          const dhStep = dhTotal ?? ops.full(bctx, [batch, H], 0);
          const { dgates, dcPrev } = ops.lstmCellBackward(bctx, s.gates, s.cPrev, s.c, dhStep, dc ?? null);
          ops.gemm(bctx, dgates, s.xh, weight.grad, true, false, 1, 1); // dW += dgatesᵀ [x, h]
          ops.biasBackward(bctx, dgates, bias.grad);
          const needPrev = !cut;
          if (needPrev || needInputGrad) {
            const dxh = ops.matmul(bctx, dgates, weight.value); // [B, I+H]
            const dx = needInputGrad ? empty(bctx, [batch, this.inputSize]) : null;
            const dhPrev = needPrev ? empty(bctx, [batch, H]) : null;
            ops.splitColumns(bctx, dxh, dx, dhPrev);
            if (dx) dInputs[t] = dx;
            dh = dhPrev ?? undefined;
          }
          dc = cut ? undefined : dcPrev;
          if (cut) dh = undefined;
        }
        const dState: LSTMState = {
          h: dh ?? ops.full(bctx, [batch, H], 0),
          c: dc ?? ops.full(bctx, [batch, H], 0),
        };
        return needInputGrad ? { dState, dInputs } : { dState };
      },
    };
  }
}
