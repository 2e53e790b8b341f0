// The roofline benchmark's work count (test/helpers/op-work.ts): every op of the op table has a
// price, single calls are priced as counted by hand, and a traced training step of a 2-layer
// MLP has the GEMM FLOPs counted by hand.
import { Arena, Backpropagation, Device, Linear, ReLU, Random, SGD, Sequential, SoftmaxCrossEntropy, Stream, Tensor, native } from '../ts';
import { OpCall, opTable, opWork, pricedOps, stepWork, traceOps } from './helpers/op-work';

const shape = (...s: number[]) => ({ shape: s });

describe('the roofline work count', () => {
  test('prices every op of the op table, and no other', () => {
    expect([...pricedOps].sort()).toEqual(
      opTable()
        .map((o) => o.name)
        .sort(),
    );
  });

  test('an op without a price is an error that names it', () => {
    expect(() => opWork({ op: 'noSuchOp', args: {} })).toThrow(/no price for op 'noSuchOp'/);
  });

  test('prices single calls as counted by hand', () => {
    // c[6,7] = aᵀ[6,5] b[5,7]: 2 * 6 * 7 * 5 FLOPs, no bytes
    expect(opWork({ op: 'gemm', args: { a: shape(5, 6), b: shape(5, 7), c: shape(6, 7), transA: true, transB: false } })).toEqual({
      gemmFlops: 420,
      bytes: 0,
    });
    // y[4,3] = x[4,8] w[3,8]ᵀ (+ bias, fused): 2 * 4 * 8 * 3
    expect(
      opWork({ op: 'linearForward', args: { x: shape(4, 8), w: shape(3, 8), bias: shape(3), y: shape(4, 3), activation: null } }),
    ).toEqual({
      gemmFlops: 192,
      bytes: 0,
    });
    // dx = dy * f'(y): reads y and dy, writes dx: 3 * 10 elements of 4 bytes
    expect(opWork({ op: 'activationBackward', args: { activation: 'relu', y: shape(2, 5), dy: shape(2, 5), dx: shape(2, 5) } }).bytes).toBe(
      120,
    );
    // Adam on params of 6 and 2 elements: param, grad, m and v each read and written (8 * 8
    // elements), and the 2 hyperparameters read: 66 elements
    const adam: OpCall = {
      op: 'adamStepGroup',
      args: {
        params: [shape(2, 3), shape(2)],
        grads: [shape(2, 3), shape(2)],
        ms: [shape(2, 3), shape(2)],
        vs: [shape(2, 3), shape(2)],
        hyper: shape(2),
      },
    };
    expect(opWork(adam)).toEqual({ gemmFlops: 0, bytes: 4 * 66 });
    // axpby with b = 0 only writes y; otherwise it reads and writes it
    const axpby = (b: number) => opWork({ op: 'axpby', args: { a: 1, x: shape(10), b, y: shape(10) } }).bytes;
    expect([axpby(0), axpby(1)]).toEqual([80, 120]);
    // conv: y[2,4,5,5] from w[4,3,3,3]: 2 * 200 outputs * 27 taps; backward with dx and dw: twice
    // that, plus db's read of dy (200) and update of db (2 * 4)
    const conv = { x: shape(2, 3, 5, 5), w: shape(4, 3, 3, 3), strideH: 1, strideW: 1, padH: 1, padW: 1 };
    expect(opWork({ op: 'conv2dForward', args: { ...conv, bias: null, y: shape(2, 4, 5, 5) } }).gemmFlops).toBe(10800);
    expect(
      opWork({
        op: 'conv2dBackward',
        args: { ...conv, dy: shape(2, 4, 5, 5), dx: shape(2, 3, 5, 5), dw: shape(4, 3, 3, 3), db: shape(4) },
      }),
    ).toEqual({
      gemmFlops: 21600,
      bytes: 4 * 208,
    });
  });

  test("counts a 2-layer MLP's training step as by hand", async () => {
    const device = Device.cpu();
    const rng = new Random(1);
    const model = new Sequential([new Linear(8, 5), new ReLU(), new Linear(5, 3)]);
    model.initialize(device, rng);
    const strategy = new Backpropagation(model, new SoftmaxCrossEntropy(), new SGD({ lr: 0.1 }));
    const stream = new Stream(device);
    const x = Tensor.fromArray(rng.uniformArray(4 * 8, -1, 1), [4, 8], { device });
    const y = Tensor.fromArray(Int32Array.from([0, 1, 2, 1]), [4], { device });
    const gemm = native.ops.gemm;
    try {
      const calls = await traceOps(async () => {
        const arena = new Arena();
        await strategy.step(x, y, { device, stream, training: true, arena }).read(stream);
        arena.dispose();
      });
      expect(native.ops.gemm).toBe(gemm); // the trace put the ops back
      // batch 4: forward 2*4*8*5 + 2*4*5*3; backward: layer 2's dW (2*3*5*4) and dx
      // (2*4*3*5), layer 1's dW (2*5*8*4) and no dx (the input needs no gradient)
      expect(stepWork(calls).total.gemmFlops).toBe(320 + 120 + 120 + 120 + 320);
      const byOp = stepWork(calls).byOp;
      // ReLU's forward reads and writes [4,5]; its backward reads two and writes one
      expect(byOp.get('activationForward')?.bytes).toBe(4 * 40);
      expect(byOp.get('activationBackward')?.bytes).toBe(4 * 60);
    } finally {
      strategy.dispose();
      model.dispose();
      x.dispose();
      y.dispose();
    }
  });
});
