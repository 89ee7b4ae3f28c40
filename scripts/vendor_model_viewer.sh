#!/usr/bin/env bash
# Copy model-viewer and the meshopt decoder (installed by scripts/install-node-tools.sh from package.json)
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
# model-viewer 4.x does not bundle a meshopt decoder: it loads one from
# meshoptDecoderLocation (a classic script defining self.MeshoptDecoder). The mobile
# variants are meshopt-compressed, so serve the decoder of the same meshoptimizer
# that glTF-Transform encoded them with. (MIT, see LICENSE.meshoptimizer)
mo="$root/node_modules/meshoptimizer"
cp "$mo/meshopt_decoder.cjs" "$dst/meshopt_decoder.js"
cp "$mo/LICENSE.md" "$dst/LICENSE.meshoptimizer"
mo_version="$(node -p "require('$mo/package.json').version")"
version="$(node -p "require('$src/package.json').version")"
printf '@google/model-viewer %s (Apache-2.0, see LICENSE.model-viewer)\nmeshoptimizer %s meshopt_decoder (MIT, see LICENSE.meshoptimizer)\n' \
  "$version" "$mo_version" > "$dst/VERSION.txt"
echo "vendored model-viewer $version into $dst"
