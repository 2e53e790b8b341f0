// StrykerJS mutation testing of the TypeScript training logic: `npm run mutate` (all four
// folders) or, for one folder, `npm run mutate -- --mutate 'ts/dni/**/*.ts'`. The report is
// written to reports/mutation/. Each mutant is run against the tests that cover it only
// (coverageAnalysis perTest); mutants that do not compile are dropped by the TypeScript checker.
import path from 'node:path';

// The sandbox copies the sources, not the built addon: the tests load the real one.
process.env.SYNTHGRAD_ADDON ??= path.resolve('build/Release/synthgrad.node');

// STRYKER_TESTS=schedule,optimizers runs only those test files (a quicker, lower-bound score
// for a folder those files are written for); default: every test that can see a mutant.
const only = process.env.STRYKER_TESTS?.split(',').map((name) => `<rootDir>/test/${name.trim()}.test.ts`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'jest',
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  mutate: ['ts/dni/**/*.ts', 'ts/optim/**/*.ts', 'ts/train/**/*.ts', 'ts/cli/**/*.ts'],
  coverageAnalysis: 'perTest',
  jest: {
    projectType: 'custom',
    enableFindRelatedTests: true,
    configFile: 'jest.config.js',
    // Merged over jest.config.js. roots: jest finds a test's related sources only under its
    // roots. Left out: tests that run dist/ (the compiled, unmutated package) in child
    // processes, which cannot see a mutant and take minutes; the native op tests (no mutated
    // code runs there); test/gpu (needs a GPU).
    config: {
      roots: ['<rootDir>/test', '<rootDir>/ts'],
      // Transpile only: the TypeScript checker has already type-checked each mutant once.
      transform: { '^.+\\.tsx?$': ['ts-jest', { isolatedModules: true }] },
      ...(only ? { testMatch: only } : {}),
      testPathIgnorePatterns: ['/node_modules/', 'test/readme.test.ts', 'test/package.test.ts', 'test/ops.test.ts', 'test/gpu/'],
    },
  },
  // Sources (and dist/, which the CLI tests run) only: the native build, data and native code stay out.
  ignorePatterns: ['build', '.stryker-tmp*', 'experiments', 'docs', 'cuda', 'native', 'bench/results', 'reports', '.device'],
  concurrency: 2,
  timeoutMS: 60000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  // STRYKER_REPORT=name writes to reports/name/ (two runs side by side).
  htmlReporter: { fileName: `reports/${process.env.STRYKER_REPORT ?? 'mutation'}/index.html` },
  jsonReporter: { fileName: `reports/${process.env.STRYKER_REPORT ?? 'mutation'}/mutation.json` },
  thresholds: { high: 90, low: 80, break: null },
};
