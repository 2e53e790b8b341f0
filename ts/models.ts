// Ready-made models.
import { BatchNorm1d, Linear, ReLU, Sequential } from './nn/layers';
import { Module } from './nn/module';
import { positiveInt } from './check';
import { typeError } from './errors';

/**
 * A fully connected classifier: each hidden layer is Linear → BatchNorm → ReLU, then a
 * Linear to the classes (the MNIST FCN of the DNI paper uses 256 units per hidden layer).
 */
export function mlp(inputs: number, hidden: number[], classes: number): Sequential {
  positiveInt('mlp', 'inputs', inputs);
  if (!Array.isArray(hidden)) throw typeError(`mlp: 'hidden' must be an array of layer widths, got ${typeof hidden}`);
  hidden.forEach((h, i) => positiveInt('mlp', `hidden[${i}]`, h));
  positiveInt('mlp', 'classes', classes);
  const layers: Module[] = [];
  let width = inputs;
  for (const h of hidden) {
    layers.push(new Linear(width, h), new BatchNorm1d(h), new ReLU());
    width = h;
  }
  layers.push(new Linear(width, classes));
  return new Sequential(layers);
}
