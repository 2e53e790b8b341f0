// Two recurrent cores on two timescales that talk through a synthetic gradient (the
// multi-network system of Jaderberg et al. 2017, as recalled: network A ticks every step,
// network B every k steps on A's output, and DNI lets A update without waiting for B).
//
// The fast core A (an LSTMSequenceModel: one-hot symbols in, its own read-out and loss every
// step) runs every step. The slow core B (an LSTM and a linear read-out of its own) ticks after
// every `period` = k fast steps; its input at a tick is the message m = A's h at that step, as
// it is (no projection: B's input weights are the projection), and its loss is scored at its
// ticks. A window is T fast steps (T a multiple of k, so every window holds whole periods and
// B ticks at its steps k-1, 2k-1, ...), the states of both cores carried from window to
// window, gradients stopped at the window's start (as ./training.ts).
//
// Per window, by method:
// - 'bptt': A forward; B forward on the messages; B backward, which gives the true ∂L_B/∂m_j
//   for every message; A backward with those entering its message steps (A waits for B's
//   backward: locked); one optimizer step of each core. The update of the summed loss L_A + L_B.
// - 'dni': A forward; a synthesizer M (../dni/synthesizer.ts, linear and zero at the start by
//   default) predicts ĝ_j = M(m_j)/B for each message; A backward with ĝ_j entering its message
//   steps and A's optimizer step, all enqueued before B has run at all (A does not wait for B);
//   then B forward and backward, B's step, and M regresses onto the true ∂L_B/∂m_j that B's
//   backward produced, one tick after another, each from a fresh prediction with M's current
//   weights (the scaling is the feed-forward synthesizer's: M models the per-example gradient).
//   The target is B's window gradient, not bootstrapped (nothing of B's future is predicted here).
// - 'none' (the ablation): as 'dni' without M: A gets no gradient from B at all (the messages
//   are detached), and A's update is the one training A alone would make.
//
// B's own state boundary is plain truncation in every method (no recurrent synthesizer on B's
// state): B learns only from the ticks inside a window, so a slow target that needs B to
// remember more ticks than a window holds cannot be learned here (the task's `blocks` stays
// within T/k). One stream: the unlock shows in the order of the enqueued work, not as
// concurrency. save()/load() resume a run bit for bit (as ./training.ts).
import { checkOptions, describe, numberOption, positiveInt } from '../check';
import { Device } from '../device';
import { Synthesizer } from '../dni/synthesizer';
import { Linear } from '../nn/layers';
import { LSTM, LSTMState } from '../nn/lstm';
import { Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Optimizer, optimizerFor } from '../optim/optimizers';
import { Random } from '../random';
import { Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import { LoadedCheckpoint, NamedTensor, readCheckpoint, restoreTensors, writeCheckpoint } from '../train/checkpoint';
import { checkSequenceWindow } from '../data/sequences';
import type { MultiTimescaleWindow } from '../data/multiscale';
import { LSTMSequenceModel, uploadStepLabels, uploadWindow } from './model';
import { error, rangeError, typeError } from '../errors';

export type MultiTimescaleMethod = 'bptt' | 'dni' | 'none';

export interface SlowCoreOptions {
  /** B's LSTM units */
  hidden: number;
  /** B's read-out classes (softmax) */
  outputs: number;
  /** B's forget-gate bias; default 1 */
  forgetBias?: number;
}

export interface MultiTimescaleOptions {
  /** default 'bptt' */
  method?: MultiTimescaleMethod;
  /** fast steps per slow tick (k) */
  period: number;
  /** the slow core B */
  slow: SlowCoreOptions;
  /** called once for A, once for B (and once for M unless synthesizer.optimizer is given) */
  optimizer: () => Optimizer;
  /** default: CPU */
  device?: Device;
  /** seeds the initial weights: A's, then B's, then M's; default 0 */
  seed?: number;
  /** 'dni': the synthesizer on the messages */
  synthesizer?: {
    /** hidden widths of an MLP synthesizer (Linear → BatchNorm → ReLU each); default [] (linear) */
    hidden?: number[];
    /** weight of M's L2 loss; default 1 */
    lossWeight?: number;
    /** M's optimizer; default: the trainer's factory */
    optimizer?: () => Optimizer;
  };
}

/** What one window did. Losses are sums over steps (ticks) of batch means, in nats. */
export interface MultiTimescaleMetrics {
  /** 1-based count of windows trained */
  window: number;
  fastLoss: number;
  slowLoss: number;
  fastScored: number;
  slowScored: number;
  /** mean cross-entropy per scored target in bits (NaN when nothing was scored) */
  fastBits: number;
  slowBits: number;
}

/** evaluate()'s answer: per core, bits per scored target and the fraction of targets whose argmax is right. */
export interface MultiTimescaleEvaluation {
  fastBits: number;
  slowBits: number;
  fastAccuracy: number;
  slowAccuracy: number;
  fastScored: number;
  slowScored: number;
}

const OPTIONS = ['method', 'period', 'slow', 'optimizer', 'device', 'seed', 'synthesizer'];

/** B: an LSTM on the messages and a linear read-out scored with softmax cross-entropy at every tick. */
export class SlowCore {
  readonly core: LSTM;
  readonly readout: Linear;

  constructor(
    readonly inputs: number,
    readonly hidden: number,
    readonly outputs: number,
    forgetBias?: number,
  ) {
    this.core = new LSTM(inputs, hidden, { forgetBias });
    this.readout = new Linear(hidden, outputs);
  }

  initialize(device: Device, rng: Random): void {
    this.core.initialize(device, rng);
    this.readout.initialize(device, rng);
  }

  parameters(): Parameter[] {
    return [...this.core.parameters(), ...this.readout.parameters()];
  }

  dispose(): void {
    this.core.dispose();
    this.readout.dispose();
  }

  /**
   * Runs the ticks from `state` on `messages` (one [B, inputs] per tick); `targets[j]` the
   * int32 [B] labels of tick j (undefined: not scored). backward() accumulates B's parameter
   * gradients and, when asked, returns ∂L_B/∂m_j for every message.
   */
  forward(messages: Tensor[], state: LSTMState, targets: (Tensor | undefined)[], ctx: StepContext) {
    const f = this.core.forward(messages, state, ctx);
    const loss = ops.full(ctx, [1], 0);
    const logits: (Tensor | undefined)[] = [];
    const back: (((bctx: StepContext) => Tensor) | undefined)[] = [];
    targets.forEach((target, j) => {
      if (!target) return;
      const r = this.readout.forward(f.outputs[j], ctx);
      const ce = ops.softmaxCrossEntropy(ctx, r.output, target);
      ops.axpby(ctx, 1, ce.loss, 1, loss);
      logits[j] = r.output;
      back[j] = (bctx) => r.backward(ops.softmaxCrossEntropyBackward(bctx, ce.probs, target, 1), bctx, true)!;
    });
    return {
      state: f.state,
      loss,
      logits,
      backward: (bctx: StepContext, needInputGrad: boolean): Tensor[] | undefined => {
        const dh = messages.map((_, j) => back[j]?.(bctx));
        return f.backward(dh, undefined, bctx, needInputGrad).dInputs;
      },
    };
  }
}

export class MultiTimescaleTraining {
  readonly method: MultiTimescaleMethod;
  readonly period: number;
  readonly device: Device;
  readonly stream: Stream;
  readonly slow: SlowCore;
  /** 'dni': predicts ∂L_B/∂m from the message m */
  readonly synthesizer?: Synthesizer;
  /** windows trained */
  windows = 0;
  /** set to keep, per tick of the last window, what entered A's message steps and B's true gradient there */
  record = false;
  /**
   * When `record`: `synthetic[j]` = ĝ_j = M(m_j)/B ('dni'), `target[j]` = ∂L_B/∂m_j from B's
   * backward ('bptt' and 'dni'; M's regression target before the per-example scaling), [B, H_A] each.
   */
  lastWindow?: { synthetic: Tensor[]; target: Tensor[] };

  private readonly fastOptimizer: Optimizer;
  private readonly slowOptimizer: Optimizer;
  private readonly rng: Random;
  private fastState?: LSTMState;
  private slowState?: LSTMState;

  constructor(
    readonly fast: LSTMSequenceModel,
    options: MultiTimescaleOptions,
  ) {
    const owner = 'MultiTimescaleTraining';
    if (!(fast instanceof LSTMSequenceModel)) throw typeError(`${owner}: 'fast' must be an LSTMSequenceModel, got ${describe(fast)}`);
    if (fast.loss !== 'softmax-cross-entropy')
      throw rangeError(`${owner}: the fast model must use 'softmax-cross-entropy' (this one has '${fast.loss}')`);
    if (options === null || typeof options !== 'object') throw typeError(`${owner}: 'options' must be an object, got ${describe(options)}`);
    checkOptions(owner, options, OPTIONS);
    const method = options.method ?? 'bptt';
    if (method !== 'bptt' && method !== 'dni' && method !== 'none')
      throw typeError(`${owner}: 'method' must be 'bptt', 'dni' or 'none', got ${describe(method)}`);
    this.method = method;
    this.period = positiveInt(owner, 'period', options.period);
    if (typeof options.optimizer !== 'function')
      throw typeError(`${owner}: 'optimizer' must be a function returning an Optimizer, got ${describe(options.optimizer)}`);
    this.device = options.device ?? Device.cpu();
    if (!(this.device instanceof Device)) throw typeError(`${owner}: 'device' must be a Device, got ${describe(options.device)}`);
    const seed = numberOption(owner, 'seed', options.seed, 0);
    const slow = options.slow;
    if (slow === null || typeof slow !== 'object') throw typeError(`${owner}: 'slow' must be { hidden, outputs }, got ${describe(slow)}`);
    checkOptions(owner, slow, ['hidden', 'outputs', 'forgetBias'], 'slow');
    positiveInt(owner, 'slow.hidden', slow.hidden);
    positiveInt(owner, 'slow.outputs', slow.outputs);
    const synthOptions = options.synthesizer ?? {};
    checkOptions(owner, synthOptions, ['hidden', 'lossWeight', 'optimizer'], 'synthesizer');
    if (options.synthesizer !== undefined && method !== 'dni')
      throw rangeError(`${owner}: 'synthesizer' is given but method '${method}' uses none (use 'dni')`);

    this.rng = new Random(seed);
    this.fast.initialize(this.device, this.rng);
    this.slow = new SlowCore(fast.hidden, slow.hidden, slow.outputs, slow.forgetBias);
    this.slow.initialize(this.device, this.rng);
    this.stream = Stream.default(this.device);
    this.fastOptimizer = optimizerFor(owner, () => options.optimizer(), 0);
    this.slowOptimizer = optimizerFor(owner, () => options.optimizer(), 1);
    if (method === 'dni') {
      const synth = new Synthesizer(`${owner}.synthesizer`, fast.hidden, 0, {
        hidden: synthOptions.hidden ?? [],
        lossWeight: synthOptions.lossWeight,
      });
      const make = synthOptions.optimizer ?? options.optimizer;
      if (typeof make !== 'function')
        throw typeError(`${owner}: 'synthesizer.optimizer' must be a function returning an Optimizer, got ${describe(make)}`);
      synth.initialize(
        this.device,
        this.rng,
        optimizerFor(owner, () => make(), 2),
      );
      this.synthesizer = synth;
    }
  }

  /** The carried states of A and B (undefined before the first window). */
  get state(): { fast: LSTMState; slow: LSTMState } | undefined {
    return this.fastState && this.slowState ? { fast: this.fastState, slow: this.slowState } : undefined;
  }

  /** Sets both carried states from host values ([batch * hidden] each, row-major). */
  setState(fast: { h: Float32Array; c: Float32Array }, slow: { h: Float32Array; c: Float32Array }, batch: number): void {
    const owner = 'MultiTimescaleTraining.setState';
    positiveInt(owner, 'batch', batch);
    const make = (name: string, s: { h: Float32Array; c: Float32Array }, hidden: number): LSTMState => {
      const n = batch * hidden;
      if (s === null || typeof s !== 'object') throw typeError(`${owner}: '${name}' must be { h, c }, got ${describe(s)}`);
      for (const key of ['h', 'c'] as const)
        if (!(s[key] instanceof Float32Array) || s[key].length !== n)
          throw rangeError(`${owner}: '${name}.${key}' must be a Float32Array of batch * hidden = ${n} values, got ${describe(s[key])}`);
      return {
        h: Tensor.fromArray(s.h, [batch, hidden], { device: this.device }),
        c: Tensor.fromArray(s.c, [batch, hidden], { device: this.device }),
      };
    };
    const f = make('fast', fast, this.fast.hidden);
    const s = make('slow', slow, this.slow.hidden);
    this.resetState();
    this.fastState = f;
    this.slowState = s;
  }

  /** Zeroes both carried states (a new stream). */
  resetState(): void {
    for (const s of [this.fastState, this.slowState]) {
      s?.h.dispose();
      s?.c.dispose();
    }
    this.fastState = this.slowState = undefined;
  }

  /** Checks a window against the cores and the period; returns the scored counts of A and B. */
  checkWindow(window: MultiTimescaleWindow, carried = true): { fast: number; slow: number } {
    const owner = 'MultiTimescaleTraining.step';
    const fast = checkSequenceWindow(owner, window, this.fast.inputSymbols, this.fast.outputs);
    if (window.period !== this.period)
      throw rangeError(`${owner}: 'window.period' is ${String(window.period)}, but the trainer's 'period' is ${this.period}`);
    if (window.steps % this.period !== 0)
      throw rangeError(
        `${owner}: 'window.steps' (${window.steps}) must be a multiple of 'period' (${this.period}), so that B ticks at the same steps of every window`,
      );
    const t = window.resets.indexOf(true);
    if (t >= 0) throw rangeError(`${owner}: 'window.resets[${t}]' is true; resets are not supported (one continuous stream)`);
    const { slowTargets, batch } = window;
    if (!(slowTargets instanceof Int32Array))
      throw typeError(`${owner}: 'window.slowTargets' must be an Int32Array, got ${describe(slowTargets)}`);
    const n = (window.steps / this.period) * batch;
    if (slowTargets.length !== n)
      throw rangeError(`${owner}: 'window.slowTargets' must have (steps / period) * batch = ${n} values, got ${slowTargets.length}`);
    let slow = 0;
    for (let i = 0; i < n; i++) {
      if (slowTargets[i] === -1) continue;
      if (slowTargets[i] < 0 || slowTargets[i] >= this.slow.outputs)
        throw rangeError(
          `${owner}: 'window.slowTargets[${i}]' (tick ${Math.floor(i / batch)}, row ${i % batch}) is ${slowTargets[i]}, outside B's outputs [0, ${this.slow.outputs}) and not -1`,
        );
      slow++;
    }
    if (carried && this.fastState && this.fastState.h.shape[0] !== batch)
      throw rangeError(
        `${owner}: 'window.batch' is ${batch}, but the carried state has ${this.fastState.h.shape[0]} rows (call resetState() to change the batch)`,
      );
    return { fast, slow };
  }

  /** B's per-tick targets as device tensors (undefined: a tick that scores nothing), one upload per window on the trainer's stream. */
  private slowTargetTensors(window: MultiTimescaleWindow, arena: Arena): (Tensor | undefined)[] {
    return uploadStepLabels(window.slowTargets, window.steps / this.period, window.batch, this.device, arena, this.stream);
  }

  /**
   * Trains on one window (see the file comment). A window that does not fit throws before
   * anything is enqueued; the Promise resolves with the metrics once the losses are read.
   */
  step(window: MultiTimescaleWindow): Promise<MultiTimescaleMetrics> {
    const scored = this.checkWindow(window);
    const { batch, steps } = window;
    const k = this.period;
    const arena = new Arena();
    try {
      const ctx: StepContext = { device: this.device, stream: this.stream, training: true, arena };
      if (!this.fastState || !this.slowState) {
        const zeros = (H: number) => ({
          h: Tensor.zeros([batch, H], { device: this.device }),
          c: Tensor.zeros([batch, H], { device: this.device }),
        });
        this.resetState();
        this.fastState = zeros(this.fast.hidden); // owned by the trainer, outside the arena
        this.slowState = zeros(this.slow.hidden);
      }
      const fa = this.fast.forward(uploadWindow(window, this.device, arena, ctx.stream), this.fastState, ctx);
      const ticks = steps / k;
      const tickStep = (j: number) => (j + 1) * k - 1;
      const messages = Array.from({ length: ticks }, (_, j) => fa.outputs[tickStep(j)]);
      const slowTargets = this.slowTargetTensors(window, arena);
      const dOutputs: (Tensor | undefined)[] = new Array<Tensor | undefined>(steps).fill(undefined);
      const fastParams = this.fast.parameters();
      const slowParams = this.slow.parameters();
      let synthetic: Tensor[] = [];
      let fb: ReturnType<SlowCore['forward']>;
      let dm: Tensor[] | undefined;
      if (this.method === 'bptt') {
        // Locked: A's backward needs B's.
        fb = this.slow.forward(messages, this.slowState, slowTargets, ctx);
        dm = fb.backward(ctx, true)!;
        dm.forEach((g, j) => (dOutputs[tickStep(j)] = g));
        fa.backward(undefined, ctx, dOutputs);
        this.fastOptimizer.step(fastParams, this.stream);
        this.slowOptimizer.step(slowParams, this.stream);
      } else {
        // A updates before B has run: with ĝ_j = M(m_j)/B at its message steps ('dni') or nothing ('none').
        const synth = this.synthesizer;
        if (synth) {
          synthetic = messages.map((m) => synth.predict(m, m, ctx).gradient);
          synthetic.forEach((g, j) => (dOutputs[tickStep(j)] = g));
        }
        fa.backward(undefined, ctx, dOutputs);
        this.fastOptimizer.step(fastParams, this.stream);
        fb = this.slow.forward(messages, this.slowState, slowTargets, ctx);
        dm = fb.backward(ctx, synth !== undefined);
        this.slowOptimizer.step(slowParams, this.stream);
        if (synth)
          messages.forEach((m, j) => {
            // A fresh prediction with M's current weights; BatchNorm statistics already counted this batch.
            synth.predict(m, m, { ...ctx, freezeStatistics: true }).learn(dm![j], ctx);
          });
      }
      if (this.record) this.keepRecord(synthetic, dm ?? [], ctx);

      const clone = (s: LSTMState): LSTMState => ({
        h: ops.clone({ device: this.device, stream: this.stream }, s.h),
        c: ops.clone({ device: this.device, stream: this.stream }, s.c),
      });
      const nextFast = clone(fa.state);
      const nextSlow = clone(fb.state);
      this.resetState(); // enqueued work keeps the old tensors' memory alive
      this.fastState = nextFast;
      this.slowState = nextSlow;
      const windowNumber = ++this.windows;
      return Promise.all([fa.loss.readFloat32(this.stream), fb.loss.readFloat32(this.stream)]).then(([fl, sl]) => {
        const fastLoss = fl[0];
        const slowLoss = sl[0];
        if (!Number.isFinite(fastLoss) || !Number.isFinite(slowLoss))
          throw error(
            'ERR_SYNTHGRAD_TRAINING',
            `MultiTimescaleTraining: the losses of window ${windowNumber} are ${fastLoss} (A) and ${slowLoss} (B); training diverged (lower the learning rate)`,
          );
        const bits = (loss: number, n: number) => (n > 0 ? (loss * batch) / n / Math.LN2 : NaN);
        return {
          window: windowNumber,
          fastLoss,
          slowLoss,
          fastScored: scored.fast,
          slowScored: scored.slow,
          fastBits: bits(fastLoss, scored.fast),
          slowBits: bits(slowLoss, scored.slow),
        };
      });
    } finally {
      arena.dispose();
    }
  }

  private keepRecord(synthetic: Tensor[], target: Tensor[], ctx: StepContext): void {
    for (const t of [...(this.lastWindow?.synthetic ?? []), ...(this.lastWindow?.target ?? [])]) t.dispose();
    const keep = (t: Tensor) => ops.clone({ device: this.device, stream: ctx.stream }, t);
    this.lastWindow = { synthetic: synthetic.map(keep), target: target.map(keep) };
  }

  /**
   * Bits per scored target and argmax accuracy of A and B over the windows `next()` gives
   * until it gives undefined, with the weights as they are, from zero states carried across
   * those windows (the training states are left alone).
   */
  async evaluate(next: () => MultiTimescaleWindow | undefined): Promise<MultiTimescaleEvaluation> {
    let fastState: LSTMState | undefined;
    let slowState: LSTMState | undefined;
    const total = { fastNats: 0, slowNats: 0, fastRight: 0, slowRight: 0, fastScored: 0, slowScored: 0 };
    const stream = this.stream;
    const dispose = () => {
      for (const s of [fastState, slowState]) {
        s?.h.dispose();
        s?.c.dispose();
      }
    };
    try {
      for (;;) {
        const window = next();
        if (!window) break;
        const scored = this.checkWindow(window, false);
        const B = window.batch;
        const arena = new Arena();
        try {
          const ctx: StepContext = { device: this.device, stream, training: false, arena };
          const fa = this.fast.forward(
            uploadWindow(window, this.device, arena, ctx.stream),
            fastState ?? this.fast.core.zeroState(B, ctx),
            ctx,
          );
          const messages = Array.from({ length: window.steps / this.period }, (_, j) => fa.outputs[(j + 1) * this.period - 1]);
          const fb = this.slow.forward(messages, slowState ?? this.slow.core.zeroState(B, ctx), this.slowTargetTensors(window, arena), ctx);
          const fastLogits = fa.outputs.map((h) => this.fast.readout.forward(h, ctx).output);
          const keep = (s: LSTMState) => ({
            h: ops.clone({ device: this.device, stream }, s.h),
            c: ops.clone({ device: this.device, stream }, s.c),
          });
          const nextFast = keep(fa.state);
          const nextSlow = keep(fb.state);
          const [fl, sl] = await Promise.all([fa.loss.readFloat32(stream), fb.loss.readFloat32(stream)]);
          const fastRight = await countRight(fastLogits, window.targets, B, stream);
          const slowRight = await countRight(fb.logits, window.slowTargets, B, stream);
          dispose();
          fastState = nextFast;
          slowState = nextSlow;
          total.fastNats += fl[0] * B;
          total.slowNats += sl[0] * B;
          total.fastRight += fastRight;
          total.slowRight += slowRight;
          total.fastScored += scored.fast;
          total.slowScored += scored.slow;
        } finally {
          arena.dispose();
        }
      }
    } finally {
      dispose();
    }
    const per = (v: number, n: number) => (n > 0 ? v / n : NaN);
    return {
      fastBits: per(total.fastNats, total.fastScored) / Math.LN2,
      slowBits: per(total.slowNats, total.slowScored) / Math.LN2,
      fastAccuracy: per(total.fastRight, total.fastScored),
      slowAccuracy: per(total.slowRight, total.slowScored),
      fastScored: total.fastScored,
      slowScored: total.slowScored,
    };
  }

  /** Every tensor a checkpoint holds, by name: both cores' weights, the optimizers' state, M, the carried states. */
  private namedTensors(): NamedTensor[] {
    const out: NamedTensor[] = [];
    const fast = this.fast.parameters();
    const slow = this.slow.parameters();
    fast.forEach((p, i) => out.push({ name: `fast.${i}`, tensor: p.value }));
    slow.forEach((p, i) => out.push({ name: `slow.${i}`, tensor: p.value }));
    this.fastOptimizer.stateTensors(fast).forEach((tensor, i) => out.push({ name: `fast.optimizer.${i}`, tensor }));
    this.slowOptimizer.stateTensors(slow).forEach((tensor, i) => out.push({ name: `slow.optimizer.${i}`, tensor }));
    const synth = this.synthesizer;
    if (synth) {
      synth.network.stateTensors().forEach((tensor, i) => out.push({ name: `synthesizer.${i}`, tensor }));
      synth.optimizer!.stateTensors(synth.parameters()).forEach((tensor, i) => out.push({ name: `synthesizer.optimizer.${i}`, tensor }));
    }
    for (const [name, state] of [
      ['fast', this.fastState],
      ['slow', this.slowState],
    ] as const)
      if (state) {
        out.push({ name: `state.${name}.h`, tensor: state.h });
        out.push({ name: `state.${name}.c`, tensor: state.c });
      }
    return out;
  }

  /**
   * Saves the run: weights, optimizer states, M, the carried states, the window and step
   * counts, and `host` (JSON: e.g. the task's state()). Waits for the enqueued work.
   */
  async save(path: string, host: unknown = null): Promise<void> {
    const record = {
      kind: 'multi-timescale',
      method: this.method,
      period: this.period,
      fastHidden: this.fast.hidden,
      slowHidden: this.slow.hidden,
      windows: this.windows,
      rng: this.rng.state(),
      fastSteps: this.fastOptimizer.steps,
      slowSteps: this.slowOptimizer.steps,
      synthesizerSteps: this.synthesizer?.optimizer?.steps ?? null,
      host,
    };
    await writeCheckpoint(path, this.namedTensors(), record, this.stream);
  }

  /** Restores a run saved by save() into this trainer (same cores, method and period); returns its `host`. */
  async load(path: string): Promise<unknown> {
    const loaded: LoadedCheckpoint = await readCheckpoint(path);
    const r = (loaded.host ?? {}) as Record<string, unknown>;
    const bad = (why: string) => error('ERR_SYNTHGRAD_CHECKPOINT', `MultiTimescaleTraining.load: ${path} ${why}`);
    if (r.kind !== 'multi-timescale') throw bad('is not a multi-timescale training checkpoint');
    if (r.method !== this.method) throw bad(`was saved with method '${String(r.method)}', this trainer uses '${this.method}'`);
    if (r.period !== this.period) throw bad(`was saved with period ${String(r.period)}, this trainer has ${this.period}`);
    const count = (v: unknown, what: string) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`has no valid '${what}' (got ${JSON.stringify(v)})`);
      return v;
    };
    const windows = count(r.windows, 'windows');
    const fastSteps = count(r.fastSteps, 'fastSteps');
    const slowSteps = count(r.slowSteps, 'slowSteps');
    const synthSteps = this.synthesizer ? count(r.synthesizerSteps, 'synthesizerSteps') : 0;
    this.resetState();
    const zeros = (name: string): LSTMState | undefined => {
      const h = loaded.tensors.get(`state.${name}.h`);
      const c = loaded.tensors.get(`state.${name}.c`);
      return h && c ? { h: Tensor.zeros(h.shape, { device: this.device }), c: Tensor.zeros(c.shape, { device: this.device }) } : undefined;
    };
    this.fastState = zeros('fast');
    this.slowState = zeros('slow');
    try {
      await restoreTensors(loaded, this.namedTensors(), this.stream);
    } catch (e) {
      this.resetState();
      throw e;
    }
    this.rng.restore(r.rng as number[]);
    this.windows = windows;
    this.fastOptimizer.steps = fastSteps;
    this.slowOptimizer.steps = slowSteps;
    if (this.synthesizer) this.synthesizer.optimizer!.steps = synthSteps;
    return r.host;
  }

  /** Waits for all enqueued work. */
  async synchronize(): Promise<void> {
    await this.stream.synchronize();
  }

  dispose(): void {
    this.resetState();
    for (const t of [...(this.lastWindow?.synthetic ?? []), ...(this.lastWindow?.target ?? [])]) t.dispose();
    this.lastWindow = undefined;
    this.fastOptimizer.dispose();
    this.slowOptimizer.dispose();
    this.synthesizer?.dispose();
    this.slow.dispose();
    this.fast.dispose();
  }
}

/** How many scored labels (time-major [steps * B], -1 not scored) the argmax of `logits[t]` gets right. */
async function countRight(logits: (Tensor | undefined)[], labels: Int32Array, B: number, stream: Stream): Promise<number> {
  let right = 0;
  for (let t = 0; t < logits.length; t++) {
    const l = logits[t];
    if (!l) continue;
    const v = await l.readFloat32(stream);
    const C = l.shape[1];
    for (let b = 0; b < B; b++) {
      const y = labels[t * B + b];
      if (y === -1) continue;
      let best = 0;
      for (let c = 1; c < C; c++) if (v[b * C + c] > v[b * C + best]) best = c;
      if (best === y) right++;
    }
  }
  return right;
}

export { MultiTimescaleCountTask } from '../data/multiscale';
export type { MultiTimescaleWindow, MultiTimescaleCountOptions } from '../data/multiscale';
