// The command of the recurrent reference check (the comparison itself is
// test/helpers/rnn-reference-compare.ts, shared with test/rnn-reference.test.ts):
//
//   npm run check:rnn-reference [-- --hidden 128 --batch 64 --steps 5 --windows 3 --dtype float64 --out compare]
// prints the table and writes experiments/recurrent-reference/results/NAME.{md,json}; exits 1
// when a row fails or PyTorch is missing.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../../ts';
import { ComparisonOptions, compareWithTorch, comparisonTable } from '../../test/helpers/rnn-reference-compare';
import { resultName } from '../flags';
import { experimentResultsDir } from '../paths';

function parse(argv: string[]): { options: ComparisonOptions; out: string } {
  const options: ComparisonOptions = {};
  let out = 'compare';
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    const int = () => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${k} must be a positive integer, got ${v}`);
      return n;
    };
    if (k === '--hidden') options.hidden = int();
    else if (k === '--batch') options.batch = int();
    else if (k === '--steps') options.steps = int();
    else if (k === '--windows') options.windows = int();
    else if (k === '--seed') options.seed = int();
    else if (k === '--dtype') {
      if (v !== 'float64' && v !== 'float32') throw new Error(`--dtype must be float64 or float32, got ${v}`);
      options.dtype = v;
    } else if (k === '--out') out = resultName(k, v);
    else throw new Error(`unknown option ${k} (see the file header of bench/reference/compare_rnn_dni.ts)`);
  }
  return { options, out };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { options, out } = parse(argv);
  const started = Date.now();
  const c = await compareWithTorch(options);
  const table = comparisonTable(c);
  const o = c.options;
  const failed = c.rows.filter((r) => !r.pass);
  const header =
    `${new Date().toISOString()}; ${os.cpus()[0]?.model ?? 'unknown CPU'}, synthgrad ${native.threads()} threads (CPU, float32); ` +
    `PyTorch ${c.torch} (${o.dtype}); command: \`npm run check:rnn-reference${argv.length ? ` -- ${argv.join(' ')}` : ''}\`; ` +
    `LSTM ${o.hidden}, batch ${o.batch}, T = ${o.steps}, ${o.windows} consecutive windows of the Copy task at level 3 (N = 4), seed ${o.seed}; ` +
    `SGD lr 1 (synthesizer 0.1) or Adam lr 1e-3; ${((Date.now() - started) / 1000).toFixed(1)} s.`;
  console.log(header + '\n');
  console.log(table);
  console.log('\nlosses per window (synthgrad / PyTorch):');
  for (const l of c.losses)
    console.log(`  ${l.method} ${l.optimizer}: ${l.synthgrad.map((v, i) => `${v.toFixed(6)} / ${l.torch[i].toFixed(6)}`).join(', ')}`);
  const dir = experimentResultsDir('recurrent-reference');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, `${out}.md`),
    `# synthgrad's recurrent windows against PyTorch\n\n${header}\n\n${table}\n\n` +
      `${failed.length ? `${failed.length} row(s) over the tolerance.` : `Every row within ${o.tolerance}.`}\n`,
  );
  fs.writeFileSync(path.join(dir, `${out}.json`), JSON.stringify({ date: new Date().toISOString(), header, ...c }, null, 2) + '\n');
  console.log(`\nwrote experiments/recurrent-reference/results/${out}.md and .json`);
  if (failed.length) {
    console.error(`${failed.length} row(s) exceed ${o.tolerance}`);
    process.exitCode = 1;
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
