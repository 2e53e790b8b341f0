// The stability probe of the README's "Stability" section: one character-LM run of
// RecurrentTraining on Shakespeare (LF line ends) with a given method, truncation and
// synthesizer discount γ, printing every `--every` windows the mean training bits since the
// last print and the rms of the synthetic gradient's h and c parts (ĝ = γ·M(s_T)/B, from the
// trainer's `record`), and at the end the validation split's bits per character (a full pass
// from a zero state). One JSON line per print on stdout.
//
//   node dist/experiments/char-lm/stability.js --method dni --truncation 5 --discount 0.5 \
//     --windows 1000 [--batch 32] [--hidden 128] [--every 100] [--lr 1e-3] [--synth-lr LR] [--seed 0]
import { shakespeare } from '../../ts/data/text';
import { Adam } from '../../ts/optim/optimizers';
import { LSTMSequenceModel } from '../../ts/recurrent/model';
import { RecurrentMethod, RecurrentTraining } from '../../ts/recurrent/training';

function flag(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) throw new Error(`stability: --${name} is required`);
  return fallback;
}

/** The root mean square of columns [from, to) of `v`'s rows of `width` values. */
function rms(v: Float32Array, from: number, to: number, width: number): number {
  let sum = 0;
  let n = 0;
  for (let r = 0; r < v.length / width; r++)
    for (let k = from; k < to; k++) {
      sum += v[r * width + k] ** 2;
      n++;
    }
  return Math.sqrt(sum / n);
}

async function main(): Promise<void> {
  const method = flag('method') as RecurrentMethod;
  const T = Number(flag('truncation', '5'));
  const windows = Number(flag('windows', '1000'));
  const batch = Number(flag('batch', '32'));
  const hidden = Number(flag('hidden', '128'));
  const every = Number(flag('every', '100'));
  const lr = Number(flag('lr', '1e-3'));
  const seed = Number(flag('seed', '0'));
  const discount = flag('discount', '');
  const synthLr = Number(flag('synth-lr', String(lr)));
  const corpus = shakespeare();
  const source = corpus.source('train', batch);
  const model = new LSTMSequenceModel({ inputSymbols: corpus.symbols, outputs: corpus.symbols, hidden });
  const trainer = new RecurrentTraining(model, {
    method, optimizer: () => new Adam({ lr }), seed,
    ...(method === 'bptt' ? {} : {
      synthesizer: { optimizer: () => new Adam({ lr: synthLr }), ...(discount === '' ? {} : { discount: Number(discount) }) },
    }),
  });
  trainer.record = method !== 'bptt';
  const started = Date.now();
  let bits = 0;
  let scored = 0;
  let last: Record<string, unknown> = {};
  for (let w = 1; w <= windows; w++) {
    const m = await trainer.step(source.nextWindow(T));
    bits += m.bits * m.scored;
    scored += m.scored;
    if (w % every === 0) {
      const line: Record<string, unknown> = { window: w, trainBits: +(bits / scored).toFixed(4), seconds: (Date.now() - started) / 1000 };
      if (trainer.lastWindow) {
        const g = await trainer.lastWindow.synthetic.readFloat32(trainer.stream);
        line.rmsGh = +rms(g, 0, hidden, 2 * hidden).toPrecision(3);
        line.rmsGc = +rms(g, hidden, 2 * hidden, 2 * hidden).toPrecision(3);
      }
      console.log(JSON.stringify(line));
      last = line;
      bits = scored = 0;
    }
  }
  const validation = corpus.source('validation', batch);
  const v = await trainer.evaluate(() => (validation.done ? undefined : validation.nextWindow(Math.min(64, validation.streamLength))));
  console.log(JSON.stringify({ ...last, method, truncation: T, discount: trainer.discount, synthLr, batch, hidden, validationBits: +v.bits.toFixed(4), final: true }));
  trainer.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
