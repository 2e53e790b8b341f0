// A PyTorch peer kept running beside a benchmark: one Python process (a child of this one, so
// both sides share the process tree and the machine's load) that answers timing requests one
// at a time, so that the sides can alternate without paying PyTorch's import for every run.
// The script serves with `--serve`: each request is one stdin line, a JSON list of its flags;
// each answer one stdout line of JSON (bench/reference/torch_conv.py).
import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import * as readline from 'readline';

export const python = '/usr/bin/python3';

export class TorchWorker {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly answers: string[] = [];
  private waiting?: (line: string | undefined) => void;
  private closed = false;
  private stderr = '';

  constructor(script: string, env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(python, [script, '--serve'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => this.deliver(line));
    this.child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
    this.child.on('close', () => {
      this.closed = true;
      this.deliver(undefined);
    });
    this.child.on('error', () => {
      this.closed = true;
      this.deliver(undefined);
    });
  }

  private deliver(line: string | undefined): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w(line);
    else if (line !== undefined) this.answers.push(line);
  }

  /** The answer to one request (the script's flags); an error when the script fails or answers with one. */
  async request(flags: string[]): Promise<Record<string, unknown>> {
    if (this.waiting) throw new Error('TorchWorker: one request at a time');
    if (this.closed && !this.answers.length) throw new Error(`PyTorch worker exited: ${this.stderr.trim().split('\n').pop() ?? ''}`);
    this.child.stdin.write(JSON.stringify(flags) + '\n');
    const line = this.answers.shift() ?? (await new Promise<string | undefined>((resolve) => (this.waiting = resolve)));
    if (line === undefined) throw new Error(`PyTorch worker exited: ${this.stderr.trim().split('\n').pop() ?? ''}`);
    const answer = JSON.parse(line) as Record<string, unknown>;
    if (typeof answer.error === 'string') throw new Error(`PyTorch worker: ${answer.error}`);
    return answer;
  }

  close(): void {
    this.child.stdin.end();
  }
}
