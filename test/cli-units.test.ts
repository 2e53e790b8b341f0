// The CLI's pieces in-process, as a user sees their output: npm start's progress text
// (ts/cli/progress.ts), --data's parsing (ts/cli/data.ts) and the report page and its
// arguments (ts/cli/report.ts). The end-to-end runs of the compiled CLI live in cli*.test.ts and
// report.test.ts; these are fast and reach the TypeScript sources (mutation testing, issue 23).
import * as fs from 'fs';
import * as path from 'path';
import { classificationData, parseDataSpec } from '../ts/cli/data';
import { Progress, ProgressMode, describeDiagnostics, duration } from '../ts/cli/progress';
import { readRun, report, reportHtml } from '../ts/cli/report';
import { tempDir } from './helpers/data-files';
import { errorOf } from './helpers/errors';

describe('progress: what npm start prints', () => {
  const step = (s: number, loss = 0.5) => ({ step: s, epoch: 1, loss, lr: 1e-3 });

  /** A Progress on a clock the test sets, and everything it wrote. */
  function progress(mode: ProgressMode, extra: { columns?: () => number | undefined; lineSeconds?: number } = {}) {
    const clock = { t: 0 };
    const out: string[] = [];
    const p = new Progress({ mode, write: (s) => out.push(s), now: () => clock.t, ...extra });
    return { p, out, clock };
  }

  test('durations: seconds under a minute, minutes and seconds under an hour, then hours and minutes', () => {
    expect([-1, NaN, Infinity].map(duration)).toEqual(['?', '?', '?']);
    expect([0, 0.4, 59, 59.4].map(duration)).toEqual(['0s', '0s', '59s', '59s']);
    // 59.5 s rounds to a minute; 60 s is "1m00s", not "60s"; 3600 s is "1h00m", not "60m00s".
    expect([59.5, 60, 65, 3599].map(duration)).toEqual(['1m00s', '1m00s', '1m05s', '59m59s']);
    expect([3600, 3725, 7199, 36000].map(duration)).toEqual(['1h00m', '1h02m', '1h59m', '10h00m']);
  });

  test("the synthesizers' diagnostics line, with the input model's part under unlock", () => {
    const m1 = { module: 1, synthesizerLoss: 0.0123, cosine: 0.5, targetCosine: 0.75, normRatio: 1.25 };
    const m2 = { module: 2, synthesizerLoss: 2, cosine: -0.25, targetCosine: 1, normRatio: 0.5, inputLoss: 0.5, inputCosine: 0.875 };
    expect(describeDiagnostics([m1])).toBe('M1: loss 1.23e-2 cos 0.500 (to its target 0.750) |ĝ|/|g| 1.25');
    expect(describeDiagnostics([m1, m2])).toBe(
      'M1: loss 1.23e-2 cos 0.500 (to its target 0.750) |ĝ|/|g| 1.25  ' +
        'M2: loss 2.00e+0 cos -0.250 (to its target 1.000) |ĝ|/|g| 0.50  I3: loss 5.00e-1 cos 0.875',
    );
  });

  test("the run's description lines show in bar and lines mode, not in quiet or json mode", () => {
    for (const mode of ['bar', 'lines'] as const) {
      const { p, out } = progress(mode);
      p.info('device: cpu');
      expect(out).toEqual(['device: cpu\n']);
    }
    for (const mode of ['quiet', 'json'] as const) {
      const { p, out } = progress(mode);
      p.info('device: cpu');
      p.step(step(1));
      expect(out).toEqual([]);
    }
  });

  test('throughput and the time left come from the steps of the last 10 seconds', () => {
    const { p, out, clock } = progress('lines', { lineSeconds: 0 });
    p.plan({ totalSteps: 100, epochs: 1, batchSize: 110 });
    // A first step, a second 1 s later, then a step that took 10 s and one that took 1 s.
    for (const [t, s] of [
      [0, 1],
      [1000, 2],
      [11_000, 3],
      [12_000, 4],
    ]) {
      clock.t = t;
      p.step(step(s));
    }
    expect(out).toEqual([
      'step 1/100  epoch 1/1  loss 0.5000  … samples/s  ETA ?\n',
      'step 2/100  epoch 1/1  loss 0.5000  110 samples/s  ETA 1m38s\n',
      // the first step is 11 s old: the window is steps 2-3, 1 step in 10 s
      'step 3/100  epoch 1/1  loss 0.5000  11 samples/s  ETA 16m10s\n',
      // step 2 is 10 s old but the window keeps two steps before the newest: 2 steps in 11 s
      'step 4/100  epoch 1/1  loss 0.5000  20 samples/s  ETA 8m48s\n',
    ]);
  });

  test('the bar is redrawn every 100 ms, and at the last step', () => {
    const { p, out, clock } = progress('bar');
    p.plan({ totalSteps: 4, epochs: 1, batchSize: 10 });
    for (const [t, s] of [
      [0, 1],
      [50, 2],
      [100, 3],
      [120, 4],
    ]) {
      clock.t = t;
      p.step(step(s));
    }
    expect(out.every((w) => w.startsWith('\r') && w.endsWith('\x1b[K'))).toBe(true);
    expect(out.map((w) => /\] (\d)\/4 /.exec(w)?.[1])).toEqual(['1', '3', '4']);
    expect(out[2]).toContain('epoch 1/1 [########################] 4/4  loss 0.5000');
  });

  test('a line printed under the bar clears it once', () => {
    const { p, out } = progress('bar');
    p.plan({ totalSteps: 4, epochs: 1, batchSize: 10 });
    p.step(step(1));
    p.info('device: cpu');
    p.info('data: MNIST');
    p.clear();
    expect(out.slice(1)).toEqual(['\r\x1b[K', 'device: cpu\n', 'data: MNIST\n']);
  });

  test('the bar is cut to one column less than the terminal, so that it never wraps', () => {
    const drawn = (columns?: number) => {
      const { p, out } = progress('bar', { columns: () => columns });
      p.plan({ totalSteps: 8, epochs: 2, batchSize: 10 });
      p.step(step(2));
      expect(out).toHaveLength(1);
      return out[0].slice(1, -'\x1b[K'.length);
    };
    const full = drawn(undefined);
    expect(full).toBe('epoch 1/2 [######..................] 2/8  loss 0.5000  … samples/s  ETA ?');
    expect(drawn(full.length + 1)).toBe(full);
    expect(drawn(full.length)).toBe(full.slice(0, -1));
    expect(drawn(20)).toBe(full.slice(0, 19));
  });
});

