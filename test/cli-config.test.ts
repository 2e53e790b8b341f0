// `npm start` end to end: every flag reaches what it configures (parseArgs → configure → the
// decoupled network, the Trainer and fit()), and the CLI's --checkpoint resumes a run exactly.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Activation,
  Adam,
  CoagentNetwork,
  DecoupledNetwork,
  FeedbackAlignmentNetwork,
  Linear,
  Optimizer,
  ReinforceNetwork,
  SGD,
  Sequential,
  TargetPropagationNetwork,
  Trainer,
} from '../ts';
import { configure } from '../ts/cli/configure';
import { parseArgs } from '../ts/cli/options';

const TRAIN = 1000;
const cli = (args: string) => configure(parseArgs(args.split(' ').filter(Boolean)), TRAIN);

function decoupled(args: string): DecoupledNetwork {
  const { model } = cli(args);
  expect(model).toBeInstanceOf(DecoupledNetwork);
  return model as DecoupledNetwork;
}

/** The optimizers a Trainer built from the configuration gives module 1 and synthesizer 1. */
function optimizers(args: string) {
  const c = cli(args);
  const trainer = new Trainer(c.model, c.trainer);
  const net = c.model as DecoupledNetwork;
  const strategy = trainer.strategy as unknown as { optimizers: Optimizer[] };
  const result = { module: strategy.optimizers[0], synthesizer: net.synthesizers[0].optimizer! };
  return { ...result, dispose: () => trainer.dispose() };
}

