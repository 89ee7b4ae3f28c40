#!/usr/bin/env bash
# Installs the npm tools Shoplens uses into ./node_modules (idempotent).
# gltf-validator: Khronos' reference validator (oracle in tests, used at upload);
# @gltf-transform/cli: the mobile variant optimiser; @google/model-viewer: the
# viewer script that /ar/view serves from our own origin.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "install-node-tools: npm not found; AR validation/optimisation tests will be skipped" >&2
  exit 0
fi
if [ -f node_modules/.shoplens-installed ] && [ package.json -ot node_modules/.shoplens-installed ]; then
  exit 0
fi
npm install --no-audit --no-fund --loglevel=error
touch node_modules/.shoplens-installed
