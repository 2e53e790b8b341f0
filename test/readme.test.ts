// Every command README.md shows is run here, so that none can break unnoticed: each
// `npm start` command runs for real with a budget of two steps (in a temporary directory, so
// that files it writes land there), and each benchmark command is checked to name a script
// that exists (running them needs PyTorch and minutes to hours; `.ci/run` runs npm install and
// npm test itself).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  bin?: Record<string, string>;
};

/** A shell command: leading VAR=value assignments, then the words (quotes are not used in README). */
interface Command {
  text: string;
  env: Record<string, string>;
  words: string[];
}

function parse(text: string): Command {
  const env: Record<string, string> = {};
  const words = text.trim().split(/\s+/);
  while (words.length && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
    const [k, v] = words.shift()!.split('=');
    env[k] = v;
  }
  return { text: text.trim(), env, words };
}

/** The commands in README's sh blocks (comments dropped) and in its inline code spans. */
function readmeCommands(): Command[] {
  const found: string[] = [];
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g))
    for (const line of block[1].split('\n')) {
      const cmd = line.replace(/#.*$/, '').trim();
      if (cmd) found.push(cmd);
    }
  // Inline spans that start with a command (a span may break across lines in the prose).
  for (const span of readme.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`]+)`/g)) {
    const text = span[1].replace(/\s+/g, ' ').trim();
    if (/^([A-Z_]+=\S+ )*(npm (start|run|test|install|install-scripts)|npx |node (dist|examples)\/|bash )/.test(text)) found.push(text);
  }
  return [...new Set(found)].flatMap((t) => t.split('&&')).map(parse);
}

const commands = readmeCommands();
const npmStart = commands.filter((c) => c.words[0] === 'npm' && c.words[1] === 'start');
const other = commands.filter((c) => !npmStart.includes(c));

test('README shows npm start commands, and npm start is the CLI this test runs', () => {
  expect(npmStart.length).toBeGreaterThan(5);
  expect(pkg.scripts.start).toBe('node dist/ts/cli/main.js');
});

describe('every npm start command in README runs (two steps)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-readme-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each(npmStart.map((c) => [c.text, c] as const))('%s', (_, c) => {
    const args = c.words.slice(2);
    if (args[0] === '--') args.shift();
    const help = args.includes('--help');
    const recurrent = args.includes('--task');
    // A file README names relative to the repository (the text corpus) is found from the test's directory.
    const textAt = args.indexOf('--text');
    if (textAt >= 0) args[textAt + 1] = path.join(root, args[textAt + 1]);
    // So are the files of --data KIND:PATH[,PATH...].
    const dataAt = args.indexOf('--data');
    const [kind, paths] = dataAt >= 0 ? args[dataAt + 1].split(/:(.*)/) : [];
    if (paths)
      args[dataAt + 1] = `${kind}:${paths
        .split(',')
        .map((p) => path.join(root, p))
        .join(',')}`;
    // Two steps (windows, for a recurrent run; whose text runs validate once, at the end).
    const run = () =>
      spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...args, ...(help ? [] : ['--steps', '2'])], {
        cwd: dir,
        env: { ...process.env, SYNTHGRAD_DEVICE: 'cpu', ...c.env },
        encoding: 'utf8',
        timeout: 120_000,
      });
    const r = run();
    const out = `${r.stdout}${r.stderr}`;
    if (r.status !== 0) throw new Error(`'${c.text}' exited ${r.status}:\n${out}`);
    expect(out).toMatch(
      help
        ? /^usage: npm start/m
        : recurrent
          ? /: 2 windows in [\d.]+ s; (largest level solved|no level solved|test \d+\.\d+ bits\/char)/
          : /final test accuracy: \d+\.\d\d%/,
    );
    if (args.includes('--checkpoint')) {
      // "the same command again resumes" (a recurrent run resumed at its budget trains no more)
      const again = run();
      expect(again.status).toBe(0);
      expect(again.stdout).toMatch(recurrent ? /: 2 windows in/ : /resuming from/);
    }
  });
});

describe('every other README command names something that exists', () => {
  test.each(other.map((c) => [c.text, c] as const))('%s', (_, c) => {
    const [tool, first, second] = c.words;
    if (tool === 'npm' && first === 'run') expect(Object.keys(pkg.scripts)).toContain(second);
    else if (tool === 'npm') expect(['install', 'test', 'ci', 'install-scripts']).toContain(first);
    else if (tool === 'node') expect(fs.existsSync(path.join(root, first))).toBe(true);
    else if (tool === 'bash') expect(fs.existsSync(path.join(root, first))).toBe(true);
    else if (tool === 'npx' && first === 'synthgrad')
      expect(fs.existsSync(path.join(root, pkg.bin?.synthgrad ?? 'package.json has no bin'))).toBe(true);
    else if (tool === 'npx') expect(first).toBe('node-gyp');
    else if (tool === 'mpirun') {
      // A run over MPI ranks (needs mpirun; test/distributed-cli.test.ts runs such runs): mpirun's
      // options, then `npx synthgrad train FLAGS` or `npm start -- FLAGS`, whose flags must parse.
      const words = c.words.slice(1);
      while (words[0]?.startsWith('-')) words.splice(0, words[0] === '--mca' ? 3 : words[0] === '-np' ? 2 : 1);
      const flags =
        words[0] === 'npx' && words[1] === 'synthgrad' && words[2] === 'train'
          ? words.slice(3)
          : words[0] === 'npm' && words[1] === 'start' && words[2] === '--'
            ? words.slice(3)
            : undefined;
      if (!flags) throw new Error(`README command '${c.text}' runs neither npx synthgrad train nor npm start under mpirun`);
      const r = spawnSync(process.execPath, [path.join(root, 'dist/ts/cli/main.js'), ...flags, '--help'], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toMatch(/^usage: npm start/);
      expect(r.status).toBe(0);
    } else throw new Error(`README command '${c.text}' is of no kind this test knows: teach it`);
  });
});