describe('every npm start flag reaches what it configures', () => {
  test('--method: backprop is the plain MLP, dni and cdni decouple it (cdni conditions on the label)', () => {
    expect(cli('').model).toBeInstanceOf(Sequential);
    expect(cli('').decoupled).toBe(false);
    expect(decoupled('--method dni').synthesizers.map((s) => s.conditioned)).toEqual([false, false, false]);
    expect(decoupled('--method cdni').synthesizers.map((s) => s.conditioned)).toEqual([true, true, true]);
    expect(decoupled('--method cdni').synthesizers[0].inputs).toBe(256 + 10);
  });

  test('--method fa and dfa wrap the MLP for feedback alignment; their matrices come from --seed', async () => {
    for (const [method, direct] of [
      ['fa', false],
      ['dfa', true],
    ] as const) {
      const c = cli(`--method ${method} --hidden 32,16 --seed 4`);
      expect(c.model).toBeInstanceOf(FeedbackAlignmentNetwork);
      const net = c.model as FeedbackAlignmentNetwork;
      expect(net.direct).toBe(direct);
      expect(net.seed).toBeUndefined(); // drawn from the Trainer's seed, i.e. --seed
      expect(net.layers.filter((l) => l instanceof Linear).map((l) => (l as Linear).outFeatures)).toEqual([32, 16, 10]);
      expect(c.decoupled).toBe(false);
      expect(c.fit.diagnoseEvery).toBeUndefined();
      expect(c.trainer.seed).toBe(4);
    }
    // A method without synthesizers refuses their flags, naming the flag and the method.
    expect(() => cli('--method fa --at 2')).toThrow(/--at applies to dni and cdni only \(--method fa has no synthesizers\)/);
    expect(() => cli('--method dfa --synth-lr 1e-3')).toThrow(
      /--synth-lr applies to dni and cdni only \(--method dfa has no synthesizers\)/,
    );
    expect(() => cli('--method dfa --diagnose-every 5')).toThrow(/--diagnose-every applies to dni and cdni only/);
    // SGD needs no synthesizer learning rate where there are no synthesizers.
    expect(cli('--method fa --optimizer sgd --lr 0.01').model).toBeInstanceOf(FeedbackAlignmentNetwork);
    // Kickback covers scalar regression only: the data's classes are refused, saying why and naming
    // the data actually given (--data may follow --method).
    expect(() => cli('--method kickback')).toThrow(
      /--method kickback: .* single output .*; --data mnist \(the default\) is MNIST, a 10-class classification task: use kickback\(\)/,
    );
    expect(() => cli('--method kickback --data cifar10:/some/dir')).toThrow(
      /--method kickback: .*; --data cifar10:\/some\/dir is CIFAR-10, a 10-class classification task/,
    );
    expect(() => cli('--data mnist:/m --method kickback')).toThrow(/; --data mnist:\/m is MNIST, a 10-class classification task/);
    expect(() => cli('--method kickback --data idx:a,b,c,d')).toThrow(/; --data idx: the labels in b are classes, a classification task/);
  });

  test('--method dtp and reinforce wrap a Tanh or Sigmoid stack; flags that do not apply are errors naming them', () => {
    const dtp = cli('--method dtp --hidden 32,16 --seed 4');
    expect(dtp.model).toBeInstanceOf(TargetPropagationNetwork);
    const layers = (dtp.model as TargetPropagationNetwork).layers;
    expect(layers.map((l) => l.name)).toEqual(['Linear(784→32)', 'Tanh', 'Linear(32→16)', 'Tanh', 'Linear(16→10)']);
    expect((dtp.model as TargetPropagationNetwork).seed).toBeUndefined(); // inverses and noise from --seed
    const rf = cli('--method reinforce --hidden 24');
    expect(rf.model).toBeInstanceOf(ReinforceNetwork);
    const rl = (rf.model as ReinforceNetwork).layers;
    expect(rl.map((l) => (l instanceof Activation ? l.kind : l.name))).toEqual(['Linear(784→24)', 'sigmoid', 'Linear(24→10)']);
    for (const c of [dtp, rf]) expect([c.decoupled, c.fit.diagnoseEvery, c.fit.graph]).toEqual([false, undefined, false]);
    expect(() => cli('--method dtp --p-update 0.5')).toThrow(
      /--p-update applies to dni and cdni only \(--method dtp has no synthesizers\)/,
    );
    expect(() => cli('--method reinforce --center')).toThrow(
      /--center applies to dni and cdni only \(--method reinforce has no synthesizers\)/,
    );
    expect(() => cli('--method dtp --graph')).toThrow(/--graph cannot capture --method dtp: it draws random numbers on the host/);
    expect(() => cli('--method reinforce --graph')).toThrow(/--graph cannot capture --method reinforce/);
    // Their own flags reach the wrapper, and are errors under any other method, naming the flag.
    const tuned = cli('--method dtp --target-step 0.25 --noise 0').model as TargetPropagationNetwork;
    expect([tuned.targetStep, tuned.noise]).toEqual([0.25, 0]);
    expect([(dtp.model as TargetPropagationNetwork).targetStep, (dtp.model as TargetPropagationNetwork).noise]).toEqual([0.5, 0.1]);
    expect((cli('--method reinforce --baseline-decay 0.5').model as ReinforceNetwork).decay).toBe(0.5);
    expect((rf.model as ReinforceNetwork).decay).toBe(0.9);
    expect(() => cli('--method reinforce --target-step 0.3')).toThrow(/--target-step applies to --method dtp only, not reinforce/);
    expect(() => cli('--noise 0.2')).toThrow(/--noise applies to --method dtp only, not backprop/);
    expect(() => cli('--method dtp --baseline-decay 0.5')).toThrow(/--baseline-decay applies to --method reinforce only, not dtp/);
    expect(() => cli('--method reinforce --baseline-decay 1')).toThrow(/--baseline-decay must be in \[0, 1\), got 1/);
    expect(() => cli('--method dtp --noise -0.1')).toThrow(/--noise must be >= 0, got -0.1/);
    expect(() => cli('--method dtp --target-step 0')).toThrow(/--target-step must be > 0, got 0/);
    expect(() => cli('--method dtps')).toThrow(/--method must be backprop, dni, cdni, fa, dfa, dtp, reinforce or coagent, got 'dtps'/);
  });

  test("--method coagent wraps the Sigmoid stack as coagents (critic, samples from --seed); other methods' flags are errors", () => {
    const co = cli('--method coagent --hidden 24,12');
    expect(co.model).toBeInstanceOf(CoagentNetwork);
    const net = co.model as CoagentNetwork;
    expect(net.layers.map((l) => (l instanceof Activation ? l.kind : l.name))).toEqual([
      'Linear(784→24)',
      'sigmoid',
      'Linear(24→12)',
      'sigmoid',
      'Linear(12→10)',
    ]);
    expect(net.seed).toBeUndefined();
    expect([co.decoupled, co.fit.diagnoseEvery, co.fit.graph]).toEqual([false, undefined, false]);
    // The critic replaces the running mean: REINFORCE's decay does not apply.
    expect(() => cli('--method coagent --baseline-decay 0.5')).toThrow(/--baseline-decay applies to --method reinforce only, not coagent/);
    expect(() => cli('--method coagent --noise 0.2')).toThrow(/--noise applies to --method dtp only, not coagent/);
    expect(() => cli('--method coagent --center')).toThrow(
      /--center applies to dni and cdni only \(--method coagent has no synthesizers\)/,
    );
    expect(() => cli('--method coagent --graph')).toThrow(/--graph cannot capture --method coagent: it draws random numbers on the host/);
  });

  test('--hidden sets the layer widths', () => {
    const widths = (cli('--hidden 32,16').model as Sequential).layers
      .filter((l) => l instanceof Linear)
      .map((l) => (l as Linear).outFeatures);
    expect(widths).toEqual([32, 16, 10]);
  });

  test('--at sets the cuts', () => {
    expect(decoupled('--method dni').config.cuts).toEqual([2, 5, 8]);
    expect(decoupled('--method dni --at 2,5').config.cuts).toEqual([2, 5]);
    expect(decoupled('--method dni --at every-layer --hidden 8').config.cuts).toEqual([0, 1, 2]);
  });

  test('--p-update, --pipeline and --streams set the schedule', () => {
    expect(decoupled('--method dni').config.schedule).toEqual({ kind: 'lockstep', pUpdate: 1 });
    expect(decoupled('--method dni --p-update 0.3').config.schedule).toEqual({ kind: 'lockstep', pUpdate: 0.3 });
    expect(decoupled('--method cdni --pipeline 2 --p-update 0.5').config.schedule).toEqual({ kind: 'pipelined', depth: 2, pUpdate: 0.5 });
    expect(decoupled('--method dni').config.streams).toBe('per-module');
    expect(decoupled('--method dni --streams single').config.streams).toBe('single');
  });

  test('--center and --mask-inactive reach the synthesizers where they apply', () => {
    const plain = decoupled('--method dni');
    expect(plain.synthesizers.map((s) => [s.center, s.maskInactive])).toEqual([
      [false, false],
      [false, false],
      [false, false],
    ]);
    const net = decoupled('--method dni --center --mask-inactive');
    // The last cut feeds the output Linear (no BatchNorm): not centred there.
    expect(net.synthesizers.map((s) => s.center)).toEqual([true, true, false]);
    expect(net.synthesizers.map((s) => s.maskInactive)).toEqual([true, true, true]);
  });

  test("--optimizer and --lr choose the modules' optimizer, decayed x0.1 at 60% and 85% of the steps", () => {
    // 1000 examples, batch 100, 3 epochs: 30 steps, decays at steps 18 and 26.
    const adam = optimizers('--method dni --lr 3e-3 --batch-size 100 --epochs 3');
    expect(adam.module).toBeInstanceOf(Adam);
    const lrAt = (o: Optimizer, step: number) => {
      const saved = o.steps;
      o.steps = step;
      const lr = o.lr;
      o.steps = saved;
      return lr;
    };
    expect([0, 17, 18, 25, 26].map((s) => lrAt(adam.module, s))).toEqual([
      3e-3,
      3e-3,
      3e-3 * Math.pow(0.1, 1),
      3e-3 * Math.pow(0.1, 1),
      3e-3 * Math.pow(0.1, 2),
    ]);
    // Without --synth-lr the synthesizers get the model's optimizer and schedule.
    expect(adam.synthesizer).toBeInstanceOf(Adam);
    expect(adam.synthesizer).not.toBe(adam.module);
    expect(lrAt(adam.synthesizer, 18)).toBe(3e-3 * Math.pow(0.1, 1));
    adam.dispose();
    const sgd = optimizers('--method dni --optimizer sgd --lr 0.02 --synth-lr 1e-4 --batch-size 100 --epochs 3');
    expect(sgd.module).toBeInstanceOf(SGD);
    expect((sgd.module as SGD).momentum).toBe(0.9);
    expect(lrAt(sgd.module, 0)).toBe(0.02);
    // --synth-lr: the synthesizers keep Adam, at their own rate, decayed alike.
    expect(sgd.synthesizer).toBeInstanceOf(Adam);
    expect([0, 18, 26].map((s) => lrAt(sgd.synthesizer, s))).toEqual([1e-4, 1e-4 * Math.pow(0.1, 1), 1e-4 * Math.pow(0.1, 2)]);
    sgd.dispose();
  });

  test('--seed and --device reach the Trainer', () => {
    expect(cli('--seed 7').trainer.seed).toBe(7);
    expect(cli('--device cpu').trainer.device!.name).toBe('cpu');
    expect(() => cli('--device tpu')).toThrow(/Device.parse: expected 'cpu' or 'cuda:N', got 'tpu'/);
  });

  test('--epochs, --steps, --batch-size, --diagnose-every, --graph and --checkpoint reach fit()', () => {
    const c = cli('--method dni --epochs 3 --steps 25 --batch-size 100 --diagnose-every 7 --checkpoint run.ckpt');
    expect(c.stepsPerEpoch).toBe(10);
    expect(c.fit).toMatchObject({
      epochs: 3,
      steps: 25,
      batchSize: 100,
      diagnoseEvery: 7,
      graph: false,
      checkpoint: { path: 'run.ckpt', every: 10 },
    });
    expect(cli('--graph').fit.graph).toBe(true);
    expect(cli('').fit).toMatchObject({ epochs: 10, steps: undefined, batchSize: 256, diagnoseEvery: undefined, checkpoint: undefined });
    expect(cli('--method cdni').fit.diagnoseEvery).toBe(100);
  });
});

