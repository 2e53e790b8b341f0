// StrykerJS mutation testing of the TypeScript training logic. One folder at a time, with the
// fast tests written for it (see `folderTests`):
//   STRYKER_FOLDER=optim npx stryker run       (or dni, train, cli; report in reports/optim/)
// `npm run mutate` runs all four folders against the union of those tests (slow: hours on 2
// cores). scripts/mutate-changed.sh mutates only the lines a change touches (CI).
// Each mutant is run against the tests that cover it only (coverageAnalysis perTest); mutants
// that do not compile are dropped by the TypeScript checker. Results: docs/mutation.md.
import path from 'node:path';

// The sandbox copies the sources, not the built addon: the tests load the real one.
process.env.SYNTHGRAD_ADDON ??= path.resolve('build/Release/synthgrad.node');
// One op thread per test runner: the runners and the checker share the cores.
process.env.SYNTHGRAD_NUM_THREADS ??= '1';

/**
 * The test files (test/<name>.test.ts) run against each folder's mutants: the ones that check
 * its behaviour against independent computations and finish in seconds. Tests that train for
 * hundreds of steps or run the CLI in child processes (which load dist/, not the mutant) are left
 * out: under perTest coverage every mutant they reach would run them.
 */
export const folderTests = {
  optim: ['optimizers', 'optimizer-steps', 'optimizer-options'],
  dni: ['schedule', 'dni-state', 'synthesizer-options', 'decouple-options', 'options-coverage', 'options', 'stream-order', 'graph', 'unlock', 'unlock-conv', 'conv-dni', 'synthesizer-scale', 'dni-network-edges', 'dni-training-edges', 'dni-unlock-edges', 'dni-synthesizer-edges'],
  train: ['checkpoint', 'inference', 'runlog', 'options', 'train-edges', 'graph', 'trainer-edges'],
  cli: ['cli-config', 'cli', 'runlog', 'report', 'cli-units'],
};

const folder = process.env.STRYKER_FOLDER;
if (folder !== undefined && !(folder in folderTests))
  throw new Error(`stryker.config.mjs: STRYKER_FOLDER must be one of ${Object.keys(folderTests).join(', ')}, got ${folder}`);
// STRYKER_TESTS=schedule,optimizers overrides the test files; default: the folder's, or (no
// folder) every folder's.
const names =
  process.env.STRYKER_TESTS?.split(',').map((name) => name.trim()) ??
  (folder ? folderTests[folder] : [...new Set(Object.values(folderTests).flat())]);
const only = names.map((name) => `<rootDir>/test/${name}.test.ts`);
const report = process.env.STRYKER_REPORT ?? folder ?? 'mutation';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'jest',
  plugins: ['@stryker-mutator/*', './scripts/stryker-ignore-messages.mjs'],
  ignorers: ['error-messages'],
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  mutate: folder ? [`ts/${folder}/**/*.ts`] : ['ts/dni/**/*.ts', 'ts/optim/**/*.ts', 'ts/train/**/*.ts', 'ts/cli/**/*.ts'],
  coverageAnalysis: 'perTest',
  jest: {
    projectType: 'custom',
    // Off: every test imports ts/index, so every test file is "related" to every source, and
    // resolving that per mutant costs time for nothing (testMatch below picks the files).
    enableFindRelatedTests: false,
    configFile: 'jest.config.js',
    // Merged over jest.config.js. roots: jest finds a test's related sources only under its
    // roots. Left out: tests that run dist/ (the compiled, unmutated package) in child
    // processes, which cannot see a mutant and take minutes; the native op tests (no mutated
    // code runs there); test/gpu (needs a GPU).
    config: {
      roots: ['<rootDir>/test', '<rootDir>/ts'],
      // Transpile only: the TypeScript checker has already type-checked each mutant once.
      transform: { '^.+\\.tsx?$': ['ts-jest', { isolatedModules: true }] },
      testMatch: only,
      testPathIgnorePatterns: ['/node_modules/', 'test/readme.test.ts', 'test/package.test.ts', 'test/ops.test.ts', 'test/gpu/'],
    },
  },
  // Sources (and dist/, which the CLI tests run) only: the native build, data and native code stay out.
  ignorePatterns: ['build', '.stryker-tmp*', 'experiments', 'docs', 'cuda', 'native', 'bench/results', 'reports', '.device'],
  concurrency: 2,
  timeoutMS: 60000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  // reports/<folder>/, or STRYKER_REPORT=name: reports/name/ (two runs side by side).
  htmlReporter: { fileName: `reports/${report}/index.html` },
  jsonReporter: { fileName: `reports/${report}/mutation.json` },
  // STRYKER_BREAK=80: exit 1 when the score is below 80 (scripts/mutate-changed.sh, MUTATE_BREAK).
  thresholds: { high: 90, low: 80, break: process.env.STRYKER_BREAK ? Number(process.env.STRYKER_BREAK) : null },
};
