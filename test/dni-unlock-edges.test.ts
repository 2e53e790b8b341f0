// Edge cases of ts/dni/unlock.ts that the training tests do not reach: the shapes the
// convolutional input model accepts, the checks of `unlock` and of a custom input model's
// output, and what dispose() frees. The expected shapes are worked out by hand in comments.
import { Adam, AvgPool2d, Conv2d, Device, Linear, Random, Sequential } from '../ts';
import { InputModel, convInputModel, unlockOptions } from '../ts/dni/unlock';
import { expectThrows } from './helpers/errors';

const cpu = Device.cpu();

/** The layers of a builder's Sequential; fails when the builder declined the shapes. */
function layersOf(model: unknown): readonly unknown[] {
  expect(model).toBeInstanceOf(Sequential);
  return (model as Sequential).layers;
}

describe('convInputModel shapes', () => {
  test('declines a 2-D module input (neither an image nor a row)', () => {
    expect(convInputModel([1, 8, 8], [2, 4])).toBeUndefined();
    expect(convInputModel([1, 8, 8], [2, 4, 4, 1])).toBeUndefined();
  });

  test('pools a 1-pixel-high image along its width only: [1, 1, 8] -> [2, 1, 2] takes two pools', () => {
    // A stride-2 3x3 pool with padding 1 maps s to ceil(s / 2): the height stays 1 (1 -> 1),
    // the width goes 8 -> 4 -> 2, so the loop runs while the width alone is too large.
    const model = convInputModel([1, 1, 8], [2, 1, 2], [3]);
    expect(layersOf(model).filter((l) => l instanceof AvgPool2d)).toHaveLength(2);
    expect(model!.outputShape([5, 1, 1, 8])).toEqual([5, 2, 1, 2]);
  });

  test('pools a 1-pixel-wide image along its height only: [1, 8, 1] -> [2, 2, 1]', () => {
    const model = convInputModel([1, 8, 1], [2, 2, 1], [3]);
    expect(layersOf(model).filter((l) => l instanceof AvgPool2d)).toHaveLength(2);
    expect(model!.outputShape([5, 1, 8, 1])).toEqual([5, 2, 2, 1]);
  });

  test('declines sizes the pools never reach', () => {
    // larger than x: no pool can grow an image
    expect(convInputModel([1, 4, 4], [2, 8, 8])).toBeUndefined();
    // 8 -> 4 -> 2 skips 3
    expect(convInputModel([1, 8, 8], [2, 3, 3])).toBeUndefined();
  });

  test('its hidden convolutions have no bias (the BatchNorm after them has one)', () => {
    const layers = layersOf(convInputModel([1, 8, 8], [2, 4, 4], [3, 5]));
    const convs = layers.filter((l): l is Conv2d => l instanceof Conv2d);
    // two hidden convs, then the last 5x5 conv to the 2 output channels, which keeps its bias
    expect(convs.map((c) => [c.inChannels, c.outChannels, c.hasBias])).toEqual([
      [1, 3, false],
      [3, 5, false],
      [5, 2, true],
    ]);
  });
});

describe('unlockOptions checks', () => {
  test.each([[null], [5], ['yes'], [[1024]]])('rejects unlock = %p naming the accepted values', (unlock) => {
    expectThrows(() => unlockOptions(unlock), 'TypeError', /'unlock' must be true, false or an object/);
  });

  test('accepts hidden widths of 1, rejects 0', () => {
    expect(unlockOptions({ hidden: [1, 1] })).toEqual({ hidden: [1, 1] });
    expectThrows(() => unlockOptions({ hidden: [0] }), 'RangeError', /'unlock\.hidden' must be an array of positive integers/);
  });
});

describe("InputModel checks a custom network's output rows", () => {
  test('rejects rows of another length: [16] for a [4, 2, 2] input', () => {
    expectThrows(
      () => new InputModel('input model 1', 1, [6], [4, 2, 2], { network: () => new Linear(6, 16) }),
      'RangeError',
      /input model 1: the input model outputs rows \[16\], the module's input has \[4, 2, 2\]/,
    );
  });

  test('rejects rows of the right length that differ in one size: [4, 4, 5] for [4, 4, 4]', () => {
    // a 1x1 conv keeps the 4x5 image: only the last size differs
    const network = () => new Conv2d({ inChannels: 1, outChannels: 4, kernel: 1 });
    expectThrows(
      () => new InputModel('input model 2', 2, [1, 4, 5], [4, 4, 4], { network }),
      'RangeError',
      /input model 2: the input model outputs rows \[4, 4, 5\], the module's input has \[4, 4, 4\]/,
    );
  });

  test('rejects rows of the right length that differ in one size: [5] for [4]', () => {
    expectThrows(
      () => new InputModel('input model 1', 1, [6], [4], { network: () => new Linear(6, 5) }),
      'RangeError',
      /outputs rows \[5\], the module's input has \[4\]/,
    );
  });
});

describe('InputModel.dispose', () => {
  test("frees the network's parameters and disposes of the optimizer", () => {
    const model = new InputModel('input model 1', 1, [3], [2], { hidden: [4] });
    const optimizer = new Adam({ lr: 1e-3 });
    const disposeOptimizer = jest.spyOn(optimizer, 'dispose');
    model.initialize(cpu, new Random(1), optimizer);
    const params = model.parameters();
    // Linear(3, 4) weight and bias, BatchNorm1d(4) scale and shift, Linear(4, 2) weight and bias
    expect(params.length).toBeGreaterThanOrEqual(6);
    expect(params.some((p) => p.value.disposed)).toBe(false);
    model.dispose();
    expect(params.every((p) => p.value.disposed && p.grad.disposed)).toBe(true);
    expect(disposeOptimizer).toHaveBeenCalledTimes(1);
  });
});
