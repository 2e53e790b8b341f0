// Summarises StrykerJS JSON reports as markdown (for docs/mutation.md): per file, the mutation
// score and the killed / survived / timeout / no-coverage / compile-error counts, then every
// surviving or uncovered mutant with its line and replacement.
//   node scripts/mutation-summary.mjs reports/optim/mutation.json [more reports...]
import fs from 'node:fs';

const rows = [];
const survivors = [];
for (const file of process.argv.slice(2)) {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  for (const [name, f] of Object.entries(report.files)) {
    const n = (s) => f.mutants.filter((m) => m.status === s).length;
    const [killed, survived, timeout, noCov, errors] = [n('Killed'), n('Survived'), n('Timeout'), n('NoCoverage'), n('CompileError')];
    const score = (100 * (killed + timeout)) / (killed + timeout + survived + noCov);
    rows.push(`| ${name} | ${score.toFixed(1)}% | ${killed} | ${survived} | ${timeout} | ${noCov} | ${errors} | ${n('Ignored')} |`);
    const lines = f.source.split('\n');
    for (const m of f.mutants.filter((x) => x.status === 'Survived' || x.status === 'NoCoverage')) {
      const { line, column } = m.location.start;
      survivors.push(
        `- ${name}:${line}:${column} ${m.status} ${m.mutatorName}: \`${lines[line - 1].trim().slice(0, 90)}\` → \`${(m.replacement ?? '').replace(/\s+/g, ' ').slice(0, 60)}\``,
      );
    }
  }
}
console.log('| file | score | killed | survived | timeout | no coverage | compile errors | ignored |');
console.log('|---|---|---|---|---|---|---|---|');
console.log(rows.join('\n'));
console.log('');
console.log(survivors.join('\n'));
