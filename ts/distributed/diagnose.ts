// fit's `diagnoseEvery` over ranks: DecoupledTraining.diagnose (ts/dni/training.ts) with the
// modules on their ranks. Every rank reads the same probe batch from its own copy of the data;
// h goes up as in a step, the true gradient and each synthesizer's bootstrapped target come
// down, each on per-cut tags of their own. The rank of module i measures M_i (ĝ_i, with the
// truth and the target from the rank above); the rank of module i+1, with the complete unlock,
// measures I_{i+1} against h_i. The ops and the values are the one-process probe's, so the
// records are the same bits; every rank gets every module's record.
import type { Batch } from '../data/dataset';
import type { ModuleDiagnostics } from '../dni/diagnostics';
import type { DecoupledNetwork } from '../dni/network';
import { cosine, dot } from '../dni/training';
import { Device } from '../device';
import { endsWithReLU } from '../nn/layers';
import type { Loss } from '../nn/losses';
import type { Forwarded, StepContext } from '../nn/module';
import * as ops from '../ops';
import type { Stream } from '../stream';
import { Arena, Tensor } from '../tensor';
import type { Transport } from './mpi';

/** Message kinds of the probe, per cut: tag = base + cut * 3 + kind. */
const PROBE_H = 0;
const PROBE_TRUTH = 1;
const PROBE_TARGET = 2;

export interface ProbeContext {
  network: DecoupledNetwork;
  placement: readonly number[];
  transport: Transport;
  device: Device;
  stream: Stream;
  loss: Loss;
  /** the first of the probe's tags (distribute.ts keeps the ones below for itself) */
  tagBase: number;
  /** per module, its synthesizer's latest regression loss (a [1] tensor); per module i > 0, I_i's */
  synthLoss: (Tensor | undefined)[];
  inputLoss: (Tensor | undefined)[];
  /** every rank's value, in rank order (every rank calls it) */
  allGather: (value: unknown, what: string) => Promise<unknown[]>;
}

