// Where the benchmarks and experiments find the project: they run from bench/ or experiments/NAME/
// (ts-node) or from the same folders under dist/ (compiled).
import * as path from 'path';

export const projectRoot = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
/** The timing benchmarks' results. */
export const resultsDir = path.join(projectRoot, 'bench', 'results');

/** An experiment's results: its own folder, experiments/NAME/results/ (in the source tree, not dist/). */
export function experimentResultsDir(name: string): string {
  return path.join(projectRoot, 'experiments', name, 'results');
}
