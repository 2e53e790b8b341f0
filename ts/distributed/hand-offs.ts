// How a training step's tensors cross ranks in distribute(): h_i up from module i to module
// i+1, δ_i down from module i+1 to module i, when the two modules are on different ranks (a
// "cut"; i is the lower module, 0-based). distribute.ts makes the same calls in the same places
// whatever the transport; the two ways here differ in how and when the bytes move:
//   HostHandOffs  (mpi(), any device): the tensor is read back to the host, sent with MPI's
//                 non-blocking send, received into a host array and uploaded again.
//   NcclHandOffs  (nccl(), a CUDA model): ncclSend/ncclRecv of the device buffers on the
//                 rank's stream, no host copy. An NCCL transfer on a stream waits there until
//                 the peer's stream reaches the matching one, so every transfer is issued in a
//                 group with the others of its exchange, in an order that no schedule can
//                 turn into a cycle of ranks waiting for each other (docs/distributed.md,
//                 "NCCL: the order of the transfers"; with the complete unlock, every transfer
//                 of a step in one group per rank at the step's end).
import { error } from '../errors';
import { StepContext } from '../nn/module';
import { Arena, Tensor } from '../tensor';
import type { Transport } from './mpi';
import type { NcclTransport } from './nccl';

export interface HandOffs {
  /** 'nccl': device buffers on the stream; 'mpi': host copies over the (MPI) transport */
  readonly kind: 'nccl' | 'mpi';
  /**
   * Starts step t (0-based) with its context (stream, arena). `deltasInStep`: the step uses δ
   * within itself (λ > 0 or warm-up); otherwise only synthesizers' regressions use them, later.
   */
  begin(t: number, ctx: StepContext, deltasInStep: boolean): void;
  /** h_i, module i's output, to the rank of module i+1 (right after module i's forward) */
  sendUp(i: number, h: Tensor): void;
  /** h_i from the rank of module i (right before module i+1's forward) */
  receiveUp(i: number, shape: number[]): Promise<Tensor>;
  /** δ_i to the rank of module i (right after module i+1's backward) */
  sendDown(i: number, delta: Tensor): void;
  /**
   * δ_i from the rank of module i+1 (at module i's turn in the backward). It may settle later
   * than the step (NCCL with λ = 0: at the next step's exchange on this cut, or flush()); it
   * settles before the next step's receiveUp(i)/sendUp(i) returns.
   */
  receiveDown(i: number, shape: number[]): Promise<Tensor>;
  /**
   * The complete unlock, at the end of each step's work on every rank (after its last
   * receiveUp/receiveDown): issues what the step held for its end. NCCL: all of this rank's
   * transfers of the step in one group; MPI: nothing (each was posted when asked for).
   */
  exchange(): void;
  /** Exchanges every δ still held back (before a checkpoint, and when fit ends); every rank calls it at the same point. */
  flush(): Promise<void>;
  /** At the end of each step: waits for what must be done by then (MPI: the previous step's sends). */
  endStep(): Promise<void>;
  /** When fit ends (after flush()): waits for every transfer. */
  finish(): Promise<void>;
  /** `p`, a wait for this rank's stream (NCCL: under the transport's watchdog, see NcclTransport.watch). */
  watch<T>(p: Promise<T>, what: string): Promise<T>;
  /** After fit (done or failed): forgets what it holds. */
  reset(): void;
}

/** A cut's MPI tags: those of h_i and δ_i (distribute.ts numbers them). */
export type Tags = (i: number, kind: 'h' | 'delta') => number;

/** Host copies over the transport: what distribute() did before NCCL, unchanged. */
export class HostHandOffs implements HandOffs {
  readonly kind = 'mpi';
  private t = 0;
  private ctx!: StepContext;
  /** this step's sends, and the previous step's (awaited at this step's end) */
  private sends: Promise<void>[] = [];
  private previous: Promise<void>[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly owner: readonly number[],
    private readonly tags: Tags,
  ) {}

  begin(t: number, ctx: StepContext): void {
    this.t = t;
    this.ctx = ctx;
  }

  sendUp(i: number, h: Tensor): void {
    this.send(h, this.owner[i + 1], this.tags(i, 'h'));
  }

  receiveUp(i: number, shape: number[]): Promise<Tensor> {
    return this.receive(shape, this.owner[i], this.tags(i, 'h'), `h_${i + 1}`);
  }

  sendDown(i: number, delta: Tensor): void {
    this.send(delta, this.owner[i], this.tags(i, 'delta'));
  }

  receiveDown(i: number, shape: number[]): Promise<Tensor> {
    return this.receive(shape, this.owner[i + 1], this.tags(i, 'delta'), `δ_${i + 1}`);
  }

  exchange(): void {
    // every send and receive was posted when asked for
  }

  flush(): Promise<void> {
    return Promise.resolve(); // nothing is held back: every receive is posted when asked for
  }

  async endStep(): Promise<void> {
    await Promise.all(this.previous);
    this.previous = this.sends;
    this.sends = [];
  }

  watch<T>(p: Promise<T>): Promise<T> {
    return p;
  }

