// The work a training step must do, counted from the native ops it enqueues (for the roofline
// benchmark, bench/roofline.ts; tested in test/roofline-model.test.ts): GEMM FLOPs (the
// matrix products: gemm, linearForward, the convolutions) and the bytes every other op must
// move. traceOps() records the ops a step calls, with their tensors' shapes, from the native
// module's `ops` object; opWork() prices one call by the op table's argument names. So the
// counts follow the model's actual layers (synthesizers, optimizer and loss included) without
// any number typed in by hand, and an op without a price here is an error, not a silent zero.
//
// The byte count is a lower bound per op: each tensor the op reads is read once, each it writes
// is written once, and one it updates in place (y += ..., an optimizer's state) is both; 4
// bytes an element (float32 and int32). A GEMM's operands are not counted as bytes: its time
// is its FLOPs at the GEMM's rate. The epilogue of linearForward (bias, activation) and a
// convolution's bias count nothing, as a GEMM that applies them to its output tile moves no
// further bytes.
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../ts/native';

// The repository: this file runs from test/helpers/ (ts-jest) or dist/test/helpers/ (the bench).
const projectRoot = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');

/** A tensor argument as the trace keeps it: its shape. */
export interface TensorShape {
  shape: number[];
}
export type TracedArg = TensorShape | TensorShape[] | number | boolean | string | null;

/** One op call: the op's name and its arguments by their names in the op table. */
export interface OpCall {
  op: string;
  args: Record<string, TracedArg>;
}

export interface Work {
  /** multiply-adds of the matrix products, 2 FLOPs each */
  gemmFlops: number;
  /** bytes the other work reads and writes */
  bytes: number;
}

interface TableOp {
  name: string;
  args: string[];
}

let tableCache: TableOp[] | undefined;

/** The op table (native/core/op_table.json): every op and its arguments' names in order. */
export function opTable(): TableOp[] {
  tableCache ??= (JSON.parse(fs.readFileSync(path.join(projectRoot, 'native/core/op_table.json'), 'utf8')).ops as TableOp[]).map((o) => ({
    name: o.name,
    args: o.args.map((a) => a.split(' ')[1]),
  }));
  return tableCache;
}

function isTensor(v: unknown): v is { shape: number[] } {
  return typeof v === 'object' && v !== null && Array.isArray((v as { shape?: unknown }).shape);
}

function traced(v: unknown): TracedArg {
  if (isTensor(v)) return { shape: [...v.shape] };
  // a list of tensors; another list (writeScalars' values) is kept as its length
  if (Array.isArray(v)) return v.every(isTensor) ? v.map((t) => ({ shape: [...t.shape] })) : v.length;
  if (v === undefined) return null;
  return v as TracedArg;
}

/**
 * Runs `run` with every native op recorded (and still run), and returns the calls in order.
 * Only ops reached through `native.ops` are seen (all of ts/ops.ts's are); tensor uploads,
 * reads and allocations are not ops.
 */
export async function traceOps(run: () => Promise<void>): Promise<OpCall[]> {
  const ops = native.ops as unknown as Record<string, (...a: unknown[]) => unknown>;
  const originals = new Map<string, (...a: unknown[]) => unknown>();
  const calls: OpCall[] = [];
  for (const { name, args } of opTable()) {
    const original = ops[name];
    originals.set(name, original);
    ops[name] = (...a: unknown[]) => {
      const named: Record<string, TracedArg> = {};
      args.forEach((arg, i) => {
        if (arg !== 's') named[arg] = traced(a[i]);
      });
      calls.push({ op: name, args: named });
      return original.apply(ops, a);
    };
  }
  try {
    await run();
  } finally {
    for (const [name, original] of originals) ops[name] = original;
  }
  return calls;
}

const bytesPerElement = 4;

function numel(v: TracedArg): number {
  if (v === null) return 0;
  if (Array.isArray(v)) return v.reduce((n, t) => n + numel(t), 0);
  if (typeof v !== 'object') throw new Error(`not a tensor argument: ${String(v)}`);
  return v.shape.reduce((p, d) => p * d, 1);
}