describe('--data: the forms and their errors', () => {
  const forms = 'mnist, mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS or cifar10:DIR';

  test('every form', () => {
    expect(parseDataSpec('mnist')).toBeUndefined();
    expect(parseDataSpec('mnist:data/mnist')).toEqual({ kind: 'mnist', dir: 'data/mnist' });
    expect(parseDataSpec('cifar10:/d/c:10')).toEqual({ kind: 'cifar10', dir: '/d/c:10' });
    expect(parseDataSpec('idx:a,b,c,d')).toEqual({ kind: 'idx', trainImages: 'a', trainLabels: 'b', testImages: 'c', testLabels: 'd' });
  });

  test('a malformed --data is an error that names the flag and the value', () => {
    const message = (v: string | undefined) => {
      const e = errorOf(() => parseDataSpec(v)) as Error & { code?: string };
      expect(e.code).toBe('ERR_SYNTHGRAD_CLI');
      return e.message;
    };
    expect(message(undefined)).toBe(`--data must be ${forms}, got ''`);
    expect(message('')).toBe(`--data must be ${forms}, got ''`);
    for (const v of ['cifar10', 'idx', 'MNIST', ':x', 'svhn:dir']) expect(message(v)).toBe(`--data must be ${forms}, got '${v}'`);
    expect(message('mnist:')).toBe("--data mnist: needs a directory after the colon, got 'mnist:'");
    expect(message('cifar10:')).toBe("--data cifar10: needs a directory after the colon, got 'cifar10:'");
    const four = 'needs four comma-separated files TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS';
    for (const rest of ['', 'a,b,c', 'a,b,c,d,e', 'a,,c,d', 'a,b,c,'])
      expect(message(`idx:${rest}`)).toBe(`--data idx: ${four}, got '${rest}'`);
  });

  test('what each form is, as a classification task', () => {
    expect(classificationData(undefined)).toBe('--data mnist (the default) is MNIST, a 10-class classification task');
    expect(classificationData(parseDataSpec('mnist:m'))).toBe('--data mnist:m is MNIST, a 10-class classification task');
    expect(classificationData(parseDataSpec('cifar10:c'))).toBe('--data cifar10:c is CIFAR-10, a 10-class classification task');
    expect(classificationData(parseDataSpec('idx:a,b,c,d'))).toBe('--data idx: the labels in b are classes, a classification task');
  });
});