  async finish(): Promise<void> {
    await Promise.all([...this.previous, ...this.sends]);
  }

  reset(): void {
    this.sends = [];
    this.previous = [];
  }

  private send(x: Tensor, to: number, tag: number): void {
    const p = x.readFloat32(this.ctx.stream).then((values) => this.transport.send(values, to, tag));
    p.catch(() => undefined); // awaited at the next step's end; an early failure is not an unhandled rejection
    this.sends.push(p);
  }

  private receive(shape: number[], from: number, tag: number, what: string): Promise<Tensor> {
    const { device, arena } = this.ctx;
    const p = this.transport
      .receive(new Float32Array(shape.reduce((a, b) => a * b, 1)), from, tag, `${what} of step ${this.t + 1}`)
      .then((values) => Tensor.fromArray(values, shape, { device, arena }));
    p.catch(() => undefined); // awaited by the step (or carried into the next one)
    return p;
  }
}

/** A δ_i this rank will receive at the next exchange on cut i (or at flush()). */
interface HeldReceive {
  into: Tensor;
  resolve: (t: Tensor) => void;
  reject: (e: unknown) => void;
}

/** A transfer of the complete unlock's step, held for the step's end (exchange()). */
interface AtStepEnd {
  cut: number;
  /** 0: h_cut (up), 1: δ_cut (down): the order within a cut */
  kind: 0 | 1;
  peer: number;
  send?: Tensor;
  receive?: HeldReceive;
}

/**
 * NCCL transfers of device buffers on the rank's stream. Per step t the exchanges are, in
 * this order on every rank (each an NCCL group on each of its two or more ranks):
 *   X_i(t)  for cuts i ascending, at module i's and module i+1's forward: h_i(t) up, with
 *           δ_i(t-1) down when it was held back (step t-1 had λ = 0 and module i+1 updated);
 *   D_i(t)  for cuts i descending, at module i+1's and module i's backward, only when step t
 *           uses δ within itself (λ > 0, warm-up): δ_i(t) down;
 * and, when fit ends or saves a checkpoint, F: every δ still held back, one group per rank.
 * With λ = 0 a δ is needed only by M_i's regression, in a later step, so it is held back to
 * X_i(t+1) rather than received at module i's turn (which would make module i's backward, and
 * every rank below, wait for the rank above).
 * With the complete unlock (`unlock`) no forward waits for h: h_i(t) and δ_i(t) are only
 * regression targets, awaited in step t+1. Each rank then holds every transfer of step t and
 * issues them, sorted by cut and h before δ, as one group U(t) at the end of the step's work
 * (exchange()); nothing is left for flush().
 */
export class NcclHandOffs implements HandOffs {
  readonly kind = 'nccl';
  private t = 0;
  private ctx!: StepContext;
  /** the complete unlock: this step's transfers, for exchange() */
  private atEnd: AtStepEnd[] = [];
  private deltasInStep = true;
  /** per cut: δ_i held back to the next exchange (on the upper rank: to send; on the lower: to receive) */
  private heldSend: (Tensor | undefined)[] = [];
  private heldReceive: (HeldReceive | undefined)[] = [];
  /** this step's groups (resolved at once with NCCL; a stand-in's host copies otherwise) */
  private groups: Promise<void>[] = [];

  constructor(
    private readonly nccl: NcclTransport,
    private readonly owner: readonly number[],
    /** the complete unlock: every transfer of a step at its end, in one group per rank (exchange()) */
    private readonly unlock = false,
  ) {}

  begin(t: number, ctx: StepContext, deltasInStep: boolean): void {
    this.t = t;
    this.ctx = ctx;
    this.deltasInStep = deltasInStep;
  }

  sendUp(i: number, h: Tensor): void {
    const peer = this.owner[i + 1];
    if (this.unlock) {
      this.atEnd.push({ cut: i, kind: 0, peer, send: h }); // to exchange()
      return;
    }
    const held = this.takeHeldReceive(i);
    const what = `h_${i + 1} to rank ${peer}` + (held ? ` and δ_${i + 1} of the step before from it` : '');
    this.group(
      what,
      () => {
        this.nccl.sendTensor(h, peer, this.ctx.stream);
        if (held) this.nccl.receiveTensor(held.into, peer, this.ctx.stream);
      },
      held ? [held] : [],
    );
  }

  receiveUp(i: number, shape: number[]): Promise<Tensor> {
    const peer = this.owner[i];
    const into = this.empty(shape);
    if (this.unlock) return this.receiveAtEnd(i, 0, peer, into);
    const held = this.heldSend[i];
    this.heldSend[i] = undefined;
    return this.group(`h_${i + 1} from rank ${peer}`, () => {
      this.nccl.receiveTensor(into, peer, this.ctx.stream);
      if (held) this.nccl.sendTensor(held, peer, this.ctx.stream);
    }).then(() => into);
  }

