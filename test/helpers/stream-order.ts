// The stream-order checker (native.checkStreams, native/core/stream_order.h) for a whole test
// file: every op, read, record and wait of its tests is checked against happens-before when
// it is enqueued, so a missing cross-stream wait fails the test whether or not the race it
// opens is won this time.
import { native } from '../../ts';

/** Call at the top level of a test file: the checker is on for its tests, as it was after. */
export function checkStreamOrder(): void {
  let was = false;
  beforeAll(() => {
    was = native.checkStreams();
    native.checkStreams(true);
  });
  afterAll(() => {
    native.checkStreams(was);
  });
}
