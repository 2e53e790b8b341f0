// The functional ops layer (ts/ops.ts): each function enqueues the native op it wraps with the
// arguments in the right places, so its result equals, bit for bit, the native op called
// directly on the same inputs; allocating functions make their outputs in the context's arena
// with the op's output shape.
import { Device } from '../ts/device';
import { native, NativeTensor } from '../ts/native';
import * as ops from '../ts/ops';
import { Random } from '../ts/random';
import { Stream } from '../ts/stream';
import { Arena, Tensor } from '../ts/tensor';

const device = Device.parse('cpu');
const stream = Stream.default(device);
const rng = new Random(7);

function randomTensor(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(rng.uniformArray(n, -1, 1), shape, { device });
}

/** The native result: a fresh output of `shape` filled by `op`. */
async function direct(shape: number[], op: (out: NativeTensor) => void, dtype: 'float32' = 'float32'): Promise<Float32Array> {
  const out = Tensor.empty(shape, { device, dtype });
  op(out.handle);
  const v = await out.readFloat32(stream);
  out.dispose();
  return v;
}

describe('ops layer', () => {
  let arena: Arena;
  let ctx: ops.OpContext;
  beforeEach(() => {
    arena = new Arena();
    ctx = { device, stream, arena };
  });
  afterEach(() => arena.dispose());

  test('linear, matmul, activation and their backward match the native ops', async () => {
    const x = randomTensor([4, 3]),
      w = randomTensor([5, 3]),
      b = randomTensor([5]),
      dy = randomTensor([4, 5]);
    const s = stream.handle;
    const y = ops.linear(ctx, x, w, b);
    expect(y.shape).toEqual([4, 5]);
    expect(await y.readFloat32(stream)).toEqual(
      await direct([4, 5], (o) => native.ops.linearForward(s, x.handle, w.handle, b.handle, o, null)),
    );
    const dx = ops.matmul(ctx, dy, w);
    expect(dx.shape).toEqual([4, 3]);
    expect(await dx.readFloat32(stream)).toEqual(
      await direct([4, 3], (o) => native.ops.gemm(s, dy.handle, w.handle, o, false, false, 1, 0)),
    );
    const a = ops.activation(ctx, 'tanh', y);
    expect(await a.readFloat32(stream)).toEqual(await direct([4, 5], (o) => native.ops.activationForward(s, 'tanh', y.handle, o)));
    const da = ops.activationBackward(ctx, 'tanh', a, dy);
    expect(await da.readFloat32(stream)).toEqual(
      await direct([4, 5], (o) => native.ops.activationBackward(s, 'tanh', a.handle, dy.handle, o)),
    );
    for (const t of [x, w, b, dy]) t.dispose();
  });

  test('losses, scale, clone, full, oneHot and concatColumns match the native ops', async () => {
    const s = stream.handle;
    const logits = randomTensor([3, 4]),
      target = randomTensor([3, 4]);
    const labels = Tensor.fromArray(new Int32Array([2, 0, 3]), [3], { device, dtype: 'int32' });
    const { probs, loss } = ops.softmaxCrossEntropy(ctx, logits, labels);
    expect(await probs.readFloat32(stream)).toEqual(
      await direct([3, 4], (o) =>
        native.ops.softmaxCrossEntropyForward(s, logits.handle, labels.handle, o, Tensor.empty([1], { device, arena }).handle),
      ),
    );
    expect(await loss.readFloat32(stream)).toEqual(
      await direct([1], (o) =>
        native.ops.softmaxCrossEntropyForward(s, logits.handle, labels.handle, Tensor.empty([3, 4], { device, arena }).handle, o),
      ),
    );
    expect(await ops.softmaxCrossEntropyBackward(ctx, probs, labels, 0.5).readFloat32(stream)).toEqual(
      await direct([3, 4], (o) => native.ops.softmaxCrossEntropyBackward(s, probs.handle, labels.handle, o, 0.5)),
    );
    expect(await ops.mse(ctx, logits, target).readFloat32(stream)).toEqual(
      await direct([1], (o) => native.ops.mseForward(s, logits.handle, target.handle, o)),
    );
    expect(await ops.mseBackward(ctx, logits, target, 3).readFloat32(stream)).toEqual(
      await direct([3, 4], (o) => native.ops.mseBackward(s, logits.handle, target.handle, o, 3)),
    );
    expect(await ops.scale(ctx, 0.25, logits).readFloat32(stream)).toEqual(
      (await logits.readFloat32(stream)).map((v) => Math.fround(v * 0.25)),
    );
    expect(await ops.clone(ctx, logits).readFloat32(stream)).toEqual(await logits.readFloat32(stream));
    expect(Array.from(await ops.full(ctx, [2, 2], 1.5).readFloat32(stream))).toEqual([1.5, 1.5, 1.5, 1.5]);
    const onehot = ops.oneHot(ctx, labels, 4);
    expect(onehot.shape).toEqual([3, 4]);
    expect(await onehot.readFloat32(stream)).toEqual(await direct([3, 4], (o) => native.ops.oneHot(s, labels.handle, o)));
    const cat = ops.concatColumns(ctx, target, onehot);
    expect(cat.shape).toEqual([3, 8]);
    expect(await cat.readFloat32(stream)).toEqual(
      await direct([3, 8], (o) => native.ops.concatColumns(s, target.handle, onehot.handle, o)),
    );
    for (const t of [logits, target, labels]) t.dispose();
  });

  test('batchNorm returns y and the saved statistics; its backward accumulates dgamma and dbeta', async () => {
    const x = randomTensor([6, 3]),
      gamma = randomTensor([3]),
      beta = randomTensor([3]),
      dy = randomTensor([6, 3]);
    const rm = Tensor.zeros([3], { device, arena }),
      rv = Tensor.zeros([3], { device, arena });
    const saved = ops.batchNorm(ctx, x, gamma, beta, rm, rv, 0.1, 1e-5, true);
    expect([saved.y.shape, saved.saveMean.shape, saved.saveInvStd.shape]).toEqual([[6, 3], [3], [3]]);
    const refY = Tensor.empty([6, 3], { device, arena }),
      refMean = Tensor.empty([3], { device, arena }),
      refInv = Tensor.empty([3], { device, arena });
    native.ops.batchNormForward(
      stream.handle,
      x.handle,
      gamma.handle,
      beta.handle,
      refY.handle,
      Tensor.zeros([3], { device, arena }).handle,
      Tensor.zeros([3], { device, arena }).handle,
      refMean.handle,
      refInv.handle,
      0.1,
      1e-5,
      true,
    );
    expect(await saved.y.readFloat32(stream)).toEqual(await refY.readFloat32(stream));
    expect(await saved.saveInvStd.readFloat32(stream)).toEqual(await refInv.readFloat32(stream));
    const dgamma = Tensor.zeros([3], { device, arena }),
      dbeta = Tensor.zeros([3], { device, arena });
    const dx = ops.batchNormBackward(ctx, x, dy, gamma, saved, dgamma, dbeta);
    const refDgamma = Tensor.zeros([3], { device, arena }),
      refDbeta = Tensor.zeros([3], { device, arena });
    expect(await dx.readFloat32(stream)).toEqual(
      await direct([6, 3], (o) =>
        native.ops.batchNormBackward(
          stream.handle,
          x.handle,
          dy.handle,
          gamma.handle,
          refMean.handle,
          refInv.handle,
          o,
          refDgamma.handle,
          refDbeta.handle,
        ),
      ),
    );
    expect(await dgamma.readFloat32(stream)).toEqual(await refDgamma.readFloat32(stream));
    expect(await dbeta.readFloat32(stream)).toEqual(await refDbeta.readFloat32(stream));
    for (const t of [x, gamma, beta, dy]) t.dispose();
  });

  test('allocating ops make their outputs in the arena', async () => {
    const x = randomTensor([2, 3]);
    const outs = [ops.clone(ctx, x), ops.scale(ctx, 2, x), ops.activation(ctx, 'relu', x), ops.full(ctx, [3], 0)];
    await stream.synchronize();
    arena.dispose();
    expect(outs.map((t) => t.disposed)).toEqual([true, true, true, true]);
    expect(x.disposed).toBe(false);
    x.dispose();
  });

  test('the grouped Adam step over TensorGroups matches the native grouped op', async () => {
    const shapes = [[3, 2], [4]];
    const make = () => shapes.map((sh) => randomTensor(sh));
    const params = make(),
      grads = make();
    const refParams = params.map((p) => ops.clone({ device, stream }, p)),
      refGrads = grads.map((g) => ops.clone({ device, stream }, g));
    const zeros = () => shapes.map((sh) => Tensor.zeros(sh, { device, arena }));
    const m = zeros(),
      v = zeros(),
      rm = zeros(),
      rv = zeros();
    const before = await params[0].readFloat32(stream);
    const hyper = Tensor.empty([2], { device, arena });
    ops.writeScalars({ stream }, hyper, ops.adamScalars(0.01, 0.9, 0.999, 1));
    const g = (ts: Tensor[]) => new ops.TensorGroup(ts);
    ops.adamStepGroup({ stream }, g(params), g(grads), g(m), g(v), hyper, 0.9, 0.999, 1e-8, 0.01);
    native.ops.adamStepGroup(
      stream.handle,
      refParams.map((t) => t.handle),
      refGrads.map((t) => t.handle),
      rm.map((t) => t.handle),
      rv.map((t) => t.handle),
      hyper.handle,
      0.9,
      0.999,
      1e-8,
      0.01,
    );
    for (let i = 0; i < shapes.length; i++) {
      expect(await params[i].readFloat32(stream)).toEqual(await refParams[i].readFloat32(stream));
      expect(await v[i].readFloat32(stream)).toEqual(await rv[i].readFloat32(stream));
    }
    // the step moved the parameters (so the comparison above compares updated values)
    expect(await params[0].readFloat32(stream)).not.toEqual(before);
    for (const t of [...params, ...grads, ...refParams, ...refGrads]) t.dispose();
  });
});
