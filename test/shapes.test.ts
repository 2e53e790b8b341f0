// Module shapes: each module states its output shape for an input shape (outputShape), the
// chain through a Sequential, the errors that name the module, and the checks that fit() and
// decouple() make through it before anything runs.
import {
  BatchNorm1d,
  Dataset,
  Device,
  Forwarded,
  Linear,
  Module,
  ReLU,
  SGD,
  Sequential,
  Sigmoid,
  Tanh,
  Trainer,
  decouple,
  mlp,
} from '../ts';
import type { Shape } from '../ts';

const cpu = Device.cpu();

/** [B, C, H, W] → [B, C·H·W]; states its shapes through outputShape only (as an N-d module would). */
class Flatten extends Module {
  readonly name = 'Flatten';
  initialize(): void {}
  outputShape(input: Shape): number[] {
    if (input.length < 2) throw new RangeError(`${this.name}: expects [batch, ...], got shape [${input.join(', ')}]`);
    return [input[0], input.slice(1).reduce((a, b) => a * b, 1)];
  }
  forward(): Forwarded {
    throw new Error('Flatten.forward must not run in these tests');
  }
}

/** [B, F] → [B, 2, F/2]: an output that is not rows of features. */
class Unflatten extends Module {
  readonly name = 'Unflatten';
  initialize(): void {}
  outputShape(input: Shape): number[] {
    if (input.length !== 2 || input[1] % 2 !== 0)
      throw new RangeError(`${this.name}: expects [batch, even], got shape [${input.join(', ')}]`);
    return [input[0], 2, input[1] / 2];
  }
  forward(): Forwarded {
    throw new Error('Unflatten.forward must not run in these tests');
  }
}

describe('outputShape', () => {
  test('[batch, features] layers map rows; activations keep any shape', () => {
    expect(new Linear(4, 3).outputShape([5, 4])).toEqual([5, 3]);
    expect(new BatchNorm1d(6).outputShape([2, 6])).toEqual([2, 6]);
    expect(new ReLU().outputShape([2, 3, 4, 5])).toEqual([2, 3, 4, 5]);
    expect(new Sequential([new Tanh(), new Sigmoid()]).outputShape([7, 3, 2])).toEqual([7, 3, 2]);
    expect(mlp(4, [8, 6], 3).outputShape([10, 4])).toEqual([10, 3]);
  });

  test('a Sequential chains its layers, N-d modules included', () => {
    const model = new Sequential([new Flatten(), new Linear(12, 5), new ReLU(), new Linear(5, 2)]);
    expect(model.outputShape([7, 3, 2, 2])).toEqual([7, 2]);
    expect(model.outputShape([7, 12])).toEqual([7, 2]);
    expect(model.outputFeatures(12)).toBe(2); // through outputShape, as Sequential states no features
    expect(new Flatten().outputFeatures(9)).toBe(9);
  });

  test('an input that does not fit is a RangeError naming the module', () => {
    expect(() => new Linear(4, 3).outputShape([5, 4, 3])).toThrow(RangeError);
    expect(() => new Linear(4, 3).outputShape([5, 4, 3])).toThrow(
      /^Linear\(4→3\): expects a \[batch, features\] input, got shape \[5, 4, 3\]$/,
    );
    expect(() => new Linear(4, 3).outputShape([5, 6])).toThrow(/^Linear\(4→3\): expects 4 input features, got 6$/);
    const model = new Sequential([new Linear(4, 3), new ReLU(), new Linear(5, 2)]);
    expect(() => model.outputShape([8, 4])).toThrow(/^Linear\(5→2\): expects 5 input features, got 3$/);
    expect(() => new Sequential([new Flatten(), new Linear(4, 2)]).outputShape([2, 3, 3])).toThrow(
      /Linear\(4→2\): expects 4 input features, got 9/,
    );
    expect(() => new Unflatten().outputFeatures(4)).toThrow(
      /Unflatten: maps \[batch, 4\] rows to shape \[1, 2, 2\], not to rows of features/,
    );
  });

  test('a shape that is not one is a TypeError; a module must state one of its shapes', () => {
    expect(() => new Linear(4, 3).outputShape([] as never)).toThrow(TypeError);
    expect(() => new ReLU().outputShape([2, -1])).toThrow(
      /ReLU\.outputShape: 'input' must be a shape \(a non-empty array of non-negative integers\), got/,
    );
    expect(() => mlp(2, [], 1).outputShape('2,2' as never)).toThrow(TypeError);
    class Silent extends Module {
      readonly name = 'Silent';
      initialize(): void {}
      forward(): Forwarded {
        throw new Error('unused');
      }
    }
    expect(() => new Silent().outputShape([1, 2])).toThrow(/^Silent: implements neither outputShape\(\) nor outputFeatures\(\)$/);
  });
});

describe('fit and decouple check shapes through outputShape before anything runs', () => {
  const data = Dataset.fromArrays(
    Float32Array.from({ length: 24 }, (_, i) => i / 24),
    Int32Array.from({ length: 6 }, (_, i) => i % 2),
    { features: 4 },
  );

  test("fit refuses data whose rows do not fit the model's first N-d module, naming it", async () => {
    // Flatten takes [6, 4] rows, and 4 ≠ the 12 inputs of the Linear after it.
    const trainer = new Trainer(new Sequential([new Flatten(), new Linear(12, 2)]), { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    await expect(trainer.fit(data, { steps: 1 })).rejects.toThrow(
      /fit: 'data' \(data\) does not fit the model: Linear\(12→2\): expects 12 input features, got 4/,
    );
    trainer.dispose();
  });

  test('fit refuses a model whose output is not [batch, outputs] for the loss', async () => {
    const trainer = new Trainer(new Sequential([new Linear(4, 4), new Unflatten()]), { device: cpu, optimizer: new SGD({ lr: 0.1 }) });
    await expect(trainer.fit(data, { steps: 1 })).rejects.toThrow(
      /the model's output for 'data' \(data\) has shape \[6, 2, 2\]; the loss softmax-cross-entropy takes \[batch, outputs\]/,
    );
    trainer.dispose();
  });

  test('decouple refuses a cut whose output is not rows of features', () => {
    const model = new Sequential([new Linear(4, 4), new Unflatten(), new Flatten(), new Linear(4, 2)]);
    expect(() => decouple(model, { at: [1] })).toThrow(
      /decouple: module 1 \(Sequential\(Linear\(4→4\), Unflatten\)\) outputs shape \[1, 2, 2\]; a synthesizer takes \[batch, features\] rows/,
    );
    expect(decouple(model, { at: [2] }).synthesizers[0].width).toBe(4);
  });
});
