// decouple() on its own, without training: every option checked at its boundaries (each error
// names decouple and the option), where the model is cut and what each module and synthesizer
// gets (widths, names, centring and masking only where they are exact or useful), the state it
// exposes, and dispose(). Nothing here runs a step, so each test takes milliseconds.
import { BatchNorm1d, Device, Linear, Random, ReLU, SGD, Sequential, Tanh, decouple, mlp } from '../ts';
import type { DecoupleOptions } from '../ts';
import { checkStreamOrder } from './helpers/stream-order';

// Every op of these tests is checked for a missing cross-stream wait (native.checkStreams).
checkStreamOrder();

const cpu = Device.cpu();
/** Linear, BN, ReLU, Linear, BN, ReLU, Linear: 7 layers, indices 0..6 */
const model = () => mlp(6, [5, 4], 3);

describe('bad options are refused, naming decouple and the option', () => {
  test.each([
    [{ lambda: -0.1 }, RangeError, /^decouple: 'lambda' must be in \[0, 1\], got -0.1$/],
    [{ lambda: 1.01 }, RangeError, /'lambda' must be in \[0, 1\], got 1.01/],
    [{ lambda: '0.5' }, RangeError, /'lambda' must be in \[0, 1\], got 0.5/],
    [{ warmupSteps: 1.5 }, RangeError, /^decouple: 'warmupSteps' must be a non-negative integer, got 1.5$/],
    [{ warmupSteps: -1 }, RangeError, /'warmupSteps' must be a non-negative integer, got -1/],
    [{ streams: 'many' }, TypeError, /^decouple: 'streams' must be 'per-module' or 'single', got many$/],
    [{ classes: 0 }, RangeError, /^decouple: 'classes' must be a positive integer, got 0$/],
    [{ classes: 2.5 }, RangeError, /'classes' must be a positive integer, got 2.5/],
    [{ at: [6] }, RangeError, /^decouple: cut index 6 is out of range: cuts go after layers 0..5 of the 7-layer model$/],
    [{ at: [-1] }, RangeError, /cut index -1 is out of range/],
    [{ at: [1.5] }, RangeError, /cut index 1.5 is out of range/],
    [{ at: [] }, RangeError, /^decouple: no cut: the model would be a single module/],
    [
      { at: 'everywhere' },
      TypeError,
      /^decouple: 'at' must be 'every-activation', 'every-layer' or an array of layer indices, got everywhere$/,
    ],
    [{ schedule: 'lockstep' }, TypeError, /^decouple: 'schedule' must be an object$/],
    [{ schedule: { kind: 'lockstep', depth: 2 } }, TypeError, /^decouple: unknown option 'schedule.depth'/],
    [{ schedule: { kind: 'lockstep', pUpdate: 0 } }, RangeError, /^decouple: 'schedule.pUpdate' must be in \(0, 1\], got 0$/],
    [{ schedule: { kind: 'lockstep', pUpdate: 1.0001 } }, RangeError, /'schedule.pUpdate' must be in \(0, 1\], got 1.0001/],
    [{ schedule: { kind: 'pipelined', depth: 2, pUpdate: '1' } }, RangeError, /'schedule.pUpdate' must be in \(0, 1\], got 1/],
    [{ schedule: { kind: 'pipelined', depth: 0 } }, RangeError, /^decouple: 'schedule.depth' must be a positive integer, got 0$/],
    [{ schedule: { kind: 'pipelined', depth: 1.5 } }, RangeError, /'schedule.depth' must be a positive integer, got 1.5/],
    [{ schedule: { kind: 'pipelined' } }, RangeError, /'schedule.depth' must be a positive integer, got undefined/],
    [{ schedule: { kind: 'async' } }, TypeError, /^decouple: 'schedule.kind' must be 'lockstep' or 'pipelined', got async$/],
    [{ synthesizer: { conditioned: 'no' } }, TypeError, /^decouple: 'synthesizer.conditioned' must be a boolean/],
    [{ synthesizer: { hiden: [3] } }, TypeError, /^decouple: unknown option 'synthesizer.hiden'/],
    [{ lamda: 0.5 }, TypeError, /^decouple: unknown option 'lamda'/],
  ])('%j', (options, type, message) => {
    const make = () => decouple(model(), options as DecoupleOptions);
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });

  test.each([[new Linear(3, 3), /^decouple: 'model' must be a Sequential, got Linear$/]])(
    'a model that is not a Sequential',
    (m, message) => {
      expect(() => decouple(m as never)).toThrow(TypeError);
      expect(() => decouple(m as never)).toThrow(message);
    },
  );

  test.each([null, 5, 'x'])('options %p', (options) => {
    expect(() => decouple(model(), options as never)).toThrow(TypeError);
    expect(() => decouple(model(), options as never)).toThrow(/^decouple: options must be an object$/);
  });

  test('the edges of the valid values are accepted as given', () => {
    const net = decouple(model(), {
      lambda: 1,
      warmupSteps: 0,
      classes: 1,
      at: [5],
      schedule: { kind: 'pipelined', depth: 1, pUpdate: 1 },
    });
    expect(net.config).toEqual({
      cuts: [5],
      schedule: { kind: 'pipelined', depth: 1, pUpdate: 1 },
      lambda: 1,
      warmupSteps: 0,
      streams: 'per-module',
    });
    expect(decouple(model(), { lambda: 0, at: [0], streams: 'single' }).config.streams).toBe('single');
    expect(decouple(model(), { schedule: { kind: 'lockstep', pUpdate: 1e-9 } }).config.schedule).toEqual({
      kind: 'lockstep',
      pUpdate: 1e-9,
    });
    expect(decouple(model()).config).toEqual({
      cuts: [2, 5],
      schedule: { kind: 'lockstep', pUpdate: 1 },
      lambda: 0,
      warmupSteps: 0,
      streams: 'per-module',
    });
  });
});

