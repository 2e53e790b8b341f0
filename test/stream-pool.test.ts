// CPU streams are queues served by one pool of threads (native/core/parallel.h): a stream
// waiting for an event is parked, not a blocked thread, so many streams waiting on a pool
// smaller than their number still finish, in the order their events impose. Run in fresh
// processes because the pool's size is read when the addon loads. The native checks of the
// same properties (and more: FIFO order, one task at a time, draining on destruction,
// cancelQueued) are test/native/streams/build.sh, also under ThreadSanitizer.
import { spawnSync } from 'child_process';
import * as path from 'path';

const probe = path.join(__dirname, 'fixtures', 'stream-pool-waits.js');

function run(threads: string): { threads: number; waiters: number[]; chained: number } {
  const r = spawnSync(process.execPath, [probe], {
    env: { ...process.env, SYNTHGRAD_NUM_THREADS: threads },
    encoding: 'utf8',
    timeout: 60_000, // a deadlock fails the test here
  });
  if (r.status !== 0) throw new Error(`status ${r.status} signal ${r.signal}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function expectedChain(length: number): number {
  let y = 0;
  for (let k = 0; k < length; k++) y = Math.fround((k % 3) + 2 * y);
  return y;
}

describe.each(['1', '2'])('with SYNTHGRAD_NUM_THREADS=%s', (threads) => {
  test('16 streams wait for events recorded later by another stream, and a chain of waits across 22 streams runs in order', () => {
    const out = run(threads);
    expect(out.threads).toBe(Number(threads));
    expect(out.waiters).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(out.chained).toBe(expectedChain(22));
  });
});