/** Each synthesizer's diagnostics on `batch` ([rows, ...input] rows, its targets), on every rank. */
export async function probeOverRanks(c: ProbeContext, batch: Batch, rows: number): Promise<ModuleDiagnostics[]> {
  const net = c.network;
  const n = net.modules.length;
  const owner = c.placement;
  const me = c.transport.rank;
  const own = owner.flatMap((r, i) => (r === me ? [i] : []));
  const tag = (cut: number, kind: number) => c.tagBase + cut * 3 + kind;
  const arena = new Arena();
  const pctx: StepContext = { device: c.device, stream: c.stream, training: true, freezeStatistics: true, arena };
  const sends: Promise<void>[] = [];
  const send = (x: Tensor, to: number, t: number) => {
    const p = x.readFloat32(c.stream).then((values) => c.transport.send(values, to, t));
    p.catch(() => undefined); // awaited below
    sends.push(p);
  };
  const receive = async (shape: number[], from: number, t: number, what: string) => {
    const values = await c.transport.receive(
      new Float32Array(shape.reduce((a, b) => a * b, 1)),
      from,
      t,
      `${what} of the diagnostics probe`,
    );
    return Tensor.fromArray(values, shape, { device: c.device, arena });
  };
  try {
    const x = Tensor.fromArray(batch.inputs, [rows, ...net.input], { device: c.device, arena });
    const y = Tensor.fromArray(batch.targets, batch.targets instanceof Int32Array ? [rows] : [rows, batch.targets.length / rows], {
      device: c.device,
      arena,
    });
    const shapes: number[][] = [];
    let shape = [rows, ...net.input];
    for (const m of net.modules) shapes.push((shape = m.outputShape(shape)));
    const forwards: Forwarded[] = [];
    const inputs: Tensor[] = []; // module i's input h_{i-1}
    const synthetic: Tensor[] = [];
    for (const i of own) {
      inputs[i] =
        i === 0
          ? x
          : owner[i - 1] === me
            ? forwards[i - 1].output
            : await receive(shapes[i - 1], owner[i - 1], tag(i - 1, PROBE_H), `h_${i}`);
      forwards[i] = net.modules[i].forward(inputs[i], pctx);
      if (i < n - 1) {
        if (owner[i + 1] !== me) send(forwards[i].output, owner[i + 1], tag(i, PROBE_H));
        synthetic[i] = net.synthesizers[i].predict(forwards[i].output, y, pctx).gradient;
      }
    }
    // Down: the true gradient through each module, and the bootstrapped target ĝ_{i+1} carried
    // back through module i+1 (the last synthesizer's target is the truth).
    const truth: Tensor[] = [];
    const targets: Tensor[] = [];
    for (const i of [...own].reverse()) {
      if (i < n - 1 && owner[i + 1] !== me) {
        truth[i] = await receive(shapes[i], owner[i + 1], tag(i, PROBE_TRUTH), `the true gradient at h_${i + 1}`);
        targets[i] = i === n - 2 ? truth[i] : await receive(shapes[i], owner[i + 1], tag(i, PROBE_TARGET), `the target at h_${i + 1}`);
      }
      if (i === 0) continue;
      const g = i === n - 1 ? c.loss.forward(forwards[i].output, y, pctx).backward(pctx)! : truth[i];
      truth[i - 1] = forwards[i].backward(g, pctx, true)!;
      targets[i - 1] = i === n - 1 ? truth[i - 1] : forwards[i].backward(synthetic[i], pctx, true)!;
      if (owner[i - 1] !== me) {
        send(truth[i - 1], owner[i - 1], tag(i - 1, PROBE_TRUTH));
        if (i < n - 1) send(targets[i - 1], owner[i - 1], tag(i - 1, PROBE_TARGET));
      }
    }
    // The complete unlock: Î_i = I_i(x) against h_{i-1} of the true path, on module i's rank.
    const synthInputs = own.map((i) => (i > 0 && net.inputModels.length ? net.inputModels[i - 1].predict(x, pctx).input : undefined));
    // The probe's backward accumulated into the modules' gradients: clear them.
    for (const p of net.parameters()) ops.fill(pctx, p.grad, 0);
    const records: Partial<ModuleDiagnostics>[] = [];
    for (const i of own) {
      if (i < n - 1) {
        const [a, b, t] = await Promise.all([synthetic[i], truth[i], targets[i]].map((v) => v.readFloat32(c.stream)));
        if (endsWithReLU(net.modules[i])) {
          // Compare on the units that reach the module's parameters: the ReLU drops the others.
          const h = await forwards[i].output.readFloat32(c.stream);
          for (let k = 0; k < h.length; k++) if (!(h[k] > 0)) a[k] = b[k] = t[k] = 0;
        }
        const loss = c.synthLoss[i] ? (await c.synthLoss[i]!.readFloat32(c.stream))[0] : NaN;
        records.push({
          module: i + 1,
          synthesizerLoss: loss,
          cosine: cosine(a, b),
          normRatio: Math.sqrt(dot(a, a) / dot(b, b)),
          targetCosine: cosine(a, t),
        });
      }
      const predicted = synthInputs[own.indexOf(i)];
      if (predicted) {
        const [p, real] = await Promise.all([predicted, inputs[i]].map((v) => v.readFloat32(c.stream)));
        const inputLoss = c.inputLoss[i] ? (await c.inputLoss[i]!.readFloat32(c.stream))[0] : NaN;
        records.push({ module: i, inputLoss, inputCosine: cosine(p, real) });
      }
    }
    await Promise.all(sends);
    // Every rank's records, merged by module (JSON keeps no NaN: null stands for it).
    const all = (await c.allGather(records, 'the diagnostics')) as Partial<ModuleDiagnostics>[][];
    const merged = new Map<number, Record<string, unknown>>();
    for (const r of all.flat()) merged.set(r.module!, { ...merged.get(r.module!), ...r });
    return [...merged.keys()]
      .sort((a, b) => a - b)
      .map((m) => {
        const r = merged.get(m)!;
        for (const k of Object.keys(r)) if (r[k] === null) r[k] = NaN;
        return {
          module: m,
          synthesizerLoss: r.synthesizerLoss,
          cosine: r.cosine,
          normRatio: r.normRatio,
          targetCosine: r.targetCosine,
          ...(r.inputCosine === undefined ? {} : { inputLoss: r.inputLoss, inputCosine: r.inputCosine }),
        } as ModuleDiagnostics;
      });
  } finally {
    await c.stream.synchronize().catch(() => undefined);
    arena.dispose();
  }
}
