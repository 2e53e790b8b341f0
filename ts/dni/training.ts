// The decoupled training step: how each module, its synthesizer and the hand-offs between
// modules are scheduled on streams.
//
// Per step, for modules i = 1..N on streams s_i (all the trainer's stream with streams: 'single'):
//   forward phase   s_i waits for h_{i-1} (an event), computes h_i = f_i(h_{i-1}), records the
//                   event "h_i ready", and predicts ĝ_i = M_i(h_i) (or M_i([h_i, onehot(y)])).
//                   The last module computes the loss and its true gradient instead.
//   backward phase  (host order N..1) module i backpropagates its incoming gradient — ĝ_i, or
//                   (1-λ)ĝ_i + λδ_i under BP(λ) — through f_i only, updates θ_i, and sends
//                   δ_{i-1} = g·∂h_i/∂h_{i-1} down (event "δ_{i-1} ready"). M_i then regresses
//                   onto δ_i on s_i (lockstep: in the same step; pipelined: `depth` steps later).
// Each parameter is touched on one stream only, and every cross-stream read waits for an
// event, so with pipelining off the result is bit-identical to running everything on one
// stream. The host never waits inside a step, and every step ends with the trainer's stream
// waiting for the module streams. The module streams wait for the trainer's stream only when
// it wrote what they use (a graph launch, a probe) or while capturing (the inputs are copied
// there, and the module streams join the capture); otherwise module 1 may start step t+1
// while the others finish step t. Lockstep steps with p = 1 can be captured.
//
// The complete unlock (`unlock`, ./unlock.ts) replaces the forward phase's waits: module i > 1
// runs on Î_i = I_i(x) instead of h_{i-1}, so its forward, ĝ_i, backward and update enqueue
// on s_i with no wait. The waits left are the regression targets' hand-offs, enqueued after
// every module's own work: s_i waits for "h_{i-1} ready" before I_i regresses onto h_{i-1}, and
// for "δ_i ready" before M_i regresses onto δ_i, both of the same step (see unlockedStep).
import { Device } from '../device';
import { endsWithReLU } from '../nn/layers';
import { Loss } from '../nn/losses';
import { Forwarded, Parameter, StepContext } from '../nn/module';
import * as ops from '../ops';
import { Optimizer } from '../optim/optimizers';
import { Random } from '../random';
import { Event, Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import type { NamedTensor } from '../train/checkpoint';
import { StrategyState, stepCount, TrainingStrategy } from '../train/strategy';
import type { ModuleDiagnostics } from './diagnostics';
import type { DecoupledNetwork } from './network';
import { Prediction } from './synthesizer';
import type { InputPrediction } from './unlock';
import { error, typeError } from '../errors';

/** What one step computed at each cut (kept for inspection when `record` is on). */
export interface StepRecord {
  /** h_i, the output of module i (i < N) */
  activations: Tensor[];
  /** ĝ_i = M_i(h_i) */
  synthetic: Tensor[];
  /** δ_i, the target M_i regressed onto (undefined when module i+1 did not update) */
  targets: (Tensor | undefined)[];
  /** which modules updated this step */
  updated: boolean[];
  /** with `unlock`: Î_i = I_i(x), the synthetic inputs of modules 2..N */
  inputs?: Tensor[];
}

/** A synthesizer update waiting for its target (pipelined schedule). */
interface PendingLearn {
  step: number;
  prediction: Prediction;
  target: Tensor;
  ready?: Event;
}

export class DecoupledTraining implements TrainingStrategy {
  readonly maxInFlight: number;
  /** set to keep the last step's internals in `lastStep` (tests, debugging) */
  record = false;
  lastStep?: StepRecord;
  /** steps taken */
  steps = 0;

  private readonly streams: Stream[] | undefined;
  private readonly depth: number;
  private readonly stepStart: Event;
  /** the trainer's stream wrote module state since the last step (graph launch, probe) */
  private forkNext = false;
  private readonly hReady: Event[];
  private readonly stepDone: Event[];
  /** per cut, a ring of events for δ_i of the last depth+1 steps */
  private readonly deltaReady: Event[][];
  private readonly pending: PendingLearn[][];
  private readonly arenas: Arena[] = [];
  private readonly params: Parameter[][];
  /** each synthesizer's latest L2 loss (NaN until it first learns) */
  private readonly synthLoss: Tensor[];
  /** with `unlock`: each input model's latest L2 loss (NaN until it first learns) */
  private readonly inputLoss: Tensor[];

  constructor(
    readonly network: DecoupledNetwork,
    readonly device: Device,
    readonly loss: Loss,
    readonly optimizers: Optimizer[],
    private readonly updateRng: Random,
  ) {
    const { schedule, streams } = network.config;
    this.depth = schedule.kind === 'pipelined' ? schedule.depth : 0;
    this.maxInFlight = this.depth + 1;
    this.streams = streams === 'per-module' ? network.modules.map(() => new Stream(device)) : undefined;
    if (new Set(optimizers).size !== optimizers.length)
      throw typeError('decoupled training needs one optimizer per module: give the Trainer a factory, e.g. () => new Adam({ lr })');
    this.stepStart = new Event(device);
    this.hReady = network.modules.map(() => new Event(device));
    this.stepDone = network.modules.map(() => new Event(device));
    this.deltaReady = network.modules.map(() => Array.from({ length: this.depth + 1 }, () => new Event(device)));
    this.pending = network.modules.map(() => []);
    this.params = network.modules.map((m) => m.parameters());
    this.synthLoss = network.synthesizers.map(() => noLoss(device));
    this.inputLoss = network.inputModels.map(() => noLoss(device));
  }

  /** The learning rate of module 1's optimizer (the one fit reports). */
  learningRate(): number | undefined {
    return this.optimizers[0]?.lr;
  }

  /** Why a step cannot be captured into a graph (undefined: it can, once warm-up is over). */
  captureBlocker(): string | undefined {
    const { schedule } = this.network.config;
    if (schedule.kind === 'pipelined') return 'the pipelined schedule carries work from one step into later ones';
    if (schedule.pUpdate < 1) return 'stochastic updates are drawn on the host at every step';
    return undefined;
  }

  /** The modules' and synthesizers' optimizer state, step counts and the update draws' generator. */
  checkpointState(): StrategyState {
    if (this.depth > 0)
      throw error(
        'ERR_SYNTHGRAD_CHECKPOINT',
        'checkpoint: the pipelined schedule carries work from one step into later ones and cannot be saved; use the lockstep schedule',
      );
    const tensors: NamedTensor[] = [];
    this.optimizers.forEach((o, i) =>
      o.stateTensors(this.params[i]).forEach((tensor, k) => tensors.push({ name: `module${i + 1}.optimizer.${k}`, tensor })),
    );
    this.synthesizerOptimizers().forEach((o, i) =>
      o
        .stateTensors(this.network.synthesizers[i].parameters())
        .forEach((tensor, k) => tensors.push({ name: `synthesizer${i + 1}.optimizer.${k}`, tensor })),
    );
    const inputs = this.inputOptimizers();
    inputs.forEach((o, i) =>
      o
        .stateTensors(this.network.inputModels[i].parameters())
        .forEach((tensor, k) => tensors.push({ name: `input${i + 2}.optimizer.${k}`, tensor })),
    );
    return {
      tensors,
      host: {
        steps: this.steps,
        updateRng: this.updateRng.state(),
        optimizerSteps: this.optimizers.map((o) => o.steps),
        synthesizerSteps: this.synthesizerOptimizers().map((o) => o.steps),
        ...(this.network.config.unlock ? { inputSteps: inputs.map((o) => o.steps) } : {}),
      },
    };
  }

  restoreState(host: unknown): void {
    const h = (host ?? {}) as {
      steps?: unknown;
      updateRng?: unknown;
      optimizerSteps?: unknown;
      synthesizerSteps?: unknown;
      inputSteps?: unknown;
    };
    const counts = (v: unknown, n: number, what: string) => {
      if (!Array.isArray(v) || v.length !== n)
        throw error('ERR_SYNTHGRAD_CHECKPOINT', `checkpoint: '${what}' must list ${n} step counts, got ${JSON.stringify(v)}`);
      return v.map((c) => stepCount(c, what));
    };
    const steps = stepCount(h.steps, 'steps');
    const moduleSteps = counts(h.optimizerSteps, this.optimizers.length, 'optimizerSteps');
    const synthSteps = counts(h.synthesizerSteps, this.network.synthesizers.length, 'synthesizerSteps');
    const inputs = this.inputOptimizers();
    const inputSteps = this.network.config.unlock ? counts(h.inputSteps, inputs.length, 'inputSteps') : [];
    this.updateRng.restore(h.updateRng as number[]);
    this.steps = steps;
    this.optimizers.forEach((o, i) => {
      o.steps = moduleSteps[i];
    });
    this.synthesizerOptimizers().forEach((o, i) => {
      o.steps = synthSteps[i];
    });
    inputs.forEach((o, i) => {
      o.steps = inputSteps[i];
    });
    for (const losses of [this.synthLoss, this.inputLoss])
      losses.forEach((l, i) => {
        l.dispose();
        losses[i] = noLoss(this.device);
      });
    this.forkNext = true; // the module streams wait for the restored state (copied on the trainer's stream)
  }

  private synthesizerOptimizers(): Optimizer[] {
    return this.network.synthesizers.map((s) => {
      if (!s.optimizer) throw error('ERR_SYNTHGRAD_STATE', `${s.name}: used before initialize()`);
      return s.optimizer;
    });
  }

  private inputOptimizers(): Optimizer[] {
    return this.network.inputModels.map((m) => {
      if (!m.optimizer) throw error('ERR_SYNTHGRAD_STATE', `${m.name}: used before initialize()`);
      return m.optimizer;
    });
  }

  /** Warm-up steps (plain backprop) run uncaptured. */
  captureReady(): boolean {
    return this.steps >= this.network.config.warmupSteps;
  }

  step(x: Tensor, y: Tensor, ctx: StepContext): Tensor {
    const net = this.network;
    const cfg = net.config;
    const capture = ctx.capture;
    // A captured step counts once per launch (below), not when it is recorded.
    const t = capture ? this.steps : this.steps++;
    const warm = t < cfg.warmupSteps;
    const lambda = warm ? 1 : cfg.lambda;
    const p = warm ? 1 : cfg.schedule.pUpdate;
    const n = net.modules.length;
    // A captured step's tensors live as long as its graph: the capture's arena owns them.
    const arena = capture ? ctx.arena : new Arena();
    if (!capture) this.arenas.push(arena);
    const streams = this.streams ?? net.modules.map(() => ctx.stream);
    const separate = this.streams !== undefined;
    const mctx: StepContext[] = streams.map((stream) => ({ device: this.device, stream, training: true, arena, capture }));
    if (separate && (capture || this.forkNext)) {
      this.stepStart.record(ctx.stream);
      for (const s of streams) s.wait(this.stepStart);
      this.forkNext = false;
    } else if (separate && ctx.batchWritten) {
      for (const s of streams) s.wait(ctx.batchWritten); // x and y are read on the module streams
    }
    // Which modules update this step: drawn on the host from a seeded generator.
    const updated = net.modules.map(() => p >= 1 || this.updateRng.next() < p);
    if (cfg.unlock) {
      const { loss, record } = this.unlockedStep(x, y, updated, mctx, separate);
      this.endStep(ctx, streams, separate, () => record);
      return loss;
    }

    // Forward phase.
    const forwards: Forwarded[] = [];
    const predictions: Prediction[] = [];
    let h = x;
    for (let i = 0; i < n; i++) {
      if (i > 0 && separate) streams[i].wait(this.hReady[i - 1]);
      const f = net.modules[i].forward(h, mctx[i]);
      forwards.push(f);
      h = f.output;
      if (i < n - 1) {
        if (separate) this.hReady[i].record(streams[i]);
        predictions.push(net.synthesizers[i].predict(h, y, mctx[i]));
      }
    }
    const lossForward = this.loss.forward(h, y, mctx[n - 1]);

    // Backward phase, from the top: `above` is δ_i sent down by module i+1 this step.
    let above: Tensor | undefined = lossForward.backward(mctx[n - 1]);
    const targets: (Tensor | undefined)[] = new Array(n - 1).fill(undefined);
    const slot = t % (this.depth + 1);
    for (let i = n - 1; i >= 0; i--) {
      const s = streams[i];
      let g: Tensor;
      if (i === n - 1) {
        g = above!;
      } else {
        const synthetic = predictions[i].gradient;
        targets[i] = above;
        if (above && lambda > 0) {
          if (separate) s.wait(this.deltaReady[i][slot]);
          g = lambda === 1 ? above : this.mix(synthetic, above, lambda, mctx[i]);
        } else {
          g = synthetic;
        }
      }
      let down: Tensor | undefined;
      if (updated[i]) {
        down = forwards[i].backward(g, mctx[i], i > 0);
        this.optimizers[i].step(this.params[i], s, capture);
        if (i > 0 && separate) this.deltaReady[i - 1][slot].record(s);
      }
      if (i < n - 1) this.scheduleLearn(i, t, above && { step: t, prediction: predictions[i], target: above }, mctx[i], separate);
      above = down;
    }

    this.endStep(ctx, streams, separate, () => ({
      activations: forwards.slice(0, -1).map((f) => f.output),
      synthetic: predictions.map((q) => q.gradient),
      targets,
      updated,
    }));
    return lossForward.loss;
  }

  /** What every step ends with, after its work was enqueued on the module streams. */
  private endStep(ctx: StepContext, streams: Stream[], separate: boolean, record: () => StepRecord): void {
    // The trainer's stream (which reads the loss) waits for every module's work of this step.
    if (separate) {
      for (let i = 0; i < streams.length; i++) ctx.stream.wait(this.stepDone[i].record(streams[i]));
    }
    // Keep the tensors of the steps a pending synthesizer update may still use.
    while (this.arenas.length > this.depth + 1) this.arenas.shift()!.dispose();
    if (ctx.capture) {
      ctx.capture.beforeLaunch(() => {
        this.steps++;
        this.forkNext = true;
      });
    }
    if (this.record) this.lastStep = record();
  }

  /**
   * The complete unlock's step. First every module's own work, with no cross-stream wait:
   * module i runs on x (i = 1) or on Î_i = I_i(x), predicts ĝ_i = M_i(h_i) (the last module
   * computes its loss and the true gradient instead), backpropagates it through f_i, updates
   * θ_i and sends δ_{i-1} down. Then the regressions, each after the event of its target:
   * on s_i, I_i onto h_{i-1} (module i-1's output of this step), then M_i onto δ_i (module
   * i+1's, when it updated). Targets of the same step, regressed by the weights that
   * predicted: nothing is stale. Module i's next step follows these regressions on s_i, so it
   * starts after module i-1's forward and module i+1's backward of this step.
   */
  private unlockedStep(
    x: Tensor,
    y: Tensor,
    updated: boolean[],
    mctx: StepContext[],
    separate: boolean,
  ): { loss: Tensor; record: StepRecord } {
    const net = this.network;
    const n = net.modules.length;
    const forwards: Forwarded[] = [];
    const inputs: InputPrediction[] = [];
    const predictions: Prediction[] = [];
    const deltas: (Tensor | undefined)[] = new Array(n - 1).fill(undefined);
    let loss: Tensor | undefined;
    for (let i = 0; i < n; i++) {
      const c = mctx[i];
      if (i > 0) inputs.push(net.inputModels[i - 1].predict(x, c));
      const f = net.modules[i].forward(i > 0 ? inputs[i - 1].input : x, c);
      forwards.push(f);
      let g: Tensor;
      if (i < n - 1) {
        if (separate) this.hReady[i].record(c.stream);
        predictions.push(net.synthesizers[i].predict(f.output, y, c));
        g = predictions[i].gradient;
      } else {
        const lossForward = this.loss.forward(f.output, y, c);
        loss = lossForward.loss;
        g = lossForward.backward(c)!;
      }
      if (updated[i]) {
        const down = f.backward(g, c, i > 0);
        this.optimizers[i].step(this.params[i], c.stream, c.capture);
        if (i > 0) {
          deltas[i - 1] = down;
          if (separate) this.deltaReady[i - 1][0].record(c.stream);
        }
      }
    }
    for (let i = 0; i < n; i++) {
      const c = mctx[i];
      if (i > 0) {
        if (separate) c.stream.wait(this.hReady[i - 1]);
        ops.copy(c, inputs[i - 1].learn(forwards[i - 1].output, c), this.inputLoss[i - 1]);
      }
      const delta = deltas[i];
      if (i < n - 1 && delta) {
        if (separate) c.stream.wait(this.deltaReady[i][0]);
        ops.copy(c, predictions[i].learn(delta, c), this.synthLoss[i]);
      }
    }
    return {
      loss: loss!,
      record: {
        activations: forwards.slice(0, -1).map((f) => f.output),
        synthetic: predictions.map((q) => q.gradient),
        targets: deltas,
        updated,
        inputs: inputs.map((q) => q.input),
      },
    };
  }

  /** (1-λ)·ĝ + λ·δ into a new tensor. */
  private mix(synthetic: Tensor, delta: Tensor, lambda: number, ctx: StepContext): Tensor {
    const g = ops.clone(ctx, synthetic);
    ops.axpby(ctx, lambda, delta, 1 - lambda, g);
    return g;
  }

  /**
   * M_i regresses onto δ_i: now (lockstep) or once `depth` more steps were enqueued. Called
   * at every step t, with `learn` undefined when module i+1 did not update: the updates that
   * fall due at t still run then, while their step's tensors and δ event slot are kept.
   */
  private scheduleLearn(i: number, t: number, learn: PendingLearn | undefined, ctx: StepContext, separate: boolean): void {
    const queue = this.pending[i];
    if (learn) queue.push(learn);
    while (queue.length && queue[0].step <= t - this.depth) {
      const due = queue.shift()!;
      if (separate) ctx.stream.wait(this.deltaReady[i][due.step % (this.depth + 1)]);
      const loss = due.prediction.learn(due.target, ctx, due.step < t);
      // Kept in a tensor of its own: the step's arena (and the loss in it) may be gone before a probe reads it.
      ops.copy(ctx, loss, this.synthLoss[i]);
    }
  }

  /**
   * On a probe batch, with nothing updated: each synthesizer's last loss, and how its
   * synthetic gradient compares with the true backpropagated gradient and with its own target.
   */
  async diagnose(x: Tensor, y: Tensor, ctx: StepContext): Promise<ModuleDiagnostics[]> {
    const net = this.network;
    const n = net.modules.length;
    const arena = new Arena();
    const pctx: StepContext = { device: this.device, stream: ctx.stream, training: true, freezeStatistics: true, arena };
    try {
      const forwards: Forwarded[] = [];
      const synthetic: Tensor[] = [];
      let h = x;
      for (let i = 0; i < n; i++) {
        const f = net.modules[i].forward(h, pctx);
        forwards.push(f);
        h = f.output;
        if (i < n - 1) synthetic.push(net.synthesizers[i].predict(h, y, pctx).gradient);
      }
      let g: Tensor | undefined = this.loss.forward(h, y, pctx).backward(pctx);
      const truth: Tensor[] = [];
      for (let i = n - 1; i > 0; i--) {
        g = forwards[i].backward(g!, pctx, true);
        truth[i - 1] = g!;
      }
      // The bootstrapped targets (λ = 0) on the same batch: ĝ_{i+1} carried back through
      // module i+1 (a backward only reads what its forward saved, so it can run again); the
      // last synthesizer's target is the truth.
      const targets: Tensor[] = [];
      for (let i = 0; i < n - 2; i++) targets[i] = forwards[i + 1].backward(synthetic[i + 1], pctx, true)!;
      targets[n - 2] = truth[n - 2];
      // With the unlock: Î_{i+1} = I_{i+1}(x) against h_i of the true path (what evaluation feeds module i+1).
      const synthInputs = net.inputModels.map((m) => m.predict(x, pctx).input);
      // The probe's backward accumulated into the modules' gradients: clear them.
      for (const p of net.parameters()) ops.fill(ctx, p.grad, 0);
      this.forkNext = true;
      const out: ModuleDiagnostics[] = [];
      for (let i = 0; i < n - 1; i++) {
        const [a, b, t] = await Promise.all([synthetic[i], truth[i], targets[i]].map((v) => v.readFloat32(ctx.stream)));
        if (endsWithReLU(net.modules[i])) {
          // Compare on the units that reach the module's parameters: the ReLU drops the others.
          const h = await forwards[i].output.readFloat32(ctx.stream);
          for (let k = 0; k < h.length; k++) if (!(h[k] > 0)) a[k] = b[k] = t[k] = 0;
        }
        const loss = (await this.synthLoss[i].readFloat32(ctx.stream))[0];
        const d: ModuleDiagnostics = {
          module: i + 1,
          synthesizerLoss: loss,
          cosine: cosine(a, b),
          normRatio: Math.sqrt(dot(a, a) / dot(b, b)),
          targetCosine: cosine(a, t),
        };
        if (synthInputs[i]) {
          const [predicted, real] = await Promise.all([synthInputs[i], forwards[i].output].map((v) => v.readFloat32(ctx.stream)));
          d.inputLoss = (await this.inputLoss[i].readFloat32(ctx.stream))[0];
          d.inputCosine = cosine(predicted, real);
        }
        out.push(d);
      }
      return out;
    } finally {
      arena.dispose();
    }
  }

  dispose(): void {
    for (const a of this.arenas) a.dispose();
    this.arenas.length = 0;
    for (const o of this.optimizers) o.dispose();
    for (const l of [...this.synthLoss, ...this.inputLoss]) l.dispose();
  }
}

/** A synthesizer loss not yet measured. */
function noLoss(device: Device): Tensor {
  return Tensor.fromArray([NaN], [1], { device });
}

export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  const aa = dot(a, a);
  const bb = dot(b, b);
  return aa > 0 && bb > 0 ? dot(a, b) / Math.sqrt(aa * bb) : 0;
}
