#!/usr/bin/env node
// Crash consistency of fit() checkpoints: a training process is killed with SIGKILL at random
// points (one to three times per trial, often in the middle of writing a checkpoint, since it
// saves every 3 steps), then run again until it finishes. Every trial must resume from what the
// kills left and end with weights bit-identical to one uninterrupted run; temporary files of
// killed writers must be gone once the run has finished. Prints the figures; exits 1 on failure.
//
//   node scripts/crash-consistency.js [--trials 20] [--seed 1] [--steps 60]     (needs dist/: npx tsc)
//
// The model: cDNI on an MLP 32-128-128-128-10 (BatchNorm + ReLU), stochastic module updates
// (p = 0.7) and Adam, on 500 rows of seeded random data in batches of 32 (shuffled every epoch),
// so a resume must restore weights, BatchNorm statistics, optimizer moments and step counts,
// both random generators and the position in the shuffled data. Every file lies in a directory
// made with mkdtemp and removed at the end.
'use strict';
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const SAVE_EVERY = 3;

function flag(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got '${process.argv[i + 1] ?? ''}'`);
  return v;
}

/** The training process: trains to `steps` with a checkpoint at `file`, prints what it did. */
async function child(file, steps) {
  const sg = require(path.join(__dirname, '..', 'dist', 'ts'));
  const rng = new sg.Random(11);
  const rows = 500;
  const labels = new Int32Array(rows).map(() => Math.floor(rng.next() * 10));
  const data = new sg.Dataset('random', rng.uniformArray(rows * 32, 0, 1), labels, 32, 10);
  const net = sg.decouple(sg.mlp(32, [128, 128, 128], 10), {
    synthesizer: { conditioned: true },
    schedule: { kind: 'lockstep', pUpdate: 0.7 },
  });
  const trainer = new sg.Trainer(net, { device: sg.Device.cpu(), seed: 5, optimizer: () => new sg.Adam({ lr: 1e-3 }) });
  process.stdout.write('training\n');
  const result = await trainer.fit(data, { steps, batchSize: 32, checkpoint: { path: file, every: SAVE_EVERY } });
  const state = await Promise.all(net.stateTensors().map((t) => t.read(trainer.stream)));
  const hash = crypto.createHash('sha256');
  for (const s of state) hash.update(Buffer.from(s.buffer, s.byteOffset, s.byteLength));
  trainer.dispose();
  process.stdout.write(`${JSON.stringify({ steps: result.steps, resumedFrom: result.resumedFrom ?? 0, weights: hash.digest('hex') })}\n`);
}

/**
 * Runs the training process; with `killAfterMs`, SIGKILLs it that long after it starts training.
 * Resolves with its report (undefined when killed), the ms it trained, whether it was killed,
 * and its error (`failed`) when it exited with one.
 */
function runChild(file, steps, killAfterMs) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [__filename, '--child', file, String(steps)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let started;
    let timer;
    p.stdout.on('data', (d) => {
      out += String(d);
      if (started === undefined && out.includes('training\n')) {
        started = process.hrtime.bigint();
        if (killAfterMs !== undefined) timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
      }
    });
    p.stderr.on('data', (d) => {
      err += String(d);
    });
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = started === undefined ? 0 : Number(process.hrtime.bigint() - started) / 1e6;
      if (signal === 'SIGKILL') return resolve({ killed: true, ms });
      if (code !== 0) return resolve({ killed: false, ms, failed: (err || out).trim().split('\n')[0] || `exit ${code}` });
      const last = out.trim().split('\n').pop();
      resolve({ killed: false, ms, report: JSON.parse(last) });
    });
  });
}

/**
 * The step a checkpoint file was saved at (its header, read as ts/train/checkpoint.ts lays it
 * out): 0 when there is none, NaN when it cannot be read (the resume will say why).
 */
function savedStep(file) {
  if (!fs.existsSync(file)) return 0;
  try {
    const bytes = fs.readFileSync(file);
    return JSON.parse(bytes.toString('utf8', 44, 44 + bytes.readUInt32LE(8))).host.progress.step;
  } catch {
    return NaN;
  }
}

/** A seeded generator for the kill times (xorshift32), so that a failing trial can be rerun. */
function generator(seed) {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

async function main() {
  const trials = flag('--trials', 20);
  const seed = flag('--seed', 1);
  const steps = flag('--steps', 60);
  const random = generator(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-crash-'));
  const started = Date.now();
  try {
    const reference = await runChild(path.join(dir, 'reference.ckpt'), steps);
    const trainMs = reference.ms;
    console.log(
      `crash consistency: cDNI MLP 32-128-128-128-10, ${steps} steps, a checkpoint every ${SAVE_EVERY} steps ` +
        `(${fs.statSync(path.join(dir, 'reference.ckpt')).size} bytes); uninterrupted: ${trainMs.toFixed(0)} ms of training, weights sha256 ${reference.report.weights.slice(0, 16)}…`,
    );
    console.log(
      `${trials} trials (seed ${seed}), each killed (SIGKILL) 1 to 3 times at a random point of its training, then run to the end`,
    );
    let failures = 0;
    let kills = 0;
    let killedMidWrite = 0;
    let beforeFirstSave = 0;
    let finishedFirst = 0;
    let identicalFiles = 0;
    const resumedSteps = [];
    for (let t = 1; t <= trials; t++) {
      const file = path.join(dir, `trial-${t}.ckpt`);
      const notes = [];
      let temporariesLeft = 0;
      const seen = new Set();
      const planned = 1 + Math.floor(random() * 3);
      let finalReport;
      let failedRun;
      let finishedBeforeKill = false;
      for (let k = 0; k < planned && !finalReport; k++) {
        // Within the training left to do, so that later kills land in a run too.
        const at = (random() * trainMs * 0.9 * (steps - savedStep(file))) / steps;
        const r = await runChild(file, steps, at);
        if (r.failed) {
          failedRun = r.failed;
          break;
        }
        if (!r.killed) {
          finishedFirst++; // the run ended before its kill: it is the final run
          finishedBeforeKill = true;
          finalReport = r.report;
          notes.push(`${at.toFixed(0)} ms (finished first)`);
          break;
        }
        kills++;
        // New temporary files: this kill came while it wrote one (an older one may still lie there).
        const left = fs.readdirSync(dir).filter((f) => f.startsWith(`trial-${t}.ckpt.partial-`) && !seen.has(f));
        for (const f of left) seen.add(f);
        temporariesLeft += left.length;
        if (left.length) killedMidWrite++;
        const step = savedStep(file);
        notes.push(
          `${at.toFixed(0)} ms (${step === 0 ? 'no checkpoint yet' : Number.isNaN(step) ? 'checkpoint unreadable' : `checkpoint at step ${step}`}${left.length ? ', killed mid-write' : ''})`,
        );
      }
      let resumedFrom = 0;
      if (!finalReport && !failedRun) {
        const r = await runChild(file, steps);
        failedRun = r.failed;
        finalReport = r.report;
        if (finalReport) {
          resumedFrom = finalReport.resumedFrom;
          if (resumedFrom === 0) beforeFirstSave++;
          resumedSteps.push(resumedFrom);
        }
      }
      const leftover = fs.readdirSync(dir).filter((f) => f.startsWith(`trial-${t}.ckpt.partial-`));
      if (failedRun) {
        failures++;
        console.log(`trial ${String(t).padStart(2)}: killed at ${notes.join(', ')}; did NOT resume: ${failedRun}`);
        continue;
      }
      const same = finalReport.weights === reference.report.weights && finalReport.steps === steps;
      const sameFile = fs.readFileSync(file).equals(fs.readFileSync(path.join(dir, 'reference.ckpt')));
      if (sameFile) identicalFiles++;
      const ok = same && leftover.length === 0;
      if (!ok) failures++;
      console.log(
        `trial ${String(t).padStart(2)}: killed at ${notes.join(', ')}; ` +
          `${finishedBeforeKill ? '' : `resumed from step ${resumedFrom}; `}${temporariesLeft} temporary file(s) left, ${leftover.length} after; ` +
          `weights ${same ? 'identical' : `DIFFERENT (${finalReport.weights.slice(0, 16)}…, ${finalReport.steps} steps)`}, final checkpoint ${sameFile ? 'identical' : 'different'}`,
      );
      fs.rmSync(file, { force: true });
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const resumed = resumedSteps.length ? `${Math.min(...resumedSteps)}–${Math.max(...resumedSteps)}` : 'none';
    console.log(
      `${trials - failures}/${trials} trials resumed and finished with weights bit-identical to the uninterrupted run; ` +
        `${kills} kills (${killedMidWrite} left a temporary file of a write in progress, all removed by the next run; ` +
        `${beforeFirstSave} trials lost every kill before their first checkpoint and started over); ` +
        `${finishedFirst} runs finished before their kill; ${identicalFiles}/${trials} final checkpoint files byte-identical to the uninterrupted run's; final runs resumed from steps ${resumed}; ${seconds} s`,
    );
    if (failures) process.exitCode = 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  child(process.argv[3], Number(process.argv[4])).catch((e) => {
    console.error(e.stack || String(e));
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(`crash consistency: ${e.message}`);
    process.exit(1);
  });
}
