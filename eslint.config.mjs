// ESLint 9 (flat config) with typescript-eslint for ts/, test/, bench/ and scripts/. Type
// checking is tsc's job (`npm run lint` runs both); the rules here catch what the compiler does
// not: unused code, mistakes the recommended sets know, and a few of the project's habits.
// Formatting is Prettier's (.prettierrc), so no stylistic rules.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['dist/', 'build/', 'prebuilds/', 'node_modules/', 'docs/', 'experiments/', 'examples/', 'bench/results/', '**/*.d.ts'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { globals: globals.node },
    rules: {
      // `_`-prefixed names are unused on purpose (an interface's argument, a skipped tuple item).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `x!` is used where a value was checked a few lines up, in a way the compiler cannot follow.
      '@typescript-eslint/no-non-null-assertion': 'off',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  {
    files: ['scripts/**/*.js', 'test/fixtures/**/*.js', '*.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: {
      '@typescript-eslint/no-require-imports': 'off', // CommonJS scripts
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `const crypto = require('crypto')` is the module, the same object as Node's global.
      'no-redeclare': ['error', { builtinGlobals: false }],
      'no-throw-literal': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
);
