// `npm start`'s options: defaults, parsing, and errors that name the flag before any data loads.
import { parseArgs } from '../ts/cli/options';

describe('npm start options', () => {
  test('defaults: backprop with Adam at 1e-3, 10 epochs, 3 hidden layers of 256', () => {
    const o = parseArgs([]);
    expect(o).toMatchObject({ method: 'backprop', optimizer: 'adam', lr: 1e-3, epochs: 10, batchSize: 256, hidden: [256, 256, 256], center: false });
    expect(o.synthLr).toBeUndefined();
  });

  test('DNI with SGD modules and Adam synthesizers at their own rate', () => {
    const o = parseArgs(['--method', 'dni', '--optimizer', 'sgd', '--lr', '3e-3', '--synth-lr', '1e-3', '--center', '--mask-inactive', '--hidden', '256,128']);
    expect(o).toMatchObject({ method: 'dni', optimizer: 'sgd', lr: 3e-3, synthLr: 1e-3, center: true, maskInactive: true, hidden: [256, 128] });
  });

  test('bad values name the flag', () => {
    expect(() => parseArgs(['--optimizer', 'rmsprop'])).toThrow(/--optimizer must be adam or sgd, got 'rmsprop'/);
    expect(() => parseArgs(['--method', 'dnii'])).toThrow(/--method must be backprop, dni or cdni, got 'dnii'/);
    expect(() => parseArgs(['--lr', '-1'])).toThrow(/--lr must be > 0, got -1/);
    expect(() => parseArgs(['--synth-lr', 'fast', '--method', 'dni'])).toThrow(/--synth-lr needs a number, got 'fast'/);
    expect(() => parseArgs(['--epochs'])).toThrow(/--epochs needs a number, got ''/);
    expect(() => parseArgs(['--streams', 'many'])).toThrow(/--streams must be per-module or single/);
    expect(() => parseArgs(['--bogus', '1'])).toThrow(/unknown option '--bogus'/);
  });

  test('--at chooses the cuts and --steps the budget', () => {
    expect(parseArgs(['--method', 'dni', '--at', '2,5']).at).toEqual([2, 5]);
    expect(parseArgs(['--method', 'cdni', '--at', 'every-layer']).at).toBe('every-layer');
    expect(parseArgs([]).at).toBe('every-activation');
    expect(parseArgs(['--steps', '30']).steps).toBe(30);
    expect(() => parseArgs(['--method', 'dni', '--at', '2,x'])).toThrow(/--at must be every-activation, every-layer or layer indices such as 2,5, got '2,x'/);
    expect(() => parseArgs(['--method', 'dni', '--at', '-1'])).toThrow(/--at must be/);
  });

  test.each(['--p-update 0.2', '--pipeline 2', '--streams single', '--diagnose-every 5', '--center', '--mask-inactive', '--at 2', '--synth-lr 1e-3'])(
    'a DNI-only flag under --method backprop is refused: %s', (flags) => {
      const flag = flags.split(' ')[0];
      expect(() => parseArgs(flags.split(' '))).toThrow(`${flag} applies to dni and cdni only`);
      expect(() => parseArgs(['--method', 'cdni', ...flags.split(' ')])).not.toThrow();
    });

  test('options that do not fit the method are refused', () => {
    expect(() => parseArgs(['--method', 'cdni', '--optimizer', 'sgd'])).toThrow(/--optimizer sgd with dni or cdni needs --synth-lr/);
    expect(parseArgs(['--optimizer', 'sgd', '--lr', '0.01'])).toMatchObject({ method: 'backprop', optimizer: 'sgd', lr: 0.01 });
  });
});
