/// <reference lib="dom" />
// `synthgrad report`: reading run logs back (a run still writing, a resumed run's repeated
// steps), thinning long series, the command's arguments and errors, and the page itself in a
// real headless Chromium (Debian's, through puppeteer-core): it loads without console errors or
// requests beyond its own file, and every chart has drawn coloured lines. A screenshot of the
// page is kept under the system's temp directory (the path is printed). Without
// /usr/bin/chromium the browser test is skipped with a message saying so.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import puppeteer from 'puppeteer-core';
import { Adam, Device, Trainer, datasets, decouple, mlp } from '../ts';
import { chartSpecs, readRun, thin } from '../ts/cli/report';

const root = path.join(__dirname, '..');
const bin = path.join(root, 'dist/ts/cli/report.js');
const chromium = '/usr/bin/chromium';
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-report-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const report = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', timeout: 60_000 });
const lines = (rows: object[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');

describe('reading run logs', () => {
  test("a resumed run's repeated steps keep the later record; a last line cut short is skipped", () => {
    const dir = path.join(tmp, 'partial');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model":"m"}');
    // Steps 1-3, then a run resumed after step 2 logs steps 3-4 again; the last line is half written.
    fs.writeFileSync(
      path.join(dir, 'steps.jsonl'),
      `${lines([1, 2, 3].map((step) => ({ step, loss: step }))) + lines([3, 4].map((step) => ({ step, loss: 10 * step })))}{"step":5,"lo`,
    );
    fs.writeFileSync(
      path.join(dir, 'synthesizers.jsonl'),
      lines([
        { step: 2, module: 1, cosine: 0.1 },
        { step: 2, module: 2, cosine: 0.2 },
        { step: 2, module: 1, cosine: 0.3 },
      ]),
    );
    const run = readRun(dir);
    expect(run.steps.map((s) => [s.step, s.loss])).toEqual([
      [1, 1],
      [2, 2],
      [3, 30],
      [4, 40],
    ]);
    expect(run.synthesizers.map((s) => [s.module, s.cosine])).toEqual([
      [2, 0.2],
      [1, 0.3],
    ]);
    expect(run.epochs).toEqual([]);
    expect(run.result).toBeUndefined();
    // A bad line before the last is an error, not skipped.
    fs.writeFileSync(path.join(dir, 'epochs.jsonl'), '{"epoch":1,"st\n{"epoch":2,"step":4}\n');
    expect(() => readRun(dir)).toThrow(/epochs.jsonl line 1 is not JSON/);
  });

  test('a series of more than 1,000 points is drawn as 1,000 bucket means', () => {
    const points = Array.from({ length: 4000 }, (_, i) => ({ x: i + 1, y: i % 2 }));
    const thinned = thin(points);
    expect(thinned).toHaveLength(1000);
    expect(thinned[0]).toEqual({ x: 2.5, y: 0.5 });
    expect(thinned[999]).toEqual({ x: 3998.5, y: 0.5 });
    expect(thin(points.slice(0, 1000))).toHaveLength(1000);
  });
});

// Two real runs (cDNI and DNI, 2 epochs of 10 steps on 1,200 MNIST rows, diagnostics every 2 steps).
async function logRun(dir: string, conditioned: boolean): Promise<void> {
  const { train, test } = await datasets.mnist();
  const net = decouple(mlp(784, [32, 32], 10), { synthesizer: conditioned ? { conditioned: true } : { hidden: [64] } });
  const trainer = new Trainer(net, { device: Device.cpu(), optimizer: () => new Adam({ lr: 1e-3 }), seed: 1 });
  try {
    await trainer.fit(train.head(1200), { epochs: 2, batchSize: 128, validation: test.head(300), diagnoseEvery: 2, logDir: dir });
  } finally {
    trainer.dispose();
  }
}

describe('synthgrad report', () => {
  let runs: string[];
  let page: string;
  beforeAll(async () => {
    runs = [path.join(tmp, 'runs', 'cdni'), path.join(tmp, 'runs', 'dni')];
    await logRun(runs[0], true);
    await logRun(runs[1], false);
    page = path.join(tmp, 'out', 'both.html');
  });

  test('writes one page from several runs, self-contained', () => {
    const r = report(['report', ...runs, '--out', page, '--title', 'cDNI <and> DNI']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`wrote ${page}\n`);
    const html = fs.readFileSync(page, 'utf8');
    expect(html).toContain('<title>cDNI &#60;and&#62; DNI</title>');
    expect(html).toMatch(/Chart\.js v4\.\d+\.\d+/); // the library and its licence banner, inlined
    // Nothing to fetch: no external scripts, styles, images or source maps.
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|<img|sourceMappingURL/);
    expect(html.match(/<canvas /g)).toHaveLength(chartSpecs(runs.map(readRun)).length);
  });

  test('the charts: loss, accuracy, step time, and cosine, loss and norm ratio per synthesizer, each with both runs', () => {
    const charts = chartSpecs(runs.map(readRun));
    expect(charts.map((c) => c.id)).toEqual([
      'loss',
      'accuracy',
      'step-time',
      'synth-1-cosine',
      'synth-1-loss',
      'synth-1-norm',
      'synth-2-cosine',
      'synth-2-loss',
      'synth-2-norm',
    ]);
    for (const c of charts) expect(new Set(c.series.map((s) => s.run))).toEqual(new Set([0, 1]));
    const loss = charts[0].series.filter((s) => s.run === 0);
    expect(loss.map((s) => [s.label, s.points.length])).toEqual([
      ['cdni training', 20],
      ['cdni validation', 2],
    ]);
    expect(charts[3].series.find((s) => s.run === 1)!.points.map((p) => p.x)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
  });

  test("the page goes to the first run's directory by default", () => {
    const r = report(['report', runs[1]]);
    expect(r.status).toBe(0);
    expect(fs.existsSync(path.join(runs[1], 'report.html'))).toBe(true);
  });

  test('errors say what is wrong', () => {
    const cases: [string[], RegExp][] = [
      [['plot', runs[0]], /synthgrad: the command is 'report', got 'plot'/],
      [['report'], /report: name at least one run directory/],
      [['report', tmp], /holds no run log \(no config.json\)/],
      [['report', runs[0], '--width', '3'], /report: unknown option '--width'/],
      [['report', runs[0], '--out'], /report: --out needs a value/],
    ];
    for (const [args, message] of cases) {
      const r = report(args);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    expect(report(['--help']).stdout).toMatch(/^usage: synthgrad report RUN_DIR/);
  });

  const inBrowser = fs.existsSync(chromium) ? test : test.skip;
  if (!fs.existsSync(chromium))
    console.warn(`report.test.ts: ${chromium} is absent, so the page is not checked in a browser (apt-get install -y chromium)`);

  inBrowser('in headless Chromium: no console errors, no requests, every chart drawn in colour', async () => {
    if (!fs.existsSync(page)) report(['report', ...runs, '--out', page]);
    const profile = fs.mkdtempSync(path.join(tmp, 'chromium-profile-'));
    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      userDataDir: profile,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    try {
      const tab = await browser.newPage();
      await tab.setViewport({ width: 1280, height: 900 });
      const problems: string[] = [];
      const requests: string[] = [];
      tab.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });
      tab.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`));
      await tab.setRequestInterception(true);
      const url = `file://${page}`;
      tab.on('request', (req) => {
        if (req.url() === url) return void req.continue();
        requests.push(req.url());
        void req.abort();
      });
      await tab.goto(url, { waitUntil: 'load' });
      await tab.waitForSelector('body[data-charts-drawn]', { timeout: 10_000 });
      // Pixels whose channels differ by more than 60: the runs' colours, not the grey axes, grid and text.
      const coloured = await tab.evaluate(() => {
        const count = (canvas: HTMLCanvasElement) => {
          const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
          let n = 0;
          for (let i = 0; i < data.length; i += 4)
            if (data[i + 3] > 0 && Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 60) n++;
          return n;
        };
        const blank = document.createElement('canvas');
        blank.width = 100;
        blank.height = 100;
        return {
          drawn: Number(document.body.dataset.chartsDrawn),
          charts: Array.from(document.querySelectorAll('canvas')).map((c) => ({ id: c.id, width: c.width, pixels: count(c) })),
          blank: count(blank), // the check itself finds nothing on an empty canvas
        };
      });
      expect(problems).toEqual([]);
      expect(requests).toEqual([]);
      expect(coloured.blank).toBe(0);
      expect(coloured.drawn).toBe(9);
      expect(coloured.charts).toHaveLength(9);
      for (const c of coloured.charts) {
        expect(c.width).toBeGreaterThan(300);
        if (c.pixels < 200) throw new Error(`chart ${c.id} has ${c.pixels} coloured pixels: not drawn`);
      }
      const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-report-screenshot-')); // kept: the test's artifact
      const shot = path.join(shots, 'report.png');
      await tab.screenshot({ path: shot, fullPage: true });
      expect(fs.statSync(shot).size).toBeGreaterThan(10_000);
      console.log(`report.test.ts: screenshot of the report in headless Chromium: ${shot}`);
    } finally {
      await browser.close();
    }
  });
});
