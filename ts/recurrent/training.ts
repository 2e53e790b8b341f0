// Recurrent training over a stream of windows: truncated BPTT, recurrent DNI and DNI + Aux; and
// the forward-mode methods RTRL and UORO (../methods/rtrl.ts, ../methods/uoro.ts), which carry the
// state's dependence on the weights across windows instead (forwardModeWindow, below).
//
// Per window of T steps (one step() call), from the state s_0 = (h_0, c_0) carried out of the
// previous window:
//   1. forward the T steps (zeroing the state before every reset step), read-out losses;
//   2. DNI: ĝ = γ·M(s_T) on the final state, the (discounted) synthetic gradient of every later
//      step's loss;
//      DNI + Aux: an auxiliary head also predicts M(s_T) from every h_t (below);
//   3. backward to the window's start with ĝ entering the last step (BPTT: nothing enters;
//      gradients stop at s_0 either way), one optimizer step of the core;
//   4. DNI: δ_0, the gradient that arrived at s_0, is the true gradient of the window's loss
//      plus the bootstrapped γ·M(s_T) w.r.t. s_0, which is the target of the prediction M made at the
//      previous boundary (M(s_0)). M regresses onto it with its CURRENT weights on s_0 (as
//      the feed-forward late update does: the prediction made at that boundary came from the
//      weights of one regression ago, and a step on a stale prediction's error is not the
//      gradient of any weights' error); s_0 is exactly the carried state, so nothing from the
//      previous window needs keeping, and a resumed run does the same;
//   5. carry s_T to the next window.
//
// Choices, and why:
// - M sees and predicts the whole state [h, c] (2H wide): both carry the future's gradient
//   across the boundary, and the cell's path (∂c_T) is the one that spans many steps (the
//   constant error carousel) — predicting only ∂h_T would cut it at every boundary.
// - Scale: as the feed-forward synthesizer (../dni/synthesizer.ts, reused here) M models the
//   per-example gradient by default: ĝ = M(s)/B, targets B·δ_0 (synthesizer.targetScale
//   'batch-mean': ĝ = M(s), targets δ_0). Linear and zero-initialised by default.
// - Resets: a window that starts with a reset runs from a zero state, so the true gradient at
//   the carried s_0 is exactly zero. That boundary still trains M, onto 0: it is the true
//   target (nothing after an episode's end depends on its final state), and M learns to
//   predict no gradient at states that end episodes instead of bleeding the next episode's
//   gradient into this one. The very first window (s_0 = 0, the initial state) trains M too.
// - The bootstrap discount γ (synthesizer.discount, default DEFAULT_DISCOUNT): M's target
//   is the window's true gradient plus γ times its own prediction carried back through the
//   window. With γ = 1 (the method as first specified) nothing anchors the bootstrap on a
//   stream without resets: once the cell path's gain over a window nears 1 (forget gates near
//   1), M(s) = true + J_c^T M(s') has no bounded solution, and ĝ_c grew without bound on the
//   character LM (rms 0.18 → 139 over 400 windows) while the core followed it instead of the
//   loss. γ < 1 makes the target a contraction (as the discount of TD(λ)), its fixed point the
//   sum of the future's true gradients weighted γ^k for the k-th window ahead; Copy, whose
//   resets anchor the bootstrap at 0, is not hurt. The measurements behind the default are in
//   experiments/char-lm/README.md ("Stability"). The Aux head predicts M(s_T) undiscounted.
// - BP(λ) is not offered: the true gradient at a window's end only exists once the next
//   window has run, and waiting for it is full BPTT, the thing DNI avoids.
// - DNI + Aux (the paper's "+Aux", the core predicting the synthetic gradients it will
//   receive): a linear head A on h_t predicts, at every step t of the window, M(s_T) (M's
//   output at the window's end boundary, per example by default); L_aux = auxWeight · (1/T) Σ_t
//   mean((A h_t - M(s_T))²), the target detached (no gradient into M or s_T). Its gradient
//   reaches the core through h_t, so the core learns features from which the future gradient
//   is predictable; A is trained with the core by the core's optimizer. It changes no loss
//   that is reported.
//
// Streams ('separate'): the core runs on the trainer's stream, M's regression (step 4) on a
// stream of its own, which waits for an event recorded after the backward; the next window's
// forward does not wait for the regression, only its prediction of ĝ (which reads M's weights)
// waits for an event recorded after it (the update unlock). Each tensor is written on one
// stream only and every cross-stream read waits for an event, so 'single' and 'separate' give
// bit-identical weights.
import { checkOptions, describe, numberOption, positiveInt } from '../check';
import { Device } from '../device';
import { Synthesizer, TargetScale } from '../dni/synthesizer';
import { Linear } from '../nn/layers';
import { LSTMState } from '../nn/lstm';
import { Module, Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Optimizer, optimizerFor } from '../optim/optimizers';
import { Random } from '../random';
import { Event, Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { LoadedCheckpoint, NamedTensor, readCheckpoint, restoreTensors, writeCheckpoint } from '../train/checkpoint';
import { checkSequenceWindow, SequenceWindow } from '../data/sequences';
import { LSTMSequenceModel, uploadWindow } from './model';
import { ForwardModeLearner, HostWeights, hostGradientToLSTM, hostWindow, zeroGradients } from '../methods/lstm-host';
import { checkRtrlSize, RtrlLSTM } from '../methods/rtrl';
import { UoroLSTM } from '../methods/uoro';
import { error, rangeError, typeError } from '../errors';

export type RecurrentMethod = 'bptt' | 'dni' | 'dni-aux' | 'rtrl' | 'uoro';

/** Every recurrent method, in the order errors list them. */
export const RECURRENT_METHODS: readonly RecurrentMethod[] = ['bptt', 'dni', 'dni-aux', 'rtrl', 'uoro'];

/** Whether `method` trains a synthesizer (DNI, DNI + Aux). */
export function usesSynthesizer(method: RecurrentMethod): boolean {
  return method === 'dni' || method === 'dni-aux';
}

export interface RecurrentSynthesizerOptions {
  /** hidden widths of an MLP synthesizer (Linear → BatchNorm → ReLU each); default [] (linear) */
  hidden?: number[];
  /** weight of M's L2 loss; default 1 */
  lossWeight?: number;
  /** M's optimizer; default: the trainer's factory */
  optimizer?: () => Optimizer;
  /**
   * A custom M from `inputs` = 2H features ([h, c]) to `outputs` = 2H (replaces `hidden`; its
   * last layer should start at 0); one whose widths do not fit the state is an error.
   */
  network?: (inputs: number, outputs: number) => Module;
  /**
   * γ in (0, 1]: the synthetic gradient enters the window's last step as γ·M(s_T)/B, so M's
   * target δ_0 is the window's true gradient plus γ times the bootstrapped one (a discounted
   * bootstrap, as in TD(λ)); default DEFAULT_DISCOUNT (see the file comment)
   */
  discount?: number;
  /** what M regresses onto: 'per-example' (default; ĝ = M(s_T)/B) or 'batch-mean' (ĝ = M(s_T)); see ../dni/synthesizer.ts */
  targetScale?: TargetScale;
}

export interface RecurrentTrainingOptions {
  /** default 'bptt' */
  method?: RecurrentMethod;
  /** called once for the core (and once for M unless synthesizer.optimizer is given) */
  optimizer: () => Optimizer;
  /** default: CPU */
  device?: Device;
  /** seeds the initial weights: the model's, then M's, then the Aux head's; default 0 */
  seed?: number;
  /** DNI's synthesizer */
  synthesizer?: RecurrentSynthesizerOptions;
  /** DNI + Aux: the auxiliary loss's weight; default 1 */
  auxWeight?: number;
  /** 'separate': M's regression on a stream of its own (the update unlock); default 'single' */
  streams?: 'single' | 'separate';
}

/** What one window did. */
export interface WindowMetrics {
  /** 1-based count of windows trained (a resumed run goes on counting) */
  window: number;
  /** the window's loss: the sum over steps of each step's batch-mean cross-entropy (nats) */
  loss: number;
  /** targets scored in the window */
  scored: number;
  /** mean cross-entropy per scored target in bits (NaN when nothing was scored) */
  bits: number;
}

/** A window of symbols, as the sources give it (../data/sequences.ts). */
export type SymbolWindow = SequenceWindow;

/** The synthesizer's default bootstrap discount γ (the file comment says why). */
export const DEFAULT_DISCOUNT = 0.5;

const OPTIONS = ['method', 'optimizer', 'device', 'seed', 'synthesizer', 'auxWeight', 'streams'];

export class RecurrentTraining {
  readonly method: RecurrentMethod;
  readonly device: Device;
  readonly stream: Stream;
  readonly synthesizer?: Synthesizer;
  /** DNI + Aux: predicts M(s_T) from h_t */
  readonly aux?: Linear;
  readonly auxWeight: number;
  readonly streams: 'single' | 'separate';
  /** DNI: the bootstrap discount γ (ĝ = γ·M(s_T)/B); 1 for BPTT */
  readonly discount: number;
  /** windows trained */
  windows = 0;
  /** set to keep copies of the last window's ĝ and M's target in `lastWindow` (tests, debugging) */
  record = false;
  /** DNI, when `record`: ĝ = M(s_T)/B and δ_0 (M's target for s_0, before the per-example scaling), [B, 2H] each */
  lastWindow?: { synthetic: Tensor; target: Tensor };

  private readonly optimizer: Optimizer;
  private readonly params: Parameter[];
  private readonly rng: Random;
  private readonly synthStream?: Stream;
  private readonly deltaReady?: Event;
  private readonly synthDone?: Event;
  /** the carried state; undefined until the first window (then zeros of its batch) */
  private carried?: LSTMState;
  /** RTRL, UORO: the host-side learner, which keeps its own copy of the state */
  private readonly learner?: ForwardModeLearner;
  /** RTRL, UORO: counts resetState() and setState() calls; a window runs from the state of the count at its step() */
  private stateVersion = 0;
  /** RTRL, UORO: the count the learner's state follows (-1: none yet) */
  private learnerVersion = -1;
  /** RTRL, UORO: the batch of the last window stepped, and the state count it ran under */
  private steppedBatch?: { version: number; batch: number };
  /** RTRL, UORO: the values of the last setState() */
  private givenState?: { version: number; h: Float64Array; c: Float64Array };
  /** RTRL, UORO: the window in progress (windows run one after another, see step) */
  private pending: Promise<unknown> = Promise.resolve();

  constructor(
    readonly model: LSTMSequenceModel,
    options: RecurrentTrainingOptions,
  ) {
    if (!(model instanceof LSTMSequenceModel))
      throw typeError(`RecurrentTraining: 'model' must be an LSTMSequenceModel, got ${describe(model)}`);
    if (options === null || typeof options !== 'object')
      throw typeError(`RecurrentTraining: 'options' must be an object, got ${describe(options)}`);
    checkOptions('RecurrentTraining', options, OPTIONS);
    const method = options.method ?? 'bptt';
    if (!RECURRENT_METHODS.includes(method))
      throw typeError(
        `RecurrentTraining: 'method' must be one of ${RECURRENT_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`,
      );
    const synthesized = usesSynthesizer(method);
    this.method = method;
    if (typeof options.optimizer !== 'function')
      throw typeError(`RecurrentTraining: 'optimizer' must be a function returning an Optimizer, got ${describe(options.optimizer)}`);
    this.device = options.device ?? Device.cpu();
    if (!(this.device instanceof Device)) throw typeError(`RecurrentTraining: 'device' must be a Device, got ${describe(options.device)}`);
    const seed = numberOption('RecurrentTraining', 'seed', options.seed, 0);
    this.auxWeight = numberOption('RecurrentTraining', 'auxWeight', options.auxWeight, 1);
    if (!(this.auxWeight > 0) || !Number.isFinite(this.auxWeight))
      throw rangeError(`RecurrentTraining: 'auxWeight' must be a finite number > 0, got ${this.auxWeight}`);
    this.streams = options.streams ?? 'single';
    if (this.streams !== 'single' && this.streams !== 'separate')
      throw typeError(`RecurrentTraining: 'streams' must be 'single' or 'separate', got ${describe(options.streams)}`);
    const synthOptions = options.synthesizer ?? {};
    checkOptions(
      'RecurrentTraining',
      synthOptions,
      ['hidden', 'lossWeight', 'optimizer', 'network', 'discount', 'targetScale'],
      'synthesizer',
    );
    this.discount = numberOption('RecurrentTraining', 'synthesizer.discount', synthOptions.discount, synthesized ? DEFAULT_DISCOUNT : 1);
    if (!(this.discount > 0 && this.discount <= 1))
      throw rangeError(`RecurrentTraining: 'synthesizer.discount' must be a number in (0, 1], got ${this.discount}`);
    if (options.synthesizer !== undefined && !synthesized)
      throw rangeError(`RecurrentTraining: 'synthesizer' is given but method '${method}' uses none (use 'dni' or 'dni-aux')`);
    if (method === 'rtrl') checkRtrlSize('RecurrentTraining', model.inputSymbols, model.hidden);
    if (options.auxWeight !== undefined && method !== 'dni-aux')
      throw rangeError(`RecurrentTraining: 'auxWeight' is given but method '${method}' has no auxiliary loss (use 'dni-aux')`);

    this.rng = new Random(seed);
    this.model.initialize(this.device, this.rng);
    this.stream = Stream.default(this.device);
    this.optimizer = optimizerFor('RecurrentTraining', () => options.optimizer(), 0);
    if (synthesized) {
      const width = 2 * model.hidden; // [h, c]
      const synth = new Synthesizer('RecurrentTraining.synthesizer', width, 0, {
        hidden: synthOptions.hidden ?? [],
        lossWeight: synthOptions.lossWeight,
        network: synthOptions.network,
        targetScale: synthOptions.targetScale,
      });
      const make = synthOptions.optimizer ?? options.optimizer;
      if (typeof make !== 'function')
        throw typeError(`RecurrentTraining: 'synthesizer.optimizer' must be a function returning an Optimizer, got ${describe(make)}`);
      synth.initialize(
        this.device,
        this.rng,
        optimizerFor('RecurrentTraining', () => make(), 0),
      );
      this.synthesizer = synth;
      if (this.streams === 'separate') {
        this.synthStream = new Stream(this.device);
        this.deltaReady = new Event(this.device);
        this.synthDone = new Event(this.device);
      }
    }
    if (method === 'dni-aux') {
      this.aux = new Linear(model.hidden, 2 * model.hidden);
      this.aux.initialize(this.device, this.rng);
    }
    this.params = [...model.parameters(), ...(this.aux?.parameters() ?? [])];
    // After the model's weights: the same seed gives every method the same initial weights.
    if (method === 'rtrl') this.learner = new RtrlLSTM(model.inputSymbols, model.hidden);
    if (method === 'uoro') this.learner = new UoroLSTM(model.inputSymbols, model.hidden, UoroLSTM.signsFrom(this.rng));
  }

  /** The carried state (undefined before the first window). */
  get state(): LSTMState | undefined {
    return this.carried;
  }

  /** Sets the carried state from host values (each [batch * hidden], row-major). */
  setState(h: Float32Array, c: Float32Array, batch: number): void {
    positiveInt('RecurrentTraining.setState', 'batch', batch);
    const n = batch * this.model.hidden;
    for (const [name, v] of [
      ['h', h],
      ['c', c],
    ] as const)
      if (!(v instanceof Float32Array) || v.length !== n)
        throw rangeError(
          `RecurrentTraining.setState: '${name}' must be a Float32Array of batch * hidden = ${n} values, got ${v instanceof Float32Array ? v.length : describe(v)}`,
        );
    this.replaceState({
      h: Tensor.fromArray(h, [batch, this.model.hidden], { device: this.device }),
      c: Tensor.fromArray(c, [batch, this.model.hidden], { device: this.device }),
    });
    this.stateVersion++;
    this.givenState = { version: this.stateVersion, h: Float64Array.from(h), c: Float64Array.from(c) };
  }

  /** Zeroes the carried state (a new stream of sequences). */
  resetState(): void {
    this.carried?.h.dispose();
    this.carried?.c.dispose();
    this.carried = undefined;
    this.stateVersion++;
  }

  private replaceState(next: LSTMState): void {
    // Work already enqueued keeps the old tensors' memory alive: disposing of them here is safe.
    this.carried?.h.dispose();
    this.carried?.c.dispose();
    this.carried = next;
  }

  /** Checks a window against the model (shape and symbols); returns how many targets it scores. */
  checkWindow(window: SymbolWindow): number {
    const owner = 'RecurrentTraining.step';
    if (this.model.loss !== 'softmax-cross-entropy')
      throw rangeError(`${owner}: symbol windows need a model with 'softmax-cross-entropy' (this one has '${this.model.loss}')`);
    const scored = checkSequenceWindow(owner, window, this.model.inputSymbols, this.model.outputs);
    if (this.carried && this.carried.h.shape[0] !== window.batch)
      throw rangeError(
        `${owner}: 'window.batch' is ${window.batch}, but the carried state has ${this.carried.h.shape[0]} rows (call resetState() to change the batch)`,
      );
    return scored;
  }

  /**
   * Trains on one window (see the file comment). A window that does not fit the model throws
   * before anything is enqueued. The work is enqueued before the call returns;
   * the Promise resolves with the window's metrics once its loss has been computed, so the
   * next window may be enqueued before awaiting this one.
   */
  step(window: SymbolWindow): Promise<WindowMetrics> {
    const scored = this.checkWindow(window);
    if (this.learner) {
      // The learner's state is on the host: a window starts once the one before has finished. It
      // is counted now, as the device methods count a window once it is enqueued.
      const version = this.stateVersion;
      // checkWindow compares with the carried state, which a pending window has not yet replaced.
      if (this.steppedBatch?.version === version && this.steppedBatch.batch !== window.batch)
        throw rangeError(
          `RecurrentTraining.step: 'window.batch' is ${window.batch}, but the carried state has ${this.steppedBatch.batch} rows (call resetState() to change the batch)`,
        );
      this.steppedBatch = { version, batch: window.batch };
      const windowNumber = ++this.windows;
      const run = this.pending.then(() => this.forwardModeWindow(this.learner!, window, scored, windowNumber, version));
      this.pending = run.catch(() => undefined);
      return run;
    }
    const { batch } = window;
    const arena = new Arena();
    try {
      const ctx: StepContext = { device: this.device, stream: this.stream, training: true, arena };
      const tensors = uploadWindow(window, this.device, arena, this.stream);
      if (!this.carried) {
        const zeros = () => Tensor.zeros([batch, this.model.hidden], { device: this.device });
        this.carried = { h: zeros(), c: zeros() }; // owned by the trainer, outside the arena
      }
      const s0 = this.carried;
      const f = this.model.forward(tensors, s0, ctx);
      const H = this.model.hidden;

      let dFinal: { h: Tensor; c: Tensor } | undefined;
      let g: Tensor | undefined;
      let dOutputs: (Tensor | undefined)[] | undefined;
      const synth = this.synthesizer;
      if (synth) {
        if (this.synthDone) this.stream.wait(this.synthDone); // M's weights: its last regression must be done
        const sT = ops.concatColumns(ctx, f.state.h, f.state.c);
        g = synth.predict(sT, sT /* not conditioned: no labels */, ctx).gradient; // M(s_T)/B
        const m = g; // M(s_T)/B, the Aux head's target (undiscounted)
        if (this.discount !== 1) g = ops.scale(ctx, this.discount, g); // γ·M(s_T)/B
        const gh = Tensor.empty([batch, H], { device: this.device, arena });
        const gc = Tensor.empty([batch, H], { device: this.device, arena });
        ops.splitColumns(ctx, g, gh, gc);
        dFinal = { h: gh, c: gc };
        if (this.aux) dOutputs = this.auxGradients(f.outputs, m, batch, ctx);
      }
      const delta0 = f.backward(dFinal, ctx, dOutputs);
      this.optimizer.step(this.params, this.stream);

      if (synth) {
        // M(s_0)'s target: δ_0 (true loss gradient plus the bootstrapped ĝ), per example inside learn().
        const sctx: StepContext = this.synthStream ? { ...ctx, stream: this.synthStream } : ctx;
        if (this.synthStream) {
          this.deltaReady!.record(this.stream);
          this.synthStream.wait(this.deltaReady!);
        }
        const target = ops.concatColumns(sctx, delta0.h, delta0.c);
        const s0cat = ops.concatColumns(sctx, s0.h, s0.c);
        // A fresh prediction from s_0 with M's current weights; BatchNorm statistics already counted s_T's batch.
        synth.predict(s0cat, s0cat, { ...sctx, freezeStatistics: true }).learn(target, sctx);
        if (this.record) this.keepRecord(ops.clone({ device: this.device, stream: sctx.stream }, target), g!, ctx);
        if (this.synthStream) this.synthDone!.record(this.synthStream);
      }

      // The carried state lives outside the window's arena.
      this.replaceState({
        h: ops.clone({ device: this.device, stream: this.stream }, f.state.h),
        c: ops.clone({ device: this.device, stream: this.stream }, f.state.c),
      });
      const windowNumber = ++this.windows;
      const lossRead = f.loss.readFloat32(this.stream);
      return lossRead.then((v) => {
        const loss = v[0];
        if (!Number.isFinite(loss))
          throw error(
            'ERR_SYNTHGRAD_TRAINING',
            `RecurrentTraining: the loss of window ${windowNumber} is ${loss}; training diverged (lower the learning rate)`,
          );
        return { window: windowNumber, loss, scored, bits: scored > 0 ? (loss * batch) / scored / Math.LN2 : NaN };
      });
    } finally {
      arena.dispose(); // enqueued work keeps what it uses alive
    }
  }

  /**
   * RTRL, UORO: one window on the host (../methods/lstm-host.ts) with the current weights, its
   * gradient (the core's through the whole history) added to the parameters' gradients, one
   * optimizer step; the carried state follows the learner's.
   */
  private async forwardModeWindow(
    learner: ForwardModeLearner,
    window: SymbolWindow,
    scored: number,
    windowNumber: number,
    version: number,
  ): Promise<WindowMetrics> {
    const { batch } = window;
    const H = this.model.hidden;
    const params = this.model.parameters(); // core W, b; read-out R, r
    const [W, b, R, r] = await Promise.all(params.map((p) => p.value.readFloat32(this.stream)));
    if (version !== this.learnerVersion) {
      // resetState() or setState() came before this window's step(): start from that state, with nothing carried.
      const given = this.givenState?.version === version ? this.givenState : undefined;
      if (given) learner.setState(given.h, given.c);
      else learner.reset(batch);
      this.learnerVersion = version;
    }
    const weights: HostWeights = {
      inputs: this.model.inputSymbols,
      hidden: H,
      outputs: this.model.outputs,
      W: Float64Array.from(W),
      b: Float64Array.from(b),
      R: Float64Array.from(R),
      r: Float64Array.from(r),
    };
    const grads = zeroGradients(weights);
    const loss = learner.window(weights, hostWindow(window), grads);
    const core = hostGradientToLSTM(grads.theta, this.model.inputSymbols, H);
    const arena = new Arena();
    try {
      const ctx: StepContext = { device: this.device, stream: this.stream, training: true, arena };
      [core.W, core.b, Float32Array.from(grads.R), Float32Array.from(grads.r)].forEach((g, i) =>
        ops.axpby(ctx, 1, Tensor.fromArray(g, params[i].grad.shape, { device: this.device, arena }), 1, params[i].grad),
      );
      this.optimizer.step(this.params, this.stream);
      // Unless the state was reset or set after this window's step(): that state stands.
      if (this.stateVersion === version)
        this.replaceState({
          h: Tensor.fromArray(Float32Array.from(learner.h), [batch, H], { device: this.device }),
          c: Tensor.fromArray(Float32Array.from(learner.c), [batch, H], { device: this.device }),
        });
    } finally {
      arena.dispose(); // enqueued work keeps what it uses alive
    }
    if (!Number.isFinite(loss))
      throw error(
        'ERR_SYNTHGRAD_TRAINING',
        `RecurrentTraining: the loss of window ${windowNumber} is ${loss}; training diverged (lower the learning rate)`,
      );
    return { window: windowNumber, loss, scored, bits: scored > 0 ? (loss * batch) / scored / Math.LN2 : NaN };
  }

  private keepRecord(target: Tensor, synthetic: Tensor, ctx: StepContext): void {
    this.lastWindow?.synthetic.dispose();
    this.lastWindow?.target.dispose();
    this.lastWindow = { synthetic: ops.clone({ device: this.device, stream: ctx.stream }, synthetic), target };
  }

  /**
   * DNI + Aux: the gradient of auxWeight · (1/T) Σ_t mse(A h_t, M(s_T)) w.r.t. each h_t (the
   * target detached), accumulating A's parameter gradients.
   */
  private auxGradients(outputs: Tensor[], g: Tensor, batch: number, ctx: StepContext): Tensor[] {
    const aux = this.aux!;
    const target = ops.scale(ctx, this.synthesizer!.targetFactor(batch), g); // M(s_T)
    return outputs.map((h) => {
      const f = aux.forward(h, ctx);
      const d = ops.mseBackward(ctx, f.output, target, this.auxWeight / outputs.length);
      return f.backward(d, ctx, true)!;
    });
  }

  /**
   * Mean cross-entropy per scored target, in bits, over the windows `next()` gives until it
   * gives undefined, with the weights as they are (nothing is trained), from a zero state
   * carried across those windows (the training state is left alone).
   */
  async evaluate(next: () => SymbolWindow | undefined): Promise<{ bits: number; scored: number; loss: number }> {
    let state: LSTMState | undefined;
    let nats = 0;
    let scored = 0;
    const stream = this.stream;
    for (;;) {
      const window = next();
      if (!window) break;
      const count = this.checkWindowShape(window);
      const arena = new Arena();
      try {
        const ctx: StepContext = { device: this.device, stream, training: false, arena };
        const s0 = state ?? this.model.core.zeroState(window.batch, ctx);
        const f = this.model.forward(uploadWindow(window, this.device, arena, stream), s0, ctx);
        const keep = { h: ops.clone({ device: this.device, stream }, f.state.h), c: ops.clone({ device: this.device, stream }, f.state.c) };
        const loss = (await f.loss.readFloat32(stream))[0];
        state?.h.dispose();
        state?.c.dispose();
        state = keep;
        nats += loss * window.batch;
        scored += count;
      } finally {
        arena.dispose();
      }
    }
    state?.h.dispose();
    state?.c.dispose();
    return { bits: scored > 0 ? nats / scored / Math.LN2 : NaN, scored, loss: nats };
  }

  /** checkWindow without the carried state's batch (evaluation carries its own). */
  private checkWindowShape(window: SymbolWindow): number {
    const saved = this.carried;
    this.carried = undefined;
    try {
      return this.checkWindow(window);
    } finally {
      this.carried = saved;
    }
  }

  /** Every tensor a checkpoint holds, by name: weights, optimizer state, the carried state. */
  private namedTensors(): NamedTensor[] {
    const out: NamedTensor[] = [];
    this.model.parameters().forEach((p, i) => out.push({ name: `model.${i}`, tensor: p.value }));
    this.aux?.parameters().forEach((p, i) => out.push({ name: `aux.${i}`, tensor: p.value }));
    this.optimizer.stateTensors(this.params).forEach((tensor, i) => out.push({ name: `optimizer.${i}`, tensor }));
    const synth = this.synthesizer;
    if (synth) {
      synth.network.stateTensors().forEach((tensor, i) => out.push({ name: `synthesizer.${i}`, tensor }));
      synth.optimizer!.stateTensors(synth.parameters()).forEach((tensor, i) => out.push({ name: `synthesizer.optimizer.${i}`, tensor }));
    }
    if (this.carried) {
      out.push({ name: 'state.h', tensor: this.carried.h });
      out.push({ name: 'state.c', tensor: this.carried.c });
    }
    return out;
  }

  /**
   * Saves the run: weights, optimizer state, the carried state, the window count and step
   * counts, and `host` (JSON: e.g. the source's state()). Waits for the enqueued work.
   */
  async save(path: string, host: unknown = null, extra: readonly NamedTensor[] = []): Promise<void> {
    if (this.learner) throw this.noCheckpoint('save');
    if (this.synthStream) this.stream.wait(this.synthDone!);
    const record = {
      kind: 'recurrent',
      method: this.method,
      hidden: this.model.hidden,
      windows: this.windows,
      rng: this.rng.state(),
      optimizerSteps: this.optimizer.steps,
      synthesizerSteps: this.synthesizer?.optimizer?.steps ?? null,
      host,
    };
    await writeCheckpoint(path, [...this.namedTensors(), ...extra], record, this.stream);
  }

  /**
   * Restores a run saved by save() into this trainer (same model, method and options) and
   * `extra` (the tensors saved with it, by name); returns its `host`.
   */
  async load(path: string, extra: readonly NamedTensor[] = []): Promise<unknown> {
    if (this.learner) throw this.noCheckpoint('load');
    const loaded: LoadedCheckpoint = await readCheckpoint(path);
    const r = (loaded.host ?? {}) as Record<string, unknown>;
    const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `RecurrentTraining.load: ${path} ${why}`);
    if (r.kind !== 'recurrent') throw bad('is not a recurrent training checkpoint');
    if (r.method !== this.method) throw bad(`was saved with method '${String(r.method)}', this trainer uses '${this.method}'`);
    if (r.hidden !== this.model.hidden) throw bad(`has ${String(r.hidden)} hidden units, this model ${this.model.hidden}`);
    const count = (v: unknown, what: string) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`has no valid '${what}' (got ${JSON.stringify(v)})`);
      return v;
    };
    const windows = count(r.windows, 'windows');
    const steps = count(r.optimizerSteps, 'optimizerSteps');
    const synthSteps = this.synthesizer ? count(r.synthesizerSteps, 'synthesizerSteps') : 0;
    const h = loaded.tensors.get('state.h');
    const c = loaded.tensors.get('state.c');
    this.resetState();
    if (h && c) {
      this.carried = { h: Tensor.zeros(h.shape, { device: this.device }), c: Tensor.zeros(c.shape, { device: this.device }) };
    }
    await restoreTensors(loaded, [...this.namedTensors(), ...extra], this.stream);
    this.rng.restore(r.rng as number[]);
    this.windows = windows;
    this.optimizer.steps = steps;
    if (this.synthesizer) this.synthesizer.optimizer!.steps = synthSteps;
    return r.host;
  }

  private noCheckpoint(what: string): Error {
    return error(
      'ERR_SYNTHGRAD_CHECKPOINT',
      `RecurrentTraining.${what}: method '${this.method}' has no checkpoints (its sensitivities, the state's dependence on the weights, are not saved)`,
    );
  }

  /** Waits for all enqueued work (both streams). */
  async synchronize(): Promise<void> {
    await this.pending;
    if (this.synthStream) await this.synthStream.synchronize();
    await this.stream.synchronize();
  }

  dispose(): void {
    this.resetState();
    this.lastWindow?.synthetic.dispose();
    this.lastWindow?.target.dispose();
    this.optimizer.dispose();
    this.synthesizer?.dispose();
    this.aux?.dispose();
    this.model.dispose();
  }
}