describe('report: the page in-process', () => {
  const { dir: tmp, write } = tempDir('synthgrad-cli-units-');
  const jsonl = (rows: object[]) => Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join(''));

  // alpha: an npm start run (DNI, pipelined, two synthesizers, two epochs), logged out of step
  // order with a blank line inside, one step's loss null (diverged), and finished.
  const alpha = path.join(tmp, 'runs', 'alpha');
  write('runs/alpha/config.json', Buffer.from(JSON.stringify({
    command: 'npm start',
    model: 'mlp 784-32-10',
    device: 'cpu',
    options: { method: 'dni', pipeline: 2, pUpdate: 1, optimizer: 'adam', lr: 0.001, synthLr: 0.0001, seed: 7 },
    fit: { batchSize: 64 },
  }))); // prettier-ignore
  write(
    'runs/alpha/steps.jsonl',
    Buffer.concat([
      jsonl([{ step: 2, loss: 0.5, stepSeconds: 0.125 }]),
      Buffer.from('   \n\n'),
      jsonl([
        { step: 1, loss: 0.75, stepSeconds: 0.0625 },
        { step: 4, loss: 0.125, stepSeconds: 0.25 },
        { step: 3, loss: null, stepSeconds: 0.5 },
      ]),
    ]),
  );
  write(
    'runs/alpha/epochs.jsonl',
    jsonl([
      { epoch: 1, step: 2, validationLoss: 0.625, validationAccuracy: 0.75, accuracy: 0.5 },
      { epoch: 2, step: 4, validationLoss: 0.375, validationAccuracy: 0.625, accuracy: 0.875 },
    ]),
  );
  const synth = (step: number, module: number, v: number) => ({
    step,
    module,
    cosine: v,
    targetCosine: v + 0.25,
    synthesizerLoss: v / 8,
    normRatio: 4 * v,
  });
  write('runs/alpha/synthesizers.jsonl', jsonl([synth(2, 2, 0.5), synth(2, 1, 0.25), synth(4, 1, 0.75)]));
  write('runs/alpha/result.json', Buffer.from(JSON.stringify({ steps: 4, seconds: 1.23456 })));

  // beta: a library run (backprop, no epochs yet, no synthesizers), still going.
  const beta = path.join(tmp, 'runs', 'beta');
  write(
    'runs/beta/config.json',
    Buffer.from(JSON.stringify({ model: 'm2', options: { method: 'backprop', optimizer: 'sgd', lr: 0.1, seed: 1 } })),
  );
  write('runs/beta/steps.jsonl', jsonl([{ step: 1, loss: 2, stepSeconds: 0.5 }]));

  /** The charts the page embeds. */
  const chartsOf = (html: string) => {
    const m = /<script type="application\/json" id="report-data">(.*?)<\/script>/s.exec(html);
    return JSON.parse(m![1]) as { charts: { id: string; title: string; y: string; log?: boolean; series: object[] }[]; colours: string[] };
  };
  /** The table's rows: heading → the runs' cells. */
  const tableOf = (html: string) =>
    Object.fromEntries(
      [...html.matchAll(/<tr><th>([^<]*)<\/th>((?:<td>[^<]*<\/td>)+)<\/tr>/g)].map((m) => [
        m[1],
        [...m[2].matchAll(/<td>([^<]*)<\/td>/g)].map((c) => c[1]),
      ]),
    );
  const s = (label: string, points: [number, number][], extra: object = {}) => ({
    label,
    run: 0,
    points: points.map(([x, y]) => ({ x, y })),
    ...extra,
  });

  test("one npm start run: the settings, the results and every chart's data", () => {
    const html = reportHtml([readRun(alpha)]);
    expect(html).toContain('<title>synthgrad runs: alpha</title>');
    expect(html).toContain('<h1>synthgrad runs: alpha</h1>');
    expect(html).toContain('<div class="meta">1 run · written ');
    expect(tableOf(html)).toEqual({
      model: ['mlp 784-32-10'],
      device: ['cpu'],
      method: ['dni'],
      schedule: ['pipelined depth 2, p 1'],
      optimizer: ['adam lr 0.001, synthesizers 0.0001'],
      seed: ['7'],
      'batch size': ['64'],
      status: ['finished'],
      steps: ['4'],
      epochs: ['2'],
      'last training loss': ['0.125'],
      'last test accuracy': ['62.50%'],
      'best test accuracy': ['75.00%'],
      'median step time': ['188 ms'],
      time: ['1.23 s'],
    });
    const { charts, colours } = chartsOf(html);
    const synthCharts = (m: number, at2: number, at4?: number) => {
      const pts = (f: (v: number) => number): [number, number][] => [
        [2, f(at2)],
        ...(at4 === undefined ? [] : [[4, f(at4)] as [number, number]]),
      ];
      return [
        {
          id: `synth-${m}-cosine`,
          title: `Synthesizer M${m}: cosine to the true gradient (dashed: to its own target)`,
          y: 'cosine',
          series: [
            s(
              'alpha',
              pts((v) => v),
            ),
            s(
              'alpha target',
              pts((v) => v + 0.25),
              { dashed: true },
            ),
          ],
        },
        {
          id: `synth-${m}-loss`,
          title: `Synthesizer M${m}: its L2 loss`,
          y: 'loss',
          log: true,
          series: [
            s(
              'alpha',
              pts((v) => v / 8),
            ),
          ],
        },
        {
          id: `synth-${m}-norm`,
          title: `Synthesizer M${m}: |ĝ| / |g| (1: the scales agree)`,
          y: 'norm ratio',
          series: [
            s(
              'alpha',
              pts((v) => 4 * v),
            ),
          ],
        },
      ];
    };
    expect(charts).toEqual([
      {
        id: 'loss',
        title: 'Loss: training (per step) and test (per epoch, dashed)',
        y: 'loss',
        log: true,
        series: [
          s('alpha training', [
            [1, 0.75],
            [2, 0.5],
            [4, 0.125],
          ]),
          s(
            'alpha test',
            [
              [2, 0.625],
              [4, 0.375],
            ],
            { dashed: true, markers: true },
          ),
        ],
      },
      {
        id: 'accuracy',
        title: 'Accuracy (test, per epoch; training dashed)',
        y: 'accuracy (%)',
        series: [
          s(
            'alpha test',
            [
              [2, 75],
              [4, 62.5],
            ],
            { markers: true },
          ),
          s(
            'alpha training',
            [
              [2, 50],
              [4, 87.5],
            ],
            { dashed: true, markers: true },
          ),
        ],
      },
      {
        id: 'step-time',
        title: 'Wall time per step (the diagnostics probe included)',
        y: 'ms per step',
        series: [
          s('alpha', [
            [1, 62.5],
            [2, 125],
            [3, 500],
            [4, 250],
          ]),
        ],
      },
      ...synthCharts(1, 0.25, 0.75),
      ...synthCharts(2, 0.5),
    ]);
    // Each run its own colour, from ten distinct ones; the first run's swatch in the table.
    expect(new Set(colours).size).toBe(10);
    expect(colours.every((c) => /^#[0-9a-f]{6}$/.test(c))).toBe(true);
    expect(html).toContain(`<th><span class="swatch" style="background:${colours[0]}"></span>alpha</th>`);
    // a canvas per chart, the synthesizers' in a row each, and the script that draws them
    const canvases = [...html.matchAll(/<canvas id="([^"]+)">/g)].map((m) => m[1]);
    expect(canvases).toEqual(charts.map((c) => c.id));
    expect(html).toContain(
      '<div class="chart"><canvas id="synth-1-norm"></canvas></div>\n</div>\n<div class="grid">\n<div class="chart"><canvas id="synth-2-cosine">',
    );
    expect(html).toMatch(
      /<script>\nconst \{ charts, colours \} = JSON.parse\(document.getElementById\('report-data'\).textContent\);[^]*new Chart\(canvas/,
    );
    expect(html).not.toContain('No synthesizer diagnostics');
  });

  test('a library run beside it: "validation", its settings and an empty accuracy series left out', () => {
    const html = reportHtml([readRun(alpha), readRun(beta)]);
    expect(html).toContain('<div class="meta">2 runs · written ');
    const table = tableOf(html);
    expect(table.method).toEqual(['dni', 'backprop']);
    expect(table.schedule).toEqual(['pipelined depth 2, p 1', '–']);
    expect(table.optimizer).toEqual(['adam lr 0.001, synthesizers 0.0001', 'sgd lr 0.1']);
    expect(table.device).toEqual(['cpu', '–']);
    expect(table['batch size']).toEqual(['64', '–']);
    expect(table.status).toEqual(['finished', 'running (or stopped)']);
    expect(table['last test accuracy']).toEqual(['62.50%', '–']);
    expect(table['median step time']).toEqual(['188 ms', '500 ms']);
    const { charts, colours } = chartsOf(html);
    expect(html).toContain(`<th><span class="swatch" style="background:${colours[1]}"></span>beta</th>`);
    const byId = Object.fromEntries(charts.map((c) => [c.id, c]));
    expect(byId.loss.title).toBe('Loss: training (per step) and validation (per epoch, dashed)');
    expect(byId.accuracy.title).toBe('Accuracy (validation, per epoch; training dashed)');
    expect(byId.accuracy.series.map((x) => (x as { label: string }).label)).toEqual(['alpha validation', 'alpha training']);
    expect(byId['step-time'].series).toEqual([
      s('alpha', [
        [1, 62.5],
        [2, 125],
        [3, 500],
        [4, 250],
      ]),
      { ...s('beta', [[1, 500]]), run: 1 },
    ]);
  });

  test('a run with no epochs and no synthesizers: no accuracy chart, a note instead of their charts', () => {
    const run = readRun(beta);
    // a diverged step, in memory: no point for a value that is not finite
    run.steps.push({ step: 2, loss: NaN, stepSeconds: Infinity });
    const html = reportHtml([run], { title: 'a <b> & "c"' });
    expect(html).toContain('<title>a &#60;b&#62; &#38; &#34;c&#34;</title>');
    const { charts } = chartsOf(html);
    expect(charts.map((c) => c.id)).toEqual(['loss', 'step-time']);
    expect(charts[0].series).toEqual([s('beta training', [[1, 2]])]);
    expect(charts[1].series).toEqual([s('beta', [[1, 500]])]);
    expect(html).toContain('<p>No synthesizer diagnostics in these runs (backprop, or no diagnoseEvery).</p>');
  });

  test('a training accuracy in some runs but not all still names the dashed training line', () => {
    const [a, b] = [readRun(alpha), readRun(beta)];
    b.epochs.push({ epoch: 1, step: 1, validationLoss: 1, validationAccuracy: 0.5 });
    const titles = chartsOf(reportHtml([b, a])).charts.map((c) => c.title);
    expect(titles[1]).toBe('Accuracy (validation, per epoch; training dashed)');
    expect(chartsOf(reportHtml([b])).charts.map((c) => c.title)[1]).toBe('Accuracy (validation, per epoch)');
  });

  test("nothing in a run's name ends the page's scripts; Chart.js comes without its source-map line", () => {
    const run = readRun(beta);
    run.name = '</script><!-- & "x"';
    const html = reportHtml([run]);
    // three scripts (the data, Chart.js, the drawing), each closed once
    expect(html.match(/<script/g)).toHaveLength(3);
    expect(html.match(/<\/script>/g)).toHaveLength(3);
    expect(html).toContain('<span class="swatch" style="background:#1f77b4"></span>&#60;/script&#62;&#60;!-- &#38; &#34;x&#34;</th>');
    expect(chartsOf(html).charts[0].series).toEqual([s('</script><!-- & "x" training', [[1, 2]])]);
    expect(html).not.toContain('sourceMappingURL');
    expect(html).toMatch(/Chart\.js v\d/);
  });

  test('a blank line inside a log is skipped; a line of bad JSON inside is an error', () => {
    expect(readRun(alpha).steps.map((r) => r.step)).toEqual([1, 2, 3, 4]);
    write('bad/config.json', Buffer.from('{}'));
    write('bad/steps.jsonl', Buffer.from('{"step":1}\n{"step":\n{"step":3}\n'));
    expect(() => readRun(path.join(tmp, 'bad'))).toThrow(`report: ${path.join(tmp, 'bad', 'steps.jsonl')} line 2 is not JSON`);
  });

  const h1 = (html: string) => /<h1>(.*)<\/h1>/.exec(html)?.[1];

  test('report(argv) writes the page beside the first run, or to --out, titled by --title', () => {
    const file = report(['report', alpha, beta]);
    expect(file).toBe(path.join(alpha, 'report.html'));
    expect(h1(fs.readFileSync(file, 'utf8'))).toBe('synthgrad runs: alpha, beta');
    const out = path.join(tmp, 'out', 'deeper', 'page.html');
    expect(report(['report', '--title', 'two runs', beta, '--out', out])).toBe(out);
    expect(h1(fs.readFileSync(out, 'utf8'))).toBe('two runs');
    // two runs of one name are told apart by their directories
    write('other/alpha/config.json', Buffer.from('{}'));
    const twin = path.join(tmp, 'other', 'alpha');
    expect(h1(fs.readFileSync(report(['report', alpha, twin]), 'utf8'))).toBe(`synthgrad runs: ${alpha}, ${twin}`);
  });

  test("report(argv)'s errors name the bad argument", () => {
    const usage = /\nusage: synthgrad report RUN_DIR \[RUN_DIR\.\.\.\] \[--out FILE\] \[--title TEXT\]\n/;
    const cases: [string[], RegExp, string][] = [
      [[], /^synthgrad: the command is 'report', got ''\n/, 'ERR_SYNTHGRAD_CLI'],
      [['repot', alpha], /^synthgrad: the command is 'report', got 'repot'\n/, 'ERR_SYNTHGRAD_CLI'],
      [['report'], /^report: name at least one run directory\n/, 'ERR_SYNTHGRAD_CLI'],
      [['report', alpha, '--bogus'], /^report: unknown option '--bogus'\n/, 'ERR_SYNTHGRAD_CLI'],
      [['report', alpha, '--out'], /^report: --out needs a value$/, 'ERR_SYNTHGRAD_CLI'],
      [['report', alpha, '--title', ''], /^report: --title needs a value$/, 'ERR_SYNTHGRAD_CLI'],
      [['report', tmp], /holds no run log \(no config\.json\); write one with --log-dir or fit's logDir$/, 'ERR_SYNTHGRAD_DATA'],
    ];
    for (const [argv, message, code] of cases) {
      const e = errorOf(() => report(argv)) as Error & { code?: string };
      expect(e.message).toMatch(message);
      expect(e.code).toBe(code);
      if (code === 'ERR_SYNTHGRAD_CLI' && !/needs a value/.test(e.message)) expect(e.message).toMatch(usage);
    }
  });
});
