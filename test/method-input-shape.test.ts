// The method wrappers (ts/methods/sequential.ts) report their model's input shape (the trainer
// reads it to feed a Dataset's rows as [rows, features] or as images), not Module's default
// "undefined" (a layer that takes any shape).
import { BatchNorm1d, Linear, ReLU, Sequential, Sigmoid, feedbackAlignment, kickback, mlp, reinforce, targetPropagation } from '../ts';

describe("a wrapped model's inputShape() is its model's", () => {
  test.each([
    ['FA', () => feedbackAlignment(mlp(12, [5], 3)), 12],
    [
      'DFA',
      () => feedbackAlignment(new Sequential([new BatchNorm1d(9), new Linear(9, 4), new ReLU(), new Linear(4, 2)]), { direct: true }),
      9,
    ],
    ['Kickback', () => kickback(new Sequential([new Linear(7, 4), new ReLU(), new Linear(4, 1)])), 7],
    ['REINFORCE', () => reinforce(new Sequential([new Linear(6, 4), new Sigmoid(), new Linear(4, 2)])), 6],
    ['DTP', () => targetPropagation(new Sequential([new Linear(11, 5), new ReLU(), new Linear(5, 3)])), 11],
  ])('%s', (_, wrapped, features) => {
    const net = wrapped();
    expect(net.inputShape()).toEqual({ kind: 'rows', features });
    expect(net.inputFeatures()).toBe(features);
  });
});
