// Bad input never crashes the process: each case raises an Error (TypeError/RangeError where
// fitting) whose message names the argument and what was expected.
import {
  Adam,
  BatchNorm1d,
  Dataset,
  Device,
  Linear,
  Random,
  SGD,
  Sequential,
  Stream,
  Tensor,
  Trainer,
  mlp,
  native,
  learningRateSchedules,
} from '../ts';
import { Arena } from '../ts/tensor';
import { errorName } from './helpers/errors';

const cpu = Device.cpu();
const ops = native.ops;
const s = new Stream(cpu);
const t = (shape: number[]) => Tensor.fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5), shape, { device: cpu });

describe('tensor creation', () => {
  test('a shape with a negative or fractional size', () => {
    expect(errorName(() => new native.Tensor([2, -1], 'float32', 'cpu'))).toBe('RangeError');
    expect(() => new native.Tensor([2, -1], 'float32', 'cpu')).toThrow(/'shape\[1\]' must be a non-negative integer, got -1/);
    expect(() => new native.Tensor([1.5], 'float32', 'cpu')).toThrow(/'shape\[0\]'/);
    expect(errorName(() => new native.Tensor('3' as unknown as number[], 'float32', 'cpu'))).toBe('TypeError');
  });

  test('data of the wrong type or length', () => {
    expect(() => Tensor.fromArray(new Float32Array(3), [2, 2])).toThrow(/'data' has 3 elements but shape \[2,2\] needs 4/);
    expect(errorName(() => new native.Tensor([2], 'int32', 'cpu', new Float32Array(2)))).toBe('TypeError');
    expect(() => new native.Tensor([2], 'int32', 'cpu', new Float32Array(2))).toThrow(/'data' must be an Int32Array/);
    expect(() => Tensor.fromArray('abc' as unknown as number[], [3])).toThrow(/'data' must be a Float32Array/);
  });

  test('an unknown dtype or device', () => {
    expect(() => new native.Tensor([2], 'float64' as 'float32', 'cpu')).toThrow(/'dtype' must be 'float32' or 'int32', got 'float64'/);
    expect(() => new native.Tensor([2], 'float32', 'gpu' as 'cpu')).toThrow(/'device' must be 'cpu' or 'cuda:N'/);
    if (native.buildInfo().cudaDevices === 0) {
      expect(errorName(() => Device.cuda(0))).toBe('RangeError');
      expect(() => new native.Tensor([2], 'float32', 'cuda:0')).toThrow(/cuda:0 is not available/);
    }
  });
});

describe('ops', () => {
  test('a wrong shape names the argument and the expected shape', () => {
    const c = t([2, 2]);
    expect(errorName(() => ops.gemm(s.handle, t([2, 3]).handle, t([2, 3]).handle, c.handle, false, false, 1, 0))).toBe('RangeError');
    expect(() => ops.gemm(s.handle, t([2, 3]).handle, t([2, 3]).handle, c.handle, false, false, 1, 0)).toThrow(
      /gemm: inner dimensions differ/,
    );
    expect(() => ops.gemm(s.handle, t([2, 3]).handle, t([3, 4]).handle, c.handle, false, false, 1, 0)).toThrow(
      /gemm: 'c' must have shape \[2,4\], got \[2,2\]/,
    );
    expect(() => ops.addBias(s.handle, t([4, 3]).handle, t([4]).handle)).toThrow(/addBias: 'bias' must have shape \[3\]/);
  });

  test('a wrong dtype', () => {
    const labels = Tensor.fromArray(Int32Array.from([0, 1]), [2]);
    expect(() => ops.gemm(s.handle, labels.reshape([1, 2]).handle, t([2, 2]).handle, t([1, 2]).handle, false, false, 1, 0)).toThrow(
      /gemm: 'a' must be float32, got int32/,
    );
    expect(() => ops.softmaxCrossEntropyForward(s.handle, t([2, 3]).handle, t([2]).handle, t([2, 3]).handle, t([1]).handle)).toThrow(
      /'labels' must be int32, got float32/,
    );
  });

  test('a disposed tensor', async () => {
    const a = t([2, 2]);
    a.dispose();
    expect(a.disposed).toBe(true);
    expect(() => ops.fill(s.handle, a.handle, 1)).toThrow(/fill: 'y' was disposed/);
    expect(() => a.read()).toThrow(/disposed/);
    a.dispose(); // twice is harmless
  });

  test('wrong argument types', () => {
    const a = t([2, 2]);
    expect(errorName(() => ops.fill(s.handle, a.handle, 'one' as unknown as number))).toBe('TypeError');
    expect(() => ops.fill(s.handle, a.handle, 'one' as unknown as number)).toThrow(/fill: 'value' must be a number/);
    expect(() => ops.fill({} as never, a.handle, 1)).toThrow(/fill: 'stream' must be a Stream/);
    expect(() => ops.gemm(s.handle, a.handle, a.handle, {} as never, false, false, 1, 0)).toThrow(/gemm: 'c' must be a Tensor/);
    expect(() => ops.gemm(s.handle, a.handle, t([2, 2]).handle, t([2, 2]).handle, 0 as never, false, 1, 0)).toThrow(
      /'transA' must be a boolean/,
    );
    expect(() => ops.activationForward(s.handle, 'gelu' as 'relu', a.handle, a.handle)).toThrow(/'relu', 'tanh' or 'sigmoid', got 'gelu'/);
    // Any missing argument is named (C++ evaluates the conversions in an unspecified order).
    expect(() => (ops.fill as (...a: unknown[]) => void)()).toThrow(/fill: '(stream|y|value)' must be a/);
  });

  test('non-finite scalars and bad hyper-parameters', () => {
    const p = t([3]);
    expect(() => ops.fill(s.handle, p.handle, NaN)).toThrow(/fill: 'value' must be finite/);
    expect(() =>
      ops.adamStepGroup(s.handle, [p.handle], [t([3]).handle], [t([3]).handle], [t([3]).handle], t([2]).handle, 0.9, 1.5, 1e-8, 0),
    ).toThrow(/adamStepGroup: 'beta2' must be in \[0, 1\)/);
    expect(() => native.adamScalars(1e-3, 0.9, 0.99, 0)).toThrow(/adamScalars: 'step' must be >= 1/);
  });

  test('output aliasing an input where that is not allowed', () => {
    const a = t([3, 3]);
    expect(() => ops.gemm(s.handle, a.handle, t([3, 3]).handle, a.handle, false, false, 1, 0)).toThrow(/'a' and 'c' must not share memory/);
  });
});

