// Ready-made models.
import { BatchNorm1d, Linear, ReLU, Sequential } from './nn/layers';
import { Module } from './nn/module';

/**
 * A fully connected classifier: each hidden layer is Linear → BatchNorm → ReLU, then a
 * Linear to the classes (the MNIST FCN of the DNI paper uses 256 units per hidden layer).
 */
export function mlp(inputs: number, hidden: number[], classes: number): Sequential {
  const layers: Module[] = [];
  let width = inputs;
  for (const h of hidden) {
    layers.push(new Linear(width, h), new BatchNorm1d(h), new ReLU());
    width = h;
  }
  layers.push(new Linear(width, classes));
  return new Sequential(layers);
}
