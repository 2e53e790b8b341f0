// Optimizer options of the wrong type or name: each is an error naming the optimizer and the
// option (the project's "fn: 'arg' must be ..., got ..." style), a TypeError, raised before any
// step; the optimizer factory check used by the trainers and decouple().
import { Adam, Optimizer, SGD, schedules } from '../ts';
import { optimizerFor } from '../ts/optim/optimizers';

describe('an option of the wrong type names the optimizer and the option', () => {
  test.each([
    [() => new SGD({ lr: 0.1, momentum: '0.9' as never }), /^SGD: 'momentum' must be a number, got string 0.9$/],
    [() => new SGD({ lr: 0.1, weightDecay: '0' as never }), /^SGD: 'weightDecay' must be a number, got string 0$/],
    [() => new Adam({ lr: 0.1, weightDecay: null as never }), /^Adam: 'weightDecay' must be a number, got null$/],
    [() => new Adam({ lr: 0.1, beta1: '0.9' as never }), /^Adam: 'beta1' must be a number, got string 0.9$/],
    [() => new Adam({ lr: 0.1, beta2: [0.999] as never }), /^Adam: 'beta2' must be a number, got /],
    [() => new Adam({ lr: 0.1, eps: '1e-8' as never }), /^Adam: 'eps' must be a number, got string 1e-8$/],
    [() => schedules.stepDecay(1, [2], '0.5' as never), /^stepDecay: 'gamma' must be a number, got string 0.5$/],
  ])('%#', (make, message) => {
    expect(make).toThrow(TypeError);
    expect(make).toThrow(message);
  });
});

describe('an unknown option names the optimizer and the nearest known option', () => {
  test.each([
    [() => new SGD({ lr: 0.1, momentun: 0.9 } as never), /^SGD: unknown option 'momentun' \(did you mean 'momentum'\?\)$/],
    [() => new SGD({ lr: 0.1, beta1: 0.9 } as never), /^SGD: unknown option 'beta1' \(known: lr, weightDecay, momentum\)$/],
    [() => new Adam({ lr: 0.1, beta: 0.9 } as never), /^Adam: unknown option 'beta' \(did you mean 'beta1'\?\)$/],
    [
      () => new Adam({ lr: 0.1, momentum: 0.9 } as never),
      /^Adam: unknown option 'momentum' \(known: lr, weightDecay, beta1, beta2, eps\)$/,
    ],
    [() => new Adam({ lr: 0.1, weight_decay: 0.1 } as never), /^Adam: unknown option 'weight_decay' \(did you mean 'weightDecay'\?\)$/],
  ])('%#', (make, message) => {
    expect(make).toThrow(TypeError);
    expect(make).toThrow(message);
  });

  test('the options each optimizer does know are accepted together', () => {
    const s = new SGD({ lr: 0.1, weightDecay: 0.01, momentum: 0.5 });
    expect([s.lr, s.momentum]).toEqual([0.1, 0.5]);
    const a = new Adam({ lr: 0.2, weightDecay: 0.01, beta1: 0.8, beta2: 0.9, eps: 1e-6 });
    expect([a.lr, a.beta1, a.beta2, a.eps]).toEqual([0.2, 0.8, 0.9, 1e-6]);
  });
});

describe('optimizerFor', () => {
  test('calls the factory with the module index and returns its optimizer', () => {
    const made: number[] = [];
    const o = optimizerFor(
      'synthesizer 2',
      (i) => {
        made.push(i);
        return new SGD({ lr: 0.1 * (i + 1) });
      },
      3,
    );
    expect(o).toBeInstanceOf(SGD);
    expect(o.lr).toBeCloseTo(0.4, 12);
    expect(made).toEqual([3]);
  });

  test.each([
    [{}, /^synthesizer 2: the 'optimizer' factory returned Object, not an Optimizer$/],
    [undefined, /^synthesizer 2: the 'optimizer' factory returned undefined\b/],
    [SGD, /^synthesizer 2: the 'optimizer' factory returned /],
  ])('a factory that returns %p is a TypeError naming the owner', (value, message) => {
    const call = () => optimizerFor('synthesizer 2', () => value as unknown as Optimizer, 0);
    expect(call).toThrow(TypeError);
    expect(call).toThrow(message);
  });
});
