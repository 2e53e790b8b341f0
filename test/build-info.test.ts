// buildInfo() and threads(): the package's answers about the addon's build and its CPU threads,
// which the CLI and users read instead of the raw addon.
import { buildInfo, native, threads } from '../ts';

test('buildInfo() reports the build the addon was compiled as', () => {
  const info = buildInfo();
  expect(info).toEqual(native.buildInfo());
  expect(['avx512', 'avx2', 'generic']).toContain(info.cpuGemm);
  expect(info.napiVersion).toBe(8);
  if (!info.cuda) expect(info.cudaDevices).toBe(0);
});

test('threads() reads the thread count, and with a count sets it', () => {
  const before = threads();
  expect(before).toBe(native.threads());
  try {
    const other = before === 1 ? 2 : 1;
    expect(threads(other)).toBe(other);
    expect(native.threads()).toBe(other);
  } finally {
    threads(before);
  }
  expect(threads()).toBe(before);
});
