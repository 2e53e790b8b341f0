// Where the benchmarks find the project: they run from bench/ (ts-node) or dist/bench/ (compiled).
import * as path from 'path';

export const projectRoot = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
export const resultsDir = path.join(projectRoot, 'bench', 'results');
