// Edge cases of decouple() (ts/dni/network.ts) that only build the network (no step runs): which
// shape errors are reported as a bad 'input' and which pass through as the layer's own, the shape
// every cut and the last module must have, the checks of 'input', the error when the input
// cannot be inferred, and DecoupledNetwork.outputShape on rows and on images.
import { Conv2d, Flatten, Linear, ReLU, Sequential, Tanh, decouple } from '../ts';

/** The error `fn` throws (fails the test when it throws none). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describe('decouple: shape errors while building', () => {
  test('a first module that does not fit its own inferred input gives the layer error unchanged', () => {
    // Input inferred from Linear(4→3) as [4]; the second Linear of module 1 wants 5 features.
    const model = new Sequential([new Linear(4, 3), new Linear(5, 3), new ReLU(), new Linear(3, 2)]);
    const e = thrown(() => decouple(model));
    expect(e).toBeInstanceOf(RangeError);
    // Not blamed on 'input': the user gave none.
    expect(e.message).toBe('Linear(5→3): expects 5 input features, got 3');
  });

  test('a later module that does not fit gives the layer error unchanged, even with input given', () => {
    // Module 1 (conv 1→2 'same', ReLU) fits [1, 4, 4]; module 2's Linear wants 10 features, gets 2·4·4.
    const model = new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 2, kernel: 3, padding: 'same' }),
      new ReLU(),
      new Flatten(),
      new Linear(10, 2),
    ]);
    const e = thrown(() => decouple(model, { input: [1, 4, 4] }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Linear(10→2): expects 10 input features, got 32');
  });

  test('a first module that does not fit the given input blames the input', () => {
    const model = new Sequential([new Linear(4, 3), new ReLU(), new Linear(3, 2)]);
    expect(() => decouple(model, { input: [5] })).toThrow(
      "decouple: 'input' [5] does not fit the model: Linear(4→3): expects 4 input features, got 5",
    );
  });

  test('a last module that outputs images is refused: the loss takes rows', () => {
    // Conv 'same' keeps 4x4: module 2 outputs [1, 3, 4, 4] for one example.
    const model = new Sequential([
      new Conv2d({ inChannels: 1, outChannels: 2, kernel: 3, padding: 'same' }),
      new ReLU(),
      new Conv2d({ inChannels: 2, outChannels: 3, kernel: 3, padding: 'same' }),
    ]);
    const e = thrown(() => decouple(model, { input: [1, 4, 4] }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      'decouple: module 2 (Sequential(Conv2d(2→3, 3, padding 1))) outputs shape [1, 3, 4, 4]; the loss takes [batch, outputs]',
    );
  });

  test('a cut of rank 3 is refused: a synthesizer takes rows or images', () => {
    // Examples of shape [2, 3]: Tanh keeps [1, 2, 3] at the cut; Flatten then makes rows of 6.
    const model = new Sequential([new Tanh(), new Flatten(), new Linear(6, 2)]);
    const e = thrown(() => decouple(model, { input: [2, 3] }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      'decouple: module 1 (Sequential(Tanh)) outputs shape [1, 2, 3]; ' +
        'a synthesizer takes [batch, features] rows or [batch, channels, height, width] images',
    );
    // The same model cut after Flatten has rows at its cut and builds.
    const net = decouple(model, { input: [2, 3], at: [1] });
    expect(net.modules.map((m) => m.name)).toEqual(['Sequential(Tanh, Flatten)', 'Sequential(Linear(6→2))']);
    net.dispose();
  });
});

describe("decouple: 'input'", () => {
  const rows = () => new Sequential([new Linear(4, 3), new ReLU(), new Linear(3, 2)]);
  const message = /^decouple: 'input' must be the shape of one example \(positive integers, e\.g\. \[1, 28, 28\]\), got /;

  test.each([
    ['an empty shape', []],
    ['a zero dimension', [0]],
    ['a zero among positive dimensions', [4, 0]],
  ])('%s is refused as a TypeError naming input', (_, input) => {
    const e = thrown(() => decouple(rows(), { input }));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(message);
  });

  test('a model that starts with no layer of known input width asks for it', () => {
    // Flatten takes any shape: neither rows of a width nor images.
    const model = new Sequential([new Flatten(), new Linear(4, 3), new ReLU(), new Linear(3, 2)]);
    const e = thrown(() => decouple(model));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe("decouple: cannot infer the input width of the model (start it with a Linear or BatchNorm1d, or give 'input')");
    // With 'input' it builds, with examples of that shape.
    const net = decouple(model, { input: [4] });
    expect(net.input).toEqual([4]);
    net.dispose();
  });
});

describe('DecoupledNetwork.outputShape', () => {
  test("on rows: the model's own check of the width (no image-shape error)", () => {
    const net = decouple(new Sequential([new Linear(4, 3), new ReLU(), new Linear(3, 2)]));
    expect(net.input).toEqual([4]);
    expect(net.outputShape([7, 4])).toEqual([7, 2]);
    const e = thrown(() => net.outputShape([7, 5]));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Linear(4→3): expects 4 input features, got 5');
    net.dispose();
  });

  test("on images: examples of another rank are refused against 'input'", () => {
    const net = decouple(
      new Sequential([
        new Conv2d({ inChannels: 1, outChannels: 2, kernel: 3, padding: 'same' }),
        new ReLU(),
        new Flatten(),
        new Linear(32, 2),
      ]),
      { input: [1, 4, 4] },
    );
    expect(net.outputShape([3, 1, 4, 4])).toEqual([3, 2]);
    // [1, 4] agrees with 'input' where both have a dimension: only the rank differs.
    expect(() => net.outputShape([3, 1, 4])).toThrow(
      "DNI(2 modules, cuts after layers 1): built for examples of shape [1, 4, 4] (decouple's 'input'), got [1, 4]",
    );
    expect(() => net.outputShape([3, 1, 4, 5])).toThrow(
      "DNI(2 modules, cuts after layers 1): built for examples of shape [1, 4, 4] (decouple's 'input'), got [1, 4, 5]",
    );
    net.dispose();
  });
});
