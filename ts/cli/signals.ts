// SIGINT and SIGTERM during a training run of the CLI (./main.ts, and ./distributed.ts on
// every rank): stop after the steps in flight, let fit save the checkpoint, exit with 128 + the
// signal's number; a second signal exits at once, leaving the last checkpoint written (writes
// are atomic).
import * as os from 'os';

export interface SignalStop {
  /** aborted by the first signal; fit's `signal` */
  signal: AbortSignal;
  /** which signal came, if one did */
  received: () => NodeJS.Signals | undefined;
  /** uninstalls the handlers */
  remove: () => void;
}

/** 130 for SIGINT, 143 for SIGTERM. */
export function exitCodeOf(signal: NodeJS.Signals): number {
  return 128 + os.constants.signals[signal];
}

/**
 * Installs the handlers; `say` prints what the first signal does, `saving` whether fit saves a
 * checkpoint then.
 */
export function stopOnSignals(say: (line: string) => void = (line) => console.log(line), saving = true): SignalStop {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals) => {
    if (received) process.exit(exitCodeOf(s));
    received = s;
    say(`\n${s}: stopping after the steps in flight${saving ? ' and saving the checkpoint' : ''} (again to exit at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    received: () => received,
    remove: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
