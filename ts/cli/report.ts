#!/usr/bin/env node
// `npx synthgrad report RUN_DIR [RUN_DIR...] [--out FILE] [--title TEXT]`: one self-contained
// HTML page that plots run logs (../train/runlog.ts) side by side: training loss, validation
// loss and accuracy, each synthesizer's cosine to the true gradient, loss and norm ratio, and the
// time per step, one colour per run, with a table that sets the runs' settings and results side
// by side. Chart.js is inlined into the page, so it opens offline and can be mailed as one file.
// The page is written to RUN_DIR/report.html (the first run's) unless --out says otherwise.
//
// Long runs are thinned for plotting: a series of more than 1,000 points is drawn as the means
// of 1,000 equal buckets of steps (the table's numbers come from the full records).
import * as fs from 'fs';
import * as path from 'path';
import { error } from '../errors';

export const reportUsage = `usage: synthgrad report RUN_DIR [RUN_DIR...] [--out FILE] [--title TEXT]
  RUN_DIR       a run log: npm start --log-dir RUN_DIR, or fit(data, { logDir: RUN_DIR })
  --out FILE    where to write the page (default RUN_DIR/report.html, the first run's)
  --title TEXT  the page's title (default: the runs' names)
       synthgrad train [npm start's flags]   trains, as npm start -- ... (synthgrad train --help)
       synthgrad checkpoint merge|reshard DIR ...   a distributed run's per-rank checkpoints (synthgrad checkpoint --help)`;

type Row = Record<string, unknown>;

/** A run log as read back: its records in step order. */
export interface RunRecords {
  name: string;
  dir: string;
  config: Row;
  steps: Row[];
  epochs: Row[];
  synthesizers: Row[];
  /** result.json: how fit ended (absent while the run goes on) */
  result?: Row;
}

/**
 * The records of one JSON Lines file. A last line cut short (a run still writing) is skipped;
 * a bad line anywhere else is an error.
 */
function readJsonLines(file: string): Row[] {
  if (!fs.existsSync(file)) return [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const rows: Row[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      if (i < lines.length - 1) throw error('ERR_SYNTHGRAD_DATA', `report: ${file} line ${i + 1} is not JSON`);
    }
  });
  return rows;
}

/**
 * Records in step order, one per key: a resumed run logs again the steps after its checkpoint,
 * and the later record (the run that went on) wins.
 */
function byStep(rows: Row[], key: (r: Row) => string): Row[] {
  const last = new Map<string, Row>();
  for (const r of rows) {
    const k = key(r);
    last.delete(k); // re-inserted at the end: Map keeps insertion order
    last.set(k, r);
  }
  return [...last.values()].sort((a, b) => Number(a.step) - Number(b.step));
}

function readJson(file: string): Row | undefined {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Row) : undefined;
}

export function readRun(dir: string): RunRecords {
  const config = readJson(path.join(dir, 'config.json'));
  if (!config)
    throw error('ERR_SYNTHGRAD_DATA', `report: ${dir} holds no run log (no config.json); write one with --log-dir or fit's logDir`);
  return {
    name: path.basename(path.resolve(dir)),
    dir,
    config,
    steps: byStep(readJsonLines(path.join(dir, 'steps.jsonl')), (r) => String(r.step)),
    epochs: byStep(readJsonLines(path.join(dir, 'epochs.jsonl')), (r) => String(r.epoch)),
    synthesizers: byStep(readJsonLines(path.join(dir, 'synthesizers.jsonl')), (r) => `${r.step}:${r.module}`),
    result: readJson(path.join(dir, 'result.json')),
  };
}

// ---- what the page plots ----

type Point = { x: number; y: number };

interface Series {
  label: string;
  run: number;
  points: Point[];
  dashed?: boolean;
  /** epoch series are few points: draw them */
  markers?: boolean;
}

interface ChartSpec {
  id: string;
  title: string;
  y: string;
  log?: boolean;
  series: Series[];
}

const maxPoints = 1000;

