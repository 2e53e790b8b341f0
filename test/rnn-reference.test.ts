// synthgrad's recurrent training against the independent PyTorch reference
// (bench/reference/torch_rnn_dni.py through test/helpers/rnn-reference-compare.ts), at a small
// size: truncated BPTT, DNI and DNI + Aux, SGD and Adam, three windows each (one with a reset
// inside), every quantity within 1e-5. Skipped, with the reason, where /usr/bin/python3 has no
// torch (CI): experiments/recurrent-reference/ holds the committed comparison at full size.
import { compareWithTorch, comparisonTable, torchAvailable } from './helpers/rnn-reference-compare';

const available = torchAvailable();
const withTorch = available.ok ? test : test.skip;
if (!available.ok) {
  // Visible in the run's output: which tests did not run, and why.
  console.warn(`test/rnn-reference.test.ts skipped: ${available.reason}`);
}

describe(`recurrent windows against PyTorch${available.ok ? '' : ` (skipped: ${available.reason})`}`, () => {
  withTorch('loss, ĝ, δ_0, the carried state and every weight agree within 1e-5', async () => {
    const c = await compareWithTorch({ hidden: 12, batch: 6, steps: 5, windows: 3 });
    const failed = c.rows.filter((r) => !r.pass);
    if (failed.length) throw new Error(`rows over the tolerance:\n${comparisonTable({ ...c, rows: failed })}`);
    expect(c.rows.length).toBe(2 * (11 + 16 + 20)); // bptt: 3 + 4 weights × (after, step); dni: + ĝ + M's 2 × 2; dni-aux: + A's 2 × 2; SGD and Adam
    for (const r of c.rows) expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-5);
    // The compared values are not trivially zero (a synthesizer at its zero start would give ĝ = 0).
    for (const r of c.rows.filter((x) => x.quantity.startsWith('ĝ') || x.quantity.startsWith('δ_0')))
      expect(r.maxAbs).toBeGreaterThan(1e-3);
  });

  withTorch('a reference given another auxiliary weight disagrees (the comparison can fail)', async () => {
    const c = await compareWithTorch({
      hidden: 12,
      batch: 6,
      steps: 5,
      windows: 2,
      methods: ['dni-aux'],
      optimizers: ['sgd'],
      referenceOverrides: { auxWeight: 3 },
    });
    const failed = c.rows.filter((r) => !r.pass).map((r) => r.quantity);
    expect(failed).toContain('aux.weight after');
    expect(failed).toContain('core.weight after');
    // What the auxiliary loss does not touch in the first window still agrees: its loss.
    expect(c.losses[0].synthgrad[0]).toBeCloseTo(c.losses[0].torch[0], 5);
  });

  withTorch("a reference given the undiscounted bootstrap (γ = 1) disagrees on ĝ and M's target", async () => {
    const c = await compareWithTorch({
      hidden: 12,
      batch: 6,
      steps: 5,
      windows: 2,
      methods: ['dni'],
      optimizers: ['sgd'],
      referenceOverrides: { discount: 1 },
    });
    const failed = c.rows.filter((r) => !r.pass).map((r) => r.quantity);
    expect(failed).toContain('ĝ = γ·M(s_T)/B');
    expect(failed).toContain('core.weight after');
  });
});