describe('the TypeScript API', () => {
  test('layers name themselves and the mismatch', () => {
    const arena = new Arena();
    const l = new Linear(4, 3);
    const ctx = { device: cpu, stream: s, training: true, arena };
    expect(() => l.forward(t([2, 4]), ctx)).toThrow(/Linear\(4→3\): used before initialize/);
    l.initialize(cpu, new Random(1));
    expect(() => l.forward(t([2, 5]), ctx)).toThrow(/Linear\(4→3\): the input must have shape \[batch, 4\], got \[2, 5\]/);
    expect(() => new Linear(0, 3)).toThrow(/'inFeatures' must be a positive integer, got 0/);
    expect(() => new Sequential([new Linear(2, 2), {} as never])).toThrow(/layers\[1\] is not a Module/);
    expect(() => new BatchNorm1d(4, { momentum: 2 })).toThrow(/'momentum' must be in \[0, 1\]/);
    arena.dispose();
  });

  test('a layer too wide to allocate on the host is a RangeError naming it (found by the fuzzer)', () => {
    for (const [layer, what] of [
      [new BatchNorm1d(2 ** 32 + 1), /BatchNorm1d\(4294967297\): its scale needs 4294967297 values on the host/],
      [new Linear(2 ** 20, 2 ** 13), /Linear\(1048576→8192\): its weight needs 8589934592 values on the host/],
    ] as const) {
      const thrown = (() => {
        try {
          layer.initialize(cpu, new Random(0));
        } catch (e) {
          return e as Error & { code?: string };
        }
      })();
      expect(thrown).toBeInstanceOf(RangeError);
      expect(thrown!.message).toMatch(what);
      expect(thrown!.code).toBe('ERR_SYNTHGRAD_INVALID_ARG_VALUE');
    }
  });

  test('optimizers and learning-rate schedules check their options', () => {
    expect(() => new Adam({ lr: -1 })).toThrow(/Adam: 'lr' must be a finite number > 0, got -1/);
    expect(() => new SGD({ lr: 0.1, momentum: 1 })).toThrow(/'momentum' must be in \[0, 1\)/);
    expect(() => learningRateSchedules.stepDecay(0.1, [1.5])).toThrow(/'milestones'/);
  });

  test('fit and evaluate reject bad options and data before training', async () => {
    const data = new Dataset('tiny', new Float32Array(8 * 4).fill(0.25), new Int32Array(8), 4, 3);
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    await expect(trainer.fit(data, { batchSize: 0, steps: 1 })).rejects.toThrow(/fit: 'batchSize' must be a positive integer, got 0/);
    await expect(trainer.fit(data, {})).rejects.toThrow(/give 'epochs' or 'steps'/);
    await expect(trainer.fit({} as Dataset, { steps: 1 })).rejects.toThrow(/'data' must be a Dataset/);
    const wide = new Dataset('wide', new Float32Array(8 * 6), new Int32Array(8), 6, 3);
    await expect(trainer.fit(wide, { steps: 1 })).rejects.toThrow(/expects 4 input features, got 6/);
    expect(() => new Dataset('bad', new Float32Array(4), Int32Array.from([0, 5]), 2, 3)).toThrow(/label 5 at row 1 is outside \[0, 3\)/);
    expect(() => new Trainer({} as never, { optimizer: new Adam({ lr: 1 }) })).toThrow(/'model' must be a Module/);
    trainer.dispose();
  });

  test('a non-finite loss stops fit with a clear error', async () => {
    const inputs = new Float32Array(16 * 4).fill(0.5);
    inputs[5] = Infinity;
    const data = new Dataset('inf', inputs, new Int32Array(16), 4, 3);
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    await expect(trainer.fit(data, { steps: 3, batchSize: 8, shuffle: false })).rejects.toThrow(/the loss became NaN at step 1/);
    trainer.dispose();
  });
});

describe('a trainer used twice at once', () => {
  test('a second fit during fit is refused; evaluate is allowed; the first fit finishes', async () => {
    const data = new Dataset('tiny', new Float32Array(64 * 4).fill(0.25), new Int32Array(64), 4, 3);
    const trainer = new Trainer(mlp(4, [5], 3), { device: cpu, optimizer: new Adam({ lr: 1e-3 }) });
    const first = trainer.fit(data, { steps: 20, batchSize: 8 });
    await expect(trainer.fit(data, { steps: 1 })).rejects.toThrow(/fit: this trainer is already running fit\(\)/);
    expect((await trainer.evaluate(data)).count).toBe(64);
    expect((await first).steps).toBe(20);
    expect((await trainer.evaluate(data)).count).toBe(64);
    trainer.dispose();
  });
});
