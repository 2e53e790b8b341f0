// The op profile (native.profile, native/core/op_profile.h): it times the ops run while it is
// on, per op name, and nothing else.
import { Device, Stream, Tensor, native } from '../ts';
import * as ops from '../ts/ops';
import { Arena } from '../ts/tensor';

describe('the op profile', () => {
  afterEach(() => native.profile('stop'));

  test('records one Linear forward as one linearForward call with its time', async () => {
    const device = Device.cpu();
    const stream = new Stream(device);
    const arena = new Arena();
    const x = Tensor.fromArray(new Float32Array(64 * 128).fill(0.5), [64, 128], { device });
    const w = Tensor.fromArray(new Float32Array(32 * 128).fill(0.25), [32, 128], { device });
    try {
      native.profile('start');
      expect(native.profile('read')).toEqual([]);
      ops.linear({ device, stream, arena }, x, w, null);
      await stream.synchronize();
      const times = native.profile('read');
      expect(times.map((t) => [t.op, t.calls])).toEqual([['linearForward', 1]]);
      expect(times[0].seconds).toBeGreaterThan(0);
      expect(times[0].seconds).toBeLessThan(10);

      // stopped: an op is not recorded; started again: the totals start from nothing
      native.profile('stop');
      ops.linear({ device, stream, arena }, x, w, null);
      await stream.synchronize();
      expect(native.profile('read').map((t) => t.calls)).toEqual([1]);
      native.profile('start');
      ops.fill({ stream }, x, 1);
      ops.fill({ stream }, x, 2);
      await stream.synchronize();
      expect(native.profile('read').map((t) => [t.op, t.calls])).toEqual([['fill', 2]]);
    } finally {
      arena.dispose();
      x.dispose();
      w.dispose();
    }
  });

  test('rejects an unknown action, naming the argument', () => {
    expect(() => native.profile('begin' as 'start')).toThrow(/profile: 'action' must be 'start', 'stop' or 'read', got 'begin'/);
    expect(() => (native.profile as (a?: unknown) => unknown)(3)).toThrow(/action/);
  });
});
