#!/usr/bin/env bash
# Copy model-viewer (installed by scripts/install-node-tools.sh from package.json)
# into shoplens/ar_assets/static/ so Shoplens serves it from its own origin and a
# pip install works without npm. Re-run after bumping @google/model-viewer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/node_modules/@google/model-viewer"
dst="$root/shoplens/ar_assets/static"
if [[ ! -f "$src/dist/model-viewer.min.js" ]]; then
  echo "model-viewer is not installed: run scripts/install-node-tools.sh first" >&2
  exit 1
fi
mkdir -p "$dst"
cp "$src/dist/model-viewer.min.js" "$dst/model-viewer.min.js"
cp "$src/LICENSE" "$dst/LICENSE.model-viewer"
version="$(node -p "require('$src/package.json').version")"
printf '@google/model-viewer %s (Apache-2.0, see LICENSE.model-viewer)\n' "$version" > "$dst/VERSION.txt"
echo "vendored model-viewer $version into $dst"