describe('npm start --data: which data, and a model that fits it', () => {
  test('mnist is the default and records no --data; mnist:DIR, idx: and cifar10:DIR are parsed', () => {
    expect(parseArgs([]).data).toBeUndefined();
    expect(parseArgs(['--data', 'mnist']).data).toBeUndefined();
    expect(parseArgs(['--data', 'mnist:downloads/mnist']).data).toEqual({ kind: 'mnist', dir: 'downloads/mnist' });
    expect(parseArgs(['--data=cifar10:/data/cifar']).data).toEqual({ kind: 'cifar10', dir: '/data/cifar' });
    expect(parseArgs(['--data', 'idx:a.gz,b,c:1,d']).data).toEqual({
      kind: 'idx',
      trainImages: 'a.gz',
      trainLabels: 'b',
      testImages: 'c:1',
      testLabels: 'd',
    });
  });

  test.each([
    ['cifar10', "--data must be mnist, mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS or cifar10:DIR, got 'cifar10'"],
    ['fashion:x', "--data must be mnist, mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS or cifar10:DIR, got 'fashion:x'"],
    ['', "--data must be mnist, mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS or cifar10:DIR, got ''"],
    ['idx:a,b,c', "--data idx: needs four comma-separated files TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS, got 'a,b,c'"],
    ['idx:a,b,,d', "--data idx: needs four comma-separated files TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS, got 'a,b,,d'"],
    ['cifar10:', "--data cifar10: needs a directory after the colon, got 'cifar10:'"],
    ['mnist:', "--data mnist: needs a directory after the colon, got 'mnist:'"],
  ])('--data %j is refused, naming the flag', (value, message) => {
    expect(() => parseArgs(['--data', value])).toThrow(message);
  });

  test("the model's input and output widths follow the data's row shape and classes", () => {
    const cifar = { shape: [3, 32, 32], classes: 10 };
    const linears = (m: unknown) =>
      (m as Sequential).layers.filter((l) => l instanceof Linear).map((l) => [(l as Linear).inFeatures, (l as Linear).outFeatures]);
    expect(linears(configure(parseArgs(['--hidden', '16']), TRAIN, undefined, cifar).model)).toEqual([
      [3072, 16],
      [16, 10],
    ]);
    expect(
      linears(configure(parseArgs(['--hidden', '16', '--method', 'dtp']), TRAIN, undefined, { shape: [5], classes: 3 }).model),
    ).toEqual([
      [5, 16],
      [16, 3],
    ]);
    expect(linears(cli('--hidden 16').model)).toEqual([
      [784, 16],
      [16, 10],
    ]);
    const net = configure(parseArgs(['--method', 'cdni', '--hidden', '16']), TRAIN, undefined, { shape: [1, 4, 4], classes: 4 }).model;
    expect((net as DecoupledNetwork).synthesizers[0].inputs).toBe(16 + 4);
  });
});

