// Edges of the Synthesizer's constructor that other tests leave open: the shape of h (rows or
// images only), a custom network at an image cut (used as given, checked for the image shape it
// maps to), the conv options' boundaries (filters [1] and kernel 1 accepted; even, fractional,
// zero or negative kernels refused by the synthesizer's own message), and the bias-free hidden
// convs (a BatchNorm2d follows, which cancels a bias). Construction only: milliseconds.
import { BatchNorm2d, Conv2d, ReLU, Sequential, Synthesizer } from '../ts';
import type { SynthesizerOptions } from '../ts';

describe('the shape of h', () => {
  test.each([[[]], [[3, 4]], [[2, 3, 4, 5]]])('%j is refused, naming the synthesizer and the shape', (shape) => {
    const make = () => new Synthesizer('synthesizer 2', shape, 3);
    expect(make).toThrow(RangeError);
    expect(make).toThrow(`synthesizer 2: h must be rows [features] or images [channels, height, width], got [${shape.join(', ')}]`);
  });

  test('rows [features] and images [C, H, W] are accepted', () => {
    expect(new Synthesizer('s', [6], 3, { hidden: [] }).width).toBe(6);
    expect(new Synthesizer('s', [2, 3, 4], 3, { filters: [], kernel: 1 }).width).toBe(24);
  });
});

describe('a custom network at an image cut ([C, H, W] = [2, 5, 6], 3 classes)', () => {
  const make = (options: SynthesizerOptions) => () => new Synthesizer('synthesizer 1', [2, 5, 6], 3, options);

  test('is used as given, called with (h channels + classes when conditioned, h channels)', () => {
    const calls: [number, number][] = [];
    const net = new Conv2d({ inChannels: 5, outChannels: 2, kernel: 3, padding: 'same' });
    const s = new Synthesizer('s', [2, 5, 6], 3, {
      conditioned: true,
      filters: [7],
      network: (inputs, outputs) => {
        calls.push([inputs, outputs]);
        return net;
      },
    });
    expect(s.network).toBe(net);
    expect(calls).toEqual([[5, 2]]);
    expect(new Synthesizer('s', [2, 5, 6], 3, { network: (i, o) => new Conv2d({ inChannels: i, outChannels: o, kernel: 1 }) }).inputs).toBe(
      2,
    );
  });

  test.each([
    [{ network: () => ({}) as never }, TypeError, /^synthesizer 1: 'network' must return a Module$/],
    [
      { network: (i: number) => new Conv2d({ inChannels: i, outChannels: 3, kernel: 3, padding: 'same' }) },
      RangeError,
      /^synthesizer 1: the synthesizer network outputs \[1, 3, 5, 6\] for one example; the module's output is \[1, 2, 5, 6\]$/,
    ],
    [
      // no padding: 3x3 shrinks the image to 3x4
      { network: (i: number, o: number) => new Conv2d({ inChannels: i, outChannels: o, kernel: 3 }) },
      RangeError,
      /^synthesizer 1: the synthesizer network outputs \[1, 2, 3, 4\] for one example; the module's output is \[1, 2, 5, 6\]$/,
    ],
    [
      { network: () => new Conv2d({ inChannels: 4, outChannels: 2, kernel: 1 }) },
      RangeError,
      /^synthesizer 1: the synthesizer network does not accept \[batch, 2, 5, 6\] images \(/,
    ],
  ])('%#: a bad network is refused', (options, type, message) => {
    expect(make(options as SynthesizerOptions)).toThrow(type);
    expect(make(options as SynthesizerOptions)).toThrow(message);
  });
});

describe('the conv options', () => {
  const make = (options: SynthesizerOptions) => () => new Synthesizer('synthesizer 1', [2, 4, 4], 3, options);

  test('filters [1] and kernel 1 (the smallest valid values) are accepted', () => {
    const s = new Synthesizer('s', [2, 4, 4], 3, { filters: [1], kernel: 1 });
    const layers = (s.network as Sequential).layers;
    expect(layers.map((l) => l.constructor.name)).toEqual(['Conv2d', 'BatchNorm2d', 'ReLU', 'Conv2d']);
    const [first, , , last] = layers as Conv2d[];
    expect([first.inChannels, first.outChannels, first.window.kernel]).toEqual([2, 1, [1, 1]]);
    expect([last.inChannels, last.outChannels, last.window.kernel]).toEqual([1, 2, [1, 1]]);
  });

  test.each([[0], [-1], [-3], [2], [4], [2.5], [1.5], ['3']])('kernel %j is refused by the synthesizer', (kernel) => {
    expect(make({ kernel: kernel as number })).toThrow(RangeError);
    expect(make({ kernel: kernel as number })).toThrow(
      `synthesizer 1: 'kernel' must be an odd positive integer (size-preserving padding), got ${JSON.stringify(kernel)}`,
    );
  });

  test.each([[[0]], [[2, -1]], [[1.5]]])('filters %j are refused', (filters) => {
    expect(make({ filters })).toThrow(`synthesizer 1: 'filters' must be an array of positive integers, got ${JSON.stringify(filters)}`);
  });

  test('hidden convs have no bias (BatchNorm2d follows); the last conv has one', () => {
    const s = new Synthesizer('s', [2, 4, 4], 3, { filters: [3, 4], kernel: 3 });
    const layers = (s.network as Sequential).layers;
    expect(layers[1]).toBeInstanceOf(BatchNorm2d);
    expect(layers[2]).toBeInstanceOf(ReLU);
    const convs = layers.filter((l): l is Conv2d => l instanceof Conv2d);
    expect(convs.map((c) => [c.inChannels, c.outChannels, c.hasBias])).toEqual([
      [2, 3, false],
      [3, 4, false],
      [4, 2, true],
    ]);
  });
});