  sendDown(i: number, delta: Tensor): void {
    if (this.unlock) {
      this.atEnd.push({ cut: i, kind: 1, peer: this.owner[i], send: delta }); // to exchange()
      return;
    }
    if (!this.deltasInStep) {
      this.heldSend[i] = delta; // to X_i(t+1) or F
      return;
    }
    const peer = this.owner[i];
    this.group(`δ_${i + 1} to rank ${peer}`, () => this.nccl.sendTensor(delta, peer, this.ctx.stream)).catch(() => undefined); // awaited in endStep
  }

  receiveDown(i: number, shape: number[]): Promise<Tensor> {
    const into = this.empty(shape);
    if (this.unlock) return this.receiveAtEnd(i, 1, this.owner[i + 1], into);
    if (this.deltasInStep) {
      const peer = this.owner[i + 1];
      return this.group(`δ_${i + 1} from rank ${peer}`, () => this.nccl.receiveTensor(into, peer, this.ctx.stream)).then(() => into);
    }
    const p = new Promise<Tensor>((resolve, reject) => {
      this.heldReceive[i] = { into, resolve, reject };
    });
    p.catch(() => undefined); // awaited by a later regression (reset() rejects it when fit fails first)
    return p;
  }

  exchange(): void {
    const all = this.atEnd;
    if (all.length === 0) return;
    this.atEnd = [];
    // The same order on both ranks of every pair: NCCL matches a pair's sends and receives in the order issued.
    all.sort((a, b) => a.cut - b.cut || a.kind - b.kind);
    const stream = this.ctx.stream;
    const names = all.map((x) => `${x.kind === 0 ? 'h' : 'δ'}_${x.cut + 1} ${x.send ? 'to' : 'from'} rank ${x.peer}`);
    const done = this.group(
      `${names.join(', ')} of step ${this.t + 1} (the complete unlock's exchange)`,
      () => {
        for (const x of all) {
          if (x.send) this.nccl.sendTensor(x.send, x.peer, stream);
          else this.nccl.receiveTensor(x.receive!.into, x.peer, stream);
        }
      },
      all.flatMap((x) => (x.receive ? [x.receive] : [])),
    );
    done.catch(() => undefined); // awaited in endStep
  }

  async flush(): Promise<void> {
    this.exchange(); // (the complete unlock: nothing left, exchange() ran at the step's end)
    const sends = this.heldSend.flatMap((t, i) => (t ? [{ i, t }] : []));
    const receives = this.heldReceive.flatMap((r, i) => (r ? [{ i, r }] : []));
    if (sends.length + receives.length === 0) return;
    this.heldSend = [];
    this.heldReceive = [];
    const stream = this.ctx.stream;
    const what = 'the δ held back (exchanged before a checkpoint or when fit ends)';
    const done = this.group(
      what,
      () => {
        for (const { i, t } of sends) this.nccl.sendTensor(t, this.owner[i], stream);
        for (const { i, r } of receives) this.nccl.receiveTensor(r.into, this.owner[i + 1], stream);
      },
      receives.map((x) => x.r),
    );
    await done;
    await this.nccl.watch(stream.synchronize(), what);
  }

  async endStep(): Promise<void> {
    const groups = this.groups;
    this.groups = [];
    await Promise.all(groups); // each under the watchdog
  }

  finish(): Promise<void> {
    return this.endStep();
  }

  watch<T>(p: Promise<T>, what: string): Promise<T> {
    return this.nccl.watch(p, what);
  }

  reset(): void {
    const gone = () => error('ERR_SYNTHGRAD_STATE', 'fit ended before this tensor was exchanged');
    for (const r of this.heldReceive) r?.reject(gone());
    for (const x of this.atEnd) x.receive?.reject(gone());
    this.heldSend = [];
    this.heldReceive = [];
    this.atEnd = [];
    this.groups = [];
  }

  /** A receive held for exchange(); settles with its group. */
  private receiveAtEnd(cut: number, kind: 0 | 1, peer: number, into: Tensor): Promise<Tensor> {
    const p = new Promise<Tensor>((resolve, reject) => {
      this.atEnd.push({ cut, kind, peer, receive: { into, resolve, reject } });
    });
    p.catch(() => undefined); // awaited by a regression in the next step (reset() rejects it when fit fails first)
    return p;
  }

  private takeHeldReceive(i: number): HeldReceive | undefined {
    const held = this.heldReceive[i];
    this.heldReceive[i] = undefined;
    return held;
  }

  /** The receive's buffer, in the step's arena (it lives as long as the step's other tensors). */
  private empty(shape: number[]): Tensor {
    return Tensor.empty(shape, { device: this.ctx.device, arena: this.ctx.arena as Arena });
  }

  /** One NCCL group, under the watchdog (`what` names it); the held receives in it settle with it. */
  private group(what: string, transfers: () => void, settles: HeldReceive[] = []): Promise<void> {
    let done: Promise<void>;
    try {
      done = this.nccl.watch(this.nccl.group(transfers), what);
    } catch (e) {
      for (const r of settles) r.reject(e);
      throw e;
    }
    done.then(
      () => settles.forEach((r) => r.resolve(r.into)),
      (e: unknown) => settles.forEach((r) => r.reject(e)),
    );
    done.catch(() => undefined); // awaited in endStep
    this.groups.push(done);
    return done;
  }
}