describe('npm start: the edges of each value check (each row fails a mutant that survived)', () => {
  test.each([
    ['--at 2,x', /--at must be every-activation, every-layer or layer indices such as 2,5, got '2,x'/],
    ['--at 2.5', /--at must be every-activation, every-layer or layer indices/],
    ['--at=', /--at must be every-activation, every-layer or layer indices such as 2,5, got ''/],
    ['--method reinforce --baseline-decay 1', /--baseline-decay must be in \[0, 1\), got 1/],
    ['--method reinforce --baseline-decay -0.1', /--baseline-decay must be in \[0, 1\), got -0.1/],
    ['--streams both --method dni', /--streams must be per-module or single, got 'both'/],
    ['--save-every 10', /--save-every needs --checkpoint FILE/],
    ['--quiet --json', /--quiet and --json: choose one/],
    ['--checkpoint=', /--checkpoint needs a file path/],
    ['--method dni --optimizer sgd', /--optimizer sgd with dni or cdni needs --synth-lr/],
    ['--optimizer rmsprop', /--optimizer must be adam or sgd, got 'rmsprop'/],
  ])('%s is refused, naming the flag', (args, message) => {
    expect(() => parseArgs(args.split(' '))).toThrow(message);
  });

  test('values on the edges are accepted', () => {
    expect(parseArgs(['--method', 'dni', '--at', ' 2, 5']).at).toEqual([2, 5]);
    expect(parseArgs(['--method', 'dni', '--at', 'every-layer']).at).toBe('every-layer');
    expect(parseArgs(['--method', 'reinforce', '--baseline-decay', '0']).baselineDecay).toBe(0);
    expect(parseArgs(['--streams', 'single', '--method', 'cdni']).streams).toBe('single');
    expect(parseArgs(['--method', 'dni', '--optimizer', 'sgd', '--synth-lr', '1e-3']).optimizer).toBe('sgd');
    expect(parseArgs(['--quiet']).quiet).toBe(true);
    expect(parseArgs(['--json']).json).toBe(true);
    expect(parseArgs(['--help']).help).toBe(true);
  });
});

