// `npm start -- --unlock`: the flag reaches decouple's `unlock` with dni and cdni, is an error
// naming it with other methods and with the pipelined schedule, and is recorded in a
// checkpoint's config only when given (so that other runs' checkpoints are unchanged).
import { DecoupledNetwork } from '../ts';
import { configure } from '../ts/cli/configure';
import { parseArgs } from '../ts/cli/options';

const TRAIN = 1000;
const cli = (args: string) => configure(parseArgs(args.split(' ').filter(Boolean)), TRAIN);

describe('--unlock', () => {
  test.each([
    ['dni', false],
    ['cdni', true],
  ])('with --method %s gives modules 2..4 input models from the 784 pixels', (method, conditioned) => {
    const net = cli(`--method ${method} --unlock --checkpoint run.ckpt`).model as DecoupledNetwork;
    expect(net).toBeInstanceOf(DecoupledNetwork);
    expect(net.config.unlock).toBe(true);
    expect(net.synthesizers.map((s) => s.conditioned)).toEqual([conditioned, conditioned, conditioned]);
    expect(net.inputModels.map((m) => [m.module, [...m.input], [...m.output]])).toEqual([
      [1, [784], [256]],
      [2, [784], [256]],
      [3, [784], [256]],
    ]);
    expect(net.name).toMatch(conditioned ? /^cDNI\+unlock\(4 modules/ : /^DNI\+unlock\(4 modules/);
  });

  test('is off by default, and a checkpoint records it only when given', () => {
    const plain = cli('--method dni --checkpoint run.ckpt');
    expect((plain.model as DecoupledNetwork).config).not.toHaveProperty('unlock');
    expect((plain.model as DecoupledNetwork).inputModels).toEqual([]);
    expect(plain.fit.checkpoint!.config).not.toHaveProperty('--unlock');
    expect(cli('--method dni --unlock --checkpoint run.ckpt').fit.checkpoint!.config).toHaveProperty('--unlock', true);
  });

  test('with another method, or with --pipeline, is an error naming the flag', () => {
    for (const method of ['backprop', 'fa', 'dtp'])
      expect(() => cli(`--method ${method} --unlock`)).toThrow(
        new RegExp(`^--unlock applies to dni and cdni only \\(--method ${method} has no synthesizers\\)$`),
      );
    expect(() => cli('--unlock')).toThrow(/^--unlock applies to dni and cdni only \(--method backprop has no synthesizers\)$/);
    expect(() => cli('--method cdni --unlock --pipeline 2')).toThrow(/^--unlock needs the lockstep schedule: drop --pipeline 2$/);
    expect(() => cli('--method dni --unlock=yes')).toThrow(/--unlock/);
  });
});
