#!/usr/bin/env bash
# Installs Open MPI from Debian's packages (mpirun and the headers CMake's find_package(MPI)
# needs), then builds the optional MPI transport addon, build/Release/synthgrad_mpi.node, for
# modules of a decoupled network on several processes (docs/distributed.md). Without it
# synthgrad works as before; only distribute() needs it. Run as root or with sudo.
#   --no-build   install the packages only (CI runs this before `npm ci`, whose build adds the MPI target)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mpirun >/dev/null || ! command -v mpicxx >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
fi
mpirun --version | head -1
if [ "${1:-}" = "--no-build" ]; then exit 0; fi
# The main build (scripts/build-native.js) adds the MPI target when CMake finds MPI: rebuild.
node scripts/build-native.js
test -f build/Release/synthgrad_mpi.node || { echo "install-mpi: build/Release/synthgrad_mpi.node was not built" >&2; exit 1; }
node -e "const m=require('./build/Release/synthgrad_mpi.node'); console.log('synthgrad: MPI transport built:', typeof m.init === 'function' ? 'ok' : 'broken')"