function shapeOf(call: OpCall, name: string): number[] {
  const v = call.args[name];
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${call.op}: '${name}' is not a tensor`);
  return v.shape;
}

/** What an op reads, writes and updates in place (argument names), and its GEMM FLOPs. */
interface Price {
  reads?: string[];
  writes?: string[];
  updates?: string[];
  flops?: (c: OpCall) => number;
}

// A convolution as a GEMM: 2 FLOPs per output element and (input channel, kernel tap).
const convFlops = (c: OpCall, outputs: number): number => {
  const [, cin, kh, kw] = shapeOf(c, 'w');
  return 2 * outputs * cin * kh * kw;
};

const prices: Record<string, Price | ((c: OpCall) => Price)> = {
  copy: { reads: ['src'], writes: ['dst'] },
  fill: { writes: ['y'] },
  axpby: (c) => (c.args.b === 0 ? { reads: ['x'], writes: ['y'] } : { reads: ['x'], updates: ['y'] }),
  gemm: {
    flops: (c) => {
      const [m, n] = shapeOf(c, 'c');
      const a = shapeOf(c, 'a');
      return 2 * m * n * (c.args.transA ? a[0] : a[1]);
    },
  },
  linearForward: {
    flops: (c) => {
      const [rows, inputs] = shapeOf(c, 'x');
      return 2 * rows * inputs * shapeOf(c, 'w')[0];
    },
  },
  addBias: { reads: ['bias'], updates: ['y'] },
  biasBackward: { reads: ['dy'], updates: ['dbias'] },
  activationForward: { reads: ['x'], writes: ['y'] },
  activationBackward: { reads: ['y', 'dy'], writes: ['dx'] },
  batchNormForward: (c) => ({
    reads: ['x', 'gamma', 'beta'],
    writes: ['y', 'saveMean', 'saveInvStd'],
    updates: c.args.training ? ['runningMean', 'runningVar'] : [],
  }),
  batchNormBackward: { reads: ['x', 'dy', 'gamma', 'saveMean', 'saveInvStd'], writes: ['dx'], updates: ['dgamma', 'dbeta'] },
  // BatchNorm and the ReLU after it as one op: the ReLU's pass over y adds no bytes.
  batchNormReluForward: (c) => ({
    reads: ['x', 'gamma', 'beta'],
    writes: ['y', 'saveMean', 'saveInvStd'],
    updates: c.args.training ? ['runningMean', 'runningVar'] : [],
  }),
  batchNormReluBackward: { reads: ['x', 'y', 'dy', 'gamma', 'saveMean', 'saveInvStd'], writes: ['dx'], updates: ['dgamma', 'dbeta'] },
  softmaxCrossEntropyForward: { reads: ['logits', 'labels'], writes: ['probs', 'loss'] },
  softmaxCrossEntropyBackward: { reads: ['probs', 'labels'], writes: ['dlogits'] },
  sigmoidCrossEntropyForward: { reads: ['logits', 'targets'], writes: ['probs', 'loss'] },
  sigmoidCrossEntropyBackward: { reads: ['probs', 'targets'], writes: ['dlogits'] },
  lstmCellForward: { reads: ['cPrev'], updates: ['gates'], writes: ['c', 'h'] },
  lstmCellBackward: { reads: ['gates', 'cPrev', 'c', 'dh', 'dc'], writes: ['dgates', 'dcPrev'] },
  mseForward: { reads: ['pred', 'target'], writes: ['loss'] },
  mseBackward: { reads: ['pred', 'target'], writes: ['dpred'] },
  oneHot: { reads: ['labels'], writes: ['out'] },
  concatColumns: { reads: ['a', 'b'], writes: ['out'] },
  splitColumns: { reads: ['dout'], writes: ['da', 'db'] },
  writeScalars: { writes: ['y'] },
  // The gradients are read, then zeroed: an update.
  sgdStepGroup: { reads: ['hyper'], updates: ['params', 'grads', 'velocities'] },
  adamStepGroup: { reads: ['hyper'], updates: ['params', 'grads', 'ms', 'vs'] },
  conv2dForward: { flops: (c) => convFlops(c, numel(c.args.y)) },
  conv2dBackward: (c) => ({
    // dx and dw are each a GEMM the size of the forward one; db is dy summed over rows.
    flops: () => ((c.args.dx !== null ? 1 : 0) + (c.args.dw !== null ? 1 : 0)) * convFlops(c, numel(c.args.dy)),
    ...(c.args.db !== null ? { reads: ['dy'], updates: ['db'] } : {}),
  }),
  maxPool2dForward: { reads: ['x'], writes: ['y'] },
  maxPool2dBackward: { reads: ['x', 'dy'], writes: ['dx'] },
  avgPool2dForward: { reads: ['x'], writes: ['y'] },
  avgPool2dBackward: { reads: ['dy'], writes: ['dx'] },
  swapLastAxes: { reads: ['x'], writes: ['y'] },
};

/** The ops that opWork() prices (the test checks that this is the whole op table). */
export const pricedOps = Object.keys(prices);

/** The GEMM FLOPs and the bytes of one op call. */
export function opWork(call: OpCall): Work {
  const entry = prices[call.op];
  if (!entry) throw new Error(`roofline: no price for op '${call.op}' (add it to test/helpers/op-work.ts)`);
  const p = typeof entry === 'function' ? entry(call) : entry;
  const elements = (names: string[] | undefined) => (names ?? []).reduce((n, name) => n + numel(call.args[name]), 0);
  return {
    gemmFlops: p.flops ? p.flops(call) : 0,
    bytes: bytesPerElement * (elements(p.reads) + elements(p.writes) + 2 * elements(p.updates)),
  };
}

/** Work summed per op name, and in all. */
export function stepWork(calls: OpCall[]): { total: Work; byOp: Map<string, Work & { calls: number }> } {
  const byOp = new Map<string, Work & { calls: number }>();
  const total: Work = { gemmFlops: 0, bytes: 0 };
  for (const call of calls) {
    const w = opWork(call);
    const entry = byOp.get(call.op) ?? { gemmFlops: 0, bytes: 0, calls: 0 };
    entry.gemmFlops += w.gemmFlops;
    entry.bytes += w.bytes;
    entry.calls++;
    byOp.set(call.op, entry);
    total.gemmFlops += w.gemmFlops;
    total.bytes += w.bytes;
  }
  return { total, byOp };
}

/** The roofline bound in milliseconds: FLOPs at `gflops` plus bytes at `gbPerSecond`. */
export function boundMs(w: Work, gflops: number, gbPerSecond: number): number {
  return w.gemmFlops / (gflops * 1e6) + w.bytes / (gbPerSecond * 1e6);
}
