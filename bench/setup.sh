#!/usr/bin/env bash
# Installs the CPU benchmark's peers (Debian packages): PyTorch and the pthread OpenBLAS
# (without it PyTorch falls back to a slow reference BLAS). Needs root; npm test needs none of it.
set -euo pipefail
if /usr/bin/python3 -c 'import torch' 2>/dev/null && [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ]; then
  echo "bench peers already installed"; exit 0
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-pthread
