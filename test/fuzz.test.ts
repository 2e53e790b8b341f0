// A small run of the fuzzer (scripts/fuzz.js; CI runs 10,000 calls), and its harness catching
// each kind of failure it exists to find: a crash, a hang, a thrown non-Error and a sanitizer
// report, injected with SYNTHGRAD_FUZZ_INJECT, each reported with its call.
import { spawnSync } from 'child_process';
import * as path from 'path';

const script = path.join(__dirname, '..', 'scripts', 'fuzz.js');

function fuzz(args: string[], inject?: string) {
  const r = spawnSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SYNTHGRAD_FUZZ_INJECT: inject ?? '' },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('400 seeded calls: no crash, hang or malformed error', () => {
  const r = fuzz(['--seed', '7', '--calls', '400', '--batch', '200', '--jobs', '1']);
  expect(r.out).toMatch(/crashes 0, hangs 0, badly formed errors 0/);
  const calls = Number(/(\d+) calls in/.exec(r.out)?.[1]);
  expect(calls).toBeGreaterThanOrEqual(400);
  expect(r.status).toBe(0);
}, 120_000);

test.each([
  ['crash', /CRASH: seed 3 batch 0 call 5 .*\n\s+injected crash: process.abort\(\)\n\s+killed by SIGABRT/],
  ['hang', /HANG: seed 3 batch 0 call 5 .*\n\s+injected hang: for \(;;\)\n\s+no progress for 3 s/],
  ['throw', /BAD ERROR: seed 3 batch 0: non-Error thrown \(string: a string\) by injected throw/],
  // UBSan without halt_on_error: the batch finishes, its report is still found in the output.
  [
    'report',
    /SANITIZER REPORT: seed 3 batch 0 call 19 .*\n[^\n]*\n\s+in the output of a batch that finished.*\n\s+\| x.cpp:1:1: runtime error: injected/,
  ],
])(
  'an injected %s is caught and reported with its call',
  (kind, expected) => {
    const r = fuzz(['--seed', '3', '--calls', '20', '--batch', '20', '--jobs', '1', '--timeout', '3'], kind);
    expect(r.out).toMatch(expected);
    expect(r.out).toMatch(/fuzz: FAILED/);
    expect(r.out).toMatch(
      kind === 'report' ? /sanitizer reports 1/ : kind === 'throw' ? /badly formed errors 1/ : new RegExp(`${kind}es 1|${kind}s 1`),
    );
    expect(r.status).toBe(1);
  },
  60_000,
);
