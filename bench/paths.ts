// Where the benchmarks and experiments find the project: they run from bench/ or experiments/NAME/
// (ts-node) or from the same folders under dist/ (compiled).
import * as fs from 'fs';
import * as path from 'path';

export const projectRoot = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');
/** The timing benchmarks' results. */
export const resultsDir = path.join(projectRoot, 'bench', 'results');

/** An experiment's results: its own folder, experiments/NAME/results/ (in the source tree, not dist/). */
export function experimentResultsDir(name: string): string {
  return path.join(projectRoot, 'experiments', name, 'results');
}

/** Writes a benchmark's results as bench/results/NAME.json and NAME.md, and says so. */
export function writeResults(name: string, report: unknown, markdown: string): void {
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, `${name}.json`), JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(path.join(resultsDir, `${name}.md`), markdown);
  console.log(`\nwrote bench/results/${name}.json and .md`);
}
