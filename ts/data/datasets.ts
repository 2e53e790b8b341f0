// The data sets that ship with the library's dependencies.
export { mnist, mnistDirectory, loadIdxPair } from './mnist';
export type { Split } from './mnist';
