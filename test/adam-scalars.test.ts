// Adam's step scalars computed in JavaScript (adamStepScalars, ts/optim/optimizers.ts) equal the
// native adamScalars (native/core/op_types.h) bit for bit: the optimizer writes the JavaScript
// ones into the fused op's hyper tensor, and training must not change by a bit.
import { native } from '../ts/native';
import { Random } from '../ts/random';
import { adamStepScalars } from '../ts/optim/optimizers';

/** Counts the (lr, beta1, beta2, step) cases where the two differ; names the first few. */
function mismatches(cases: Iterable<[number, number, number, number]>): { count: number; checked: number; first: string[] } {
  let count = 0,
    checked = 0;
  const first: string[] = [];
  for (const [lr, b1, b2, step] of cases) {
    checked++;
    const [a, b] = adamStepScalars(lr, b1, b2, step);
    const [na, nb] = native.adamScalars(lr, b1, b2, step);
    if (!Object.is(a, na) || !Object.is(b, nb)) {
      count++;
      if (first.length < 5) first.push(`lr ${lr} beta1 ${b1} beta2 ${b2} step ${step}: ${a}, ${b} vs native ${na}, ${nb}`);
    }
  }
  return { count, checked, first };
}

test('the usual betas and learning rates, every step up to 20,000', () => {
  function* cases(): Generator<[number, number, number, number]> {
    for (const [b1, b2] of [
      [0.9, 0.999],
      [0.9, 0.99],
      [0.5, 0.9],
      [0.95, 0.9999],
      [0, 0.999],
    ])
      for (const lr of [1e-3, 3e-4]) for (let step = 1; step <= 20_000; step++) yield [lr, b1, b2, step];
  }
  const r = mismatches(cases());
  expect(r.checked).toBe(200_000);
  expect(r.first).toEqual([]);
});

test('random betas, learning rates and steps (up to 10^7)', () => {
  const rng = new Random(2024);
  function* cases(): Generator<[number, number, number, number]> {
    for (let i = 0; i < 200_000; i++) {
      const b1 = rng.next() < 0.5 ? rng.uniform(0, 1) : 1 - 10 ** -rng.uniform(1, 4);
      const b2 = rng.next() < 0.5 ? rng.uniform(0, 1) : 1 - 10 ** -rng.uniform(1, 6);
      const lr = 10 ** -rng.uniform(0, 6);
      const step = rng.next() < 0.5 ? 1 + rng.int(1000) : 1 + rng.int(10_000_000);
      if (Math.fround(b1) < 1 && Math.fround(b2) < 1) yield [lr, b1, b2, step];
    }
  }
  const r = mismatches(cases());
  expect(r.checked).toBeGreaterThan(190_000);
  expect(r.first).toEqual([]);
});

test('the comparison can fail: the same formula with float32 intermediates differs often', () => {
  // (A reordering in double mostly survives the final rounding to float32; rounding the
  // power and the bias correction to float32 on the way does not.)
  const f32 = Math.fround;
  let differ = 0;
  for (let step = 1; step <= 2000; step++) {
    const [na, nb] = native.adamScalars(1e-3, 0.9, 0.999, step);
    if (f32(f32(1e-3) / f32(1 - f32(Math.pow(f32(0.9), step)))) !== na) differ++;
    if (f32(Math.sqrt(f32(1 - f32(Math.pow(f32(0.999), step))))) !== nb) differ++;
  }
  expect(differ).toBeGreaterThan(100);
});