describe("the CLI's --checkpoint", () => {
  const root = path.resolve(__dirname, '..');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-cli-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const run = (args: string) => {
    const r = spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args.split(' ')], {
      cwd: dir,
      env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const common = '--method cdni --hidden 16,16 --batch-size 200 --epochs 1 --seed 3';

  test('--method dfa and fa train a few steps; an fa run resumes exactly, with the same fixed matrices', () => {
    const small = '--hidden 16,16 --batch-size 200 --epochs 1 --seed 3';
    const dfa = run(`--method dfa ${small} --steps 3`);
    expect(dfa.status).toBe(0);
    expect(dfa.out).toMatch(/784-16-16-10, BatchNorm \+ ReLU, dfa/);
    expect(dfa.out).toMatch(/final test accuracy: \S+%/);
    const file = path.join(dir, 'fa.ckpt');
    expect(run(`--method fa ${small} --steps 2 --checkpoint ${file}`).status).toBe(0);
    // --json: the final record carries the test loss in full, which any difference in the matrices would change.
    const resumed = run(`--method fa ${small} --steps 4 --checkpoint ${file} --json`);
    const straight = run(`--method fa ${small} --steps 4 --json`);
    const final = (out: string) =>
      JSON.parse(out.trim().split('\n').pop()!) as { type: string; loss: number; steps: number; resumedFrom?: number };
    expect(final(resumed.out)).toMatchObject({ type: 'final', steps: 4, resumedFrom: 2 });
    expect(final(resumed.out).loss).toBe(final(straight.out).loss);
  });

  test('--method dtp and reinforce train a few steps on MNIST; a reinforce run resumes exactly', () => {
    const small = '--hidden 16,16 --batch-size 100 --epochs 1 --seed 3';
    const dtp = run(`--method dtp ${small} --steps 3`);
    expect(dtp.status).toBe(0);
    expect(dtp.out).toMatch(/784-16-16-10, Tanh, dtp/);
    expect(dtp.out).toMatch(/final test accuracy: \S+%/);
    const file = path.join(dir, 'reinforce.ckpt');
    expect(run(`--method reinforce ${small} --steps 2 --checkpoint ${file}`).status).toBe(0);
    // The sampler's position and the baseline are in the checkpoint: the resumed run's samples are the straight run's.
    const resumed = run(`--method reinforce ${small} --steps 4 --checkpoint ${file} --json`);
    const straight = run(`--method reinforce ${small} --steps 4 --json`);
    expect(straight.out).not.toMatch(/Error/);
    const final = (out: string) =>
      JSON.parse(out.trim().split('\n').pop()!) as { type: string; loss: number; steps: number; resumedFrom?: number };
    expect(final(resumed.out)).toMatchObject({ type: 'final', steps: 4, resumedFrom: 2 });
    expect(final(resumed.out).loss).toBe(final(straight.out).loss);
  });

  test('--method coagent trains a few steps on MNIST and resumes exactly (sampler, critic and its Adam state saved)', () => {
    const small = '--hidden 16,16 --batch-size 100 --epochs 1 --seed 3';
    const file = path.join(dir, 'coagent.ckpt');
    const first = run(`--method coagent ${small} --steps 2 --checkpoint ${file}`);
    expect(first.status).toBe(0);
    expect(first.out).toMatch(/784-16-16-10, Bernoulli \(Sigmoid\) units, coagent/);
    const resumed = run(`--method coagent ${small} --steps 4 --checkpoint ${file} --json`);
    const straight = run(`--method coagent ${small} --steps 4 --json`);
    expect(straight.out).not.toMatch(/Error/);
    const final = (out: string) =>
      JSON.parse(out.trim().split('\n').pop()!) as { type: string; loss: number; steps: number; resumedFrom?: number };
    expect(final(resumed.out)).toMatchObject({ type: 'final', steps: 4, resumedFrom: 2 });
    expect(final(resumed.out).loss).toBe(final(straight.out).loss);
  });

  test('resumes a run where it stopped: 2 + 2 steps end where 4 steps do, and other options are refused', () => {
    const file = path.join(dir, 'run.ckpt');
    const first = run(`${common} --steps 2 --checkpoint ${file}`);
    expect(first.status).toBe(0);
    const resumed = run(`${common} --steps 4 --checkpoint ${file}`);
    expect(resumed.status).toBe(0);
    expect(resumed.out).toMatch(/resuming from/);
    expect(resumed.out).toMatch(/resumed after step 2; 4 steps in all/);
    const straight = run(`${common} --steps 4`);
    const final = (out: string) => /final test accuracy: (\S+)/.exec(out)?.[1];
    expect(final(resumed.out)).toBeDefined();
    expect(final(resumed.out)).toBe(final(straight.out));
    const other = run(`${common} --lr 0.01 --steps 4 --checkpoint ${file}`);
    expect(other.status).not.toBe(0);
    expect(other.out).toMatch(/was saved with --lr 0.001, this run has 0.01/);
  });
});