describe('where the model is cut', () => {
  const layerNames = (s: Sequential) => s.layers.map((l) => l.constructor.name);

  test('at every activation but a last one; each module ends at its cut', () => {
    const net = decouple(new Sequential([new Linear(4, 5), new ReLU(), new Linear(5, 3), new Tanh()]));
    expect(net.config.cuts).toEqual([1]);
    expect(net.modules.map(layerNames)).toEqual([
      ['Linear', 'ReLU'],
      ['Linear', 'Tanh'],
    ]);
  });

  test('given indices: deduplicated and sorted, modules in order, every layer used once', () => {
    const net = decouple(model(), { at: [5, 0, 2, 2] });
    expect(net.config.cuts).toEqual([0, 2, 5]);
    expect(net.modules.map(layerNames)).toEqual([['Linear'], ['BatchNorm1d', 'ReLU'], ['Linear', 'BatchNorm1d', 'ReLU'], ['Linear']]);
    expect(net.synthesizers.map((s) => s.width)).toEqual([5, 5, 4]);
    expect(net.synthesizers.map((s) => s.name)).toEqual([
      'synthesizer 1 (after layer 0)',
      'synthesizer 2 (after layer 2)',
      'synthesizer 3 (after layer 5)',
    ]);
    expect(net.name).toBe('DNI(4 modules, cuts after layers 0, 2, 5)');
  });

  test('every layer', () => {
    const net = decouple(model(), { at: 'every-layer' });
    expect(net.config.cuts).toEqual([0, 1, 2, 3, 4, 5]);
    expect(net.modules).toHaveLength(7);
  });

  test('cDNI: named so, its synthesizers one-hot `classes` labels (default: the output width)', () => {
    const net = decouple(model(), { synthesizer: { conditioned: true } });
    expect(net.name).toBe('cDNI(3 modules, cuts after layers 2, 5)');
    expect(net.synthesizers.map((s) => [s.conditioned, s.classes, s.inputs])).toEqual([
      [true, 3, 8],
      [true, 3, 7],
    ]);
    expect(net.labelClasses()).toBe(3);
    expect(decouple(model(), { classes: 7, synthesizer: { conditioned: true } }).labelClasses()).toBe(7);
    expect(decouple(model()).labelClasses()).toBeUndefined();
    expect(decouple(model()).synthesizers.map((s) => s.conditioned)).toEqual([false, false]);
  });
});

describe('centring and masking are applied only where they hold', () => {
  // Modules: [Linear, BN, ReLU] | [Linear, BN, ReLU] | [Linear]; at [0, 2]: [Linear] | [BN, ReLU] | ...
  test.each([
    ['center: true, before Linear → BatchNorm', { synthesizer: { center: true } }, [true, false], [false, false]],
    ['center: true, before a BatchNorm', { at: [0, 2], synthesizer: { center: true } }, [true, true], [false, false]],
    [
      'maskInactive: true, after modules that end with a ReLU',
      { at: [0, 2], synthesizer: { maskInactive: true } },
      [false, false],
      [false, true],
    ],
    ['both off by default', {}, [false, false], [false, false]],
    ['center: false is kept off', { synthesizer: { center: false, maskInactive: false } }, [false, false], [false, false]],
  ] as [string, DecoupleOptions, boolean[], boolean[]][])('%s', (_, options, center, mask) => {
    const net = decouple(model(), options);
    expect(net.synthesizers.map((s) => s.center)).toEqual(center);
    expect(net.synthesizers.map((s) => s.maskInactive)).toEqual(mask);
  });

  test('a bad value reaches the synthesizer, which names it', () => {
    expect(() => decouple(model(), { synthesizer: { center: 'yes' as never } })).toThrow(/'center' must be true or false, got "yes"/);
  });
});

describe('state and disposal', () => {
  test("stateTensors: the model's state, then the synthesizers' networks'", () => {
    const net = decouple(model(), { synthesizer: { hidden: [3] } });
    net.initialize(cpu, new Random(1));
    for (const s of net.synthesizers) s.initialize(cpu, new Random(2), new SGD({ lr: 0.1 }));
    const own = net.model.stateTensors();
    const synth = net.synthesizers.flatMap((s) => s.network.stateTensors());
    expect(own.length).toBeGreaterThan(0);
    expect(synth.length).toBeGreaterThan(0);
    expect(net.stateTensors()).toEqual([...own, ...synth]);
    expect(net.parameters()).toEqual(net.model.parameters());
    const params = [...net.parameters(), ...net.synthesizerParameters()].map((p) => p.value);
    net.dispose();
    expect([...params, ...own, ...synth].every((t) => t.disposed)).toBe(true);
  });

  test("the modules share the model's layers (training them trains the model)", () => {
    const m = model();
    const net = decouple(m);
    expect(net.modules.flatMap((s) => s.layers)).toEqual(m.layers);
    expect(net.modules[0].layers[1]).toBeInstanceOf(BatchNorm1d);
    expect(net.outputFeatures(6)).toBe(3);
    expect(net.inputFeatures()).toBe(6);
  });
});