/** Means over equal buckets of x when there are more than maxPoints points. */
export function thin(points: Point[], limit = maxPoints): Point[] {
  if (points.length <= limit) return points;
  const out: Point[] = [];
  const per = points.length / limit;
  for (let b = 0; b < limit; b++) {
    const slice = points.slice(Math.floor(b * per), Math.floor((b + 1) * per));
    if (!slice.length) continue;
    out.push({
      x: slice.reduce((s, p) => s + p.x, 0) / slice.length,
      y: slice.reduce((s, p) => s + p.y, 0) / slice.length,
    });
  }
  return out;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function series(rows: Row[], field: string, scale = 1): Point[] {
  return rows.filter((r) => finite(r.step) && finite(r[field])).map((r) => ({ x: r.step as number, y: (r[field] as number) * scale }));
}

/** Every chart of the page, with the runs' series in each. */
export function chartSpecs(runs: RunRecords[]): ChartSpec[] {
  const line = (run: number, label: string, points: Point[], extra: Partial<Series> = {}): Series => ({
    label: `${runs[run].name}${label}`,
    run,
    points: thin(points),
    ...extra,
  });
  const evalName = validationName(runs);
  const charts: ChartSpec[] = [
    {
      id: 'loss',
      title: `Loss: training (per step) and ${evalName} (per epoch, dashed)`,
      y: 'loss',
      log: true,
      series: runs.flatMap((r, i) => [
        line(i, ' training', series(r.steps, 'loss')),
        line(i, ` ${evalName}`, series(r.epochs, 'validationLoss'), { dashed: true, markers: true }),
      ]),
    },
    {
      id: 'accuracy',
      y: 'accuracy (%)',
      title: `Accuracy (${evalName}, per epoch${runs.some((r) => r.epochs.some((e) => finite(e.accuracy))) ? '; training dashed' : ''})`,
      series: runs.flatMap((r, i) => [
        line(i, ` ${evalName}`, series(r.epochs, 'validationAccuracy', 100), { markers: true }),
        line(i, ' training', series(r.epochs, 'accuracy', 100), { dashed: true, markers: true }),
      ]),
    },
    {
      id: 'step-time',
      title: 'Wall time per step (the diagnostics probe included)',
      y: 'ms per step',
      series: runs.map((r, i) => line(i, '', series(r.steps, 'stepSeconds', 1000))),
    },
  ];
  const modules = [...new Set(runs.flatMap((r) => r.synthesizers.map((s) => s.module as number)))].sort((a, b) => a - b);
  for (const m of modules) {
    const of = (r: RunRecords) => r.synthesizers.filter((s) => s.module === m);
    charts.push(
      {
        id: `synth-${m}-cosine`,
        title: `Synthesizer M${m}: cosine to the true gradient (dashed: to its own target)`,
        y: 'cosine',
        series: runs.flatMap((r, i) => [
          line(i, '', series(of(r), 'cosine')),
          line(i, ' target', series(of(r), 'targetCosine'), { dashed: true }),
        ]),
      },
      {
        id: `synth-${m}-loss`,
        title: `Synthesizer M${m}: its L2 loss`,
        y: 'loss',
        log: true,
        series: runs.map((r, i) => line(i, '', series(of(r), 'synthesizerLoss'))),
      },
      {
        id: `synth-${m}-norm`,
        title: `Synthesizer M${m}: |ĝ| / |g| (1: the scales agree)`,
        y: 'norm ratio',
        series: runs.map((r, i) => line(i, '', series(of(r), 'normRatio'))),
      },
    );
  }
  // A chart with nothing to draw (no validation data, no training accuracy) is left out.
  return charts.map((c) => ({ ...c, series: c.series.filter((s) => s.points.length > 0) })).filter((c) => c.series.length > 0);
}

/** `npm start` validates on MNIST's test set; a library run on whatever it was given. */
function validationName(runs: RunRecords[]): string {
  return runs.every((r) => r.config.command === 'npm start') ? 'test' : 'validation';
}

// ---- the table ----

const fmt = (v: unknown, digits = 4): string => (finite(v) ? String(Number(v.toPrecision(digits))) : '–');

function settings(r: RunRecords): [string, string][] {
  const o = (r.config.options ?? {}) as Row;
  const fit = (r.config.fit ?? {}) as Row;
  const rows: [string, string][] = [
    ['model', String(r.config.model ?? '–')],
    ['device', String(r.config.device ?? '–')],
  ];
  if (o.method !== undefined) {
    rows.push(['method', String(o.method)]);
    if (o.method !== 'backprop')
      rows.push(['schedule', `${Number(o.pipeline) > 0 ? `pipelined depth ${o.pipeline}` : 'lockstep'}, p ${o.pUpdate}`]);
    rows.push(
      ['optimizer', `${o.optimizer} lr ${o.lr}${o.synthLr !== undefined ? `, synthesizers ${o.synthLr}` : ''}`],
      ['seed', String(o.seed)],
    );
  }
  rows.push(['batch size', String(fit.batchSize ?? '–')]);
  return rows;
}

function results(r: RunRecords): [string, string][] {
  const acc = r.epochs.map((e) => e.validationAccuracy).filter(finite);
  const stepTimes = r.steps.map((s) => s.stepSeconds).filter(finite);
  const last = r.steps[r.steps.length - 1];
  const status = r.result === undefined ? 'running (or stopped)' : r.result.error ? `failed: ${String(r.result.error)}` : 'finished';
  return [
    ['status', status],
    ['steps', String(r.result?.steps ?? last?.step ?? 0)],
    ['epochs', String(r.epochs.length)],
    ['last training loss', fmt(last?.loss)],
    [`last ${validationName([r])} accuracy`, acc.length ? `${(100 * acc[acc.length - 1]).toFixed(2)}%` : '–'],
    [`best ${validationName([r])} accuracy`, acc.length ? `${(100 * Math.max(...acc)).toFixed(2)}%` : '–'],
    ['median step time', stepTimes.length ? `${fmt(1000 * median(stepTimes), 3)} ms` : '–'],
    ['time', finite(r.result?.seconds) ? `${fmt(r.result!.seconds, 3)} s` : '–'],
  ];
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// tab10: distinct on white and for the common colour blindnesses
const colours = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function table(runs: RunRecords[]): string {
  const rowsOf = (f: (r: RunRecords) => [string, string][]) => {
    const keys = [...new Set(runs.flatMap((r) => f(r).map(([k]) => k)))];
    return keys
      .map((k) => `<tr><th>${escapeHtml(k)}</th>${runs.map((r) => `<td>${escapeHtml(new Map(f(r)).get(k) ?? '–')}</td>`).join('')}</tr>`)
      .join('\n');
  };
  const head = runs
    .map((r, i) => `<th><span class="swatch" style="background:${colours[i % colours.length]}"></span>${escapeHtml(r.name)}</th>`)
    .join('');
  return `<table><thead><tr><th></th>${head}</tr></thead><tbody>\n${rowsOf(settings)}\n${rowsOf(results)}\n</tbody></table>`;
}

/** Chart.js's browser build, its licence banner kept, its source-map line dropped (nothing to fetch). */
function chartJs(): string {
  const file = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
  return fs.readFileSync(file, 'utf8').replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
}

/** Makes text safe inside a <script> element. */
const scriptSafe = (s: string) => s.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');

/** Draws the charts from the embedded data; runs in the page. */
const drawCharts = `
const { charts, colours } = JSON.parse(document.getElementById('report-data').textContent);
let drawn = 0;
for (const c of charts) {
  const canvas = document.getElementById(c.id);
  new Chart(canvas, {
    type: 'line',
    data: {
      datasets: c.series.map((s) => ({
        label: s.label,
        data: s.points,
        borderColor: colours[s.run % colours.length],
        backgroundColor: colours[s.run % colours.length],
        borderWidth: s.markers ? 2 : 1.5,
        borderDash: s.dashed ? [6, 4] : [],
        pointRadius: s.markers ? 3 : 0,
        tension: 0,
      })),
    },
    options: {
      animation: false, parsing: false, normalized: true, spanGaps: true,
      responsive: true, maintainAspectRatio: false,
      interaction: { mode: 'nearest', intersect: false },
      scales: {
        x: { type: 'linear', title: { display: true, text: 'step' } },
        y: { type: c.log ? 'logarithmic' : 'linear', title: { display: true, text: c.y } },
      },
      plugins: {
        title: { display: true, text: c.title },
        legend: { labels: { boxWidth: 18 } },
      },
    },
  });
  drawn++;
}
document.body.dataset.chartsDrawn = String(drawn);
`;

export function reportHtml(runs: RunRecords[], options: { title?: string } = {}): string {
  const charts = chartSpecs(runs);
  const title = options.title ?? `synthgrad runs: ${runs.map((r) => r.name).join(', ')}`;
  const data = JSON.stringify({ charts, colours }).replace(/</g, '\\u003c');
  const canvases = (list: ChartSpec[]) =>
    `<div class="grid">\n${list.map((c) => `<div class="chart"><canvas id="${c.id}"></canvas></div>`).join('\n')}\n</div>`;
  // One row per synthesizer: its cosine, loss and norm ratio side by side.
  const modules = [...new Set(charts.map((c) => /^synth-(\d+)-/.exec(c.id)?.[1]).filter((m) => m !== undefined))];
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 0.2em; }
  .meta { color: #666; margin-bottom: 1em; }
  table { border-collapse: collapse; margin-bottom: 1.5em; }
  th, td { border: 1px solid #ddd; padding: 3px 10px; text-align: left; }
  thead th { background: #f4f4f4; }
  .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; margin-bottom: 16px; }
  .chart { position: relative; height: 300px; border: 1px solid #eee; padding: 6px; }
  h2 { font-size: 1.1em; margin: 1.2em 0 0.5em; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<div class="meta">${runs.length} run${runs.length > 1 ? 's' : ''} · written ${escapeHtml(new Date().toISOString())} by synthgrad report</div>
${table(runs)}
<h2>Training</h2>
${canvases(charts.filter((c) => !c.id.startsWith('synth-')))}
<h2>Synthesizers</h2>
${
  modules.length
    ? modules.map((m) => canvases(charts.filter((c) => c.id.startsWith(`synth-${m}-`)))).join('\n')
    : '<p>No synthesizer diagnostics in these runs (backprop, or no diagnoseEvery).</p>'
}
<script type="application/json" id="report-data">${data}</script>
<script>${scriptSafe(chartJs())}</script>
<script>${drawCharts}</script>
</body>
</html>
`;
}

/** Parses the arguments, reads the runs, writes the page; returns the page's path. */
export function report(argv: string[]): string {
  const [command, ...rest] = argv;
  if (command !== 'report') throw error('ERR_SYNTHGRAD_CLI', `synthgrad: the command is 'report', got '${command ?? ''}'\n${reportUsage}`);
  const dirs: string[] = [];
  let out: string | undefined;
  let title: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--out' || a === '--title') {
      const v = rest[++i];
      if (!v) throw error('ERR_SYNTHGRAD_CLI', `report: ${a} needs a value`);
      if (a === '--out') out = v;
      else title = v;
    } else if (a.startsWith('--')) {
      throw error('ERR_SYNTHGRAD_CLI', `report: unknown option '${a}'\n${reportUsage}`);
    } else {
      dirs.push(a);
    }
  }
  if (!dirs.length) throw error('ERR_SYNTHGRAD_CLI', `report: name at least one run directory\n${reportUsage}`);
  const runs = dirs.map(readRun);
  // Two runs of the same name (runs/a, other/a) are told apart by their directories.
  // (Counted before any is renamed: renaming the first of two would leave the second unique.)
  const shared = new Set(runs.map((r) => r.name).filter((n, i, names) => names.indexOf(n) !== i));
  for (const r of runs) if (shared.has(r.name)) r.name = r.dir;
  const file = out ?? path.join(dirs[0], 'report.html');
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, reportHtml(runs, { title }));
  return file;
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv[0] === 'train') {
    // `npx synthgrad train ...`: npm start's run (./main.ts reads its flags from process.argv).
    process.argv.splice(2, 1);
    require('./main'); // eslint-disable-line @typescript-eslint/no-require-imports
  } else if (argv[0] === 'checkpoint') {
    // `npx synthgrad checkpoint merge|reshard ...`: ./checkpoint.ts.
    const { checkpointCommand, checkpointUsage } = require('./checkpoint') as typeof import('./checkpoint'); // eslint-disable-line @typescript-eslint/no-require-imports
    if (argv.length === 1 || argv[1] === '--help') console.log(checkpointUsage);
    else
      checkpointCommand(argv.slice(1)).then(
        (line) => console.log(line),
        (e: Error) => {
          console.error(e.message);
          process.exit(1);
        },
      );
  } else if (argv.includes('--help') || argv.length === 0) {
    console.log(reportUsage);
  } else {
    try {
      const file = report(argv);
      console.log(`wrote ${file}`);
    } catch (e) {
      console.error((e as Error).message);
      process.exit(1);
    }
  }
}
