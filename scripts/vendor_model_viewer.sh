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

# Draco and KTX2 (Basis) decoders for original uploads that use them: model-viewer
# would fetch them from www.gstatic.com; we serve three.js' copies (the release
# model-viewer is built against) from /ar/static/draco/ and /ar/static/basis/.
three_version="$(node -p "require('$src/package.json').peerDependencies.three.replace(/^[^0-9]*/, '')")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "three@$three_version" --silent >/dev/null && tar xzf three-*.tgz)
libs="$work/package/examples/jsm/libs"
mkdir -p "$dst/draco" "$dst/basis"
cp "$libs/draco/gltf/draco_decoder.wasm" "$libs/draco/gltf/draco_wasm_wrapper.js" "$dst/draco/"
cp "$libs/draco/README.md" "$dst/draco/README.md"
cp "$libs/basis/basis_transcoder.js" "$libs/basis/basis_transcoder.wasm" "$dst/basis/"
cp "$libs/basis/README.md" "$dst/basis/README.md"
cp "$work/package/LICENSE" "$dst/LICENSE.three"
version="$(node -p "require('$src/package.json').version")"
printf '%s\n' \
  "@google/model-viewer $version (Apache-2.0, see LICENSE.model-viewer)" \
  "meshoptimizer $mo_version meshopt_decoder (MIT, see LICENSE.meshoptimizer)" \
  "three $three_version examples/jsm/libs draco/gltf + basis (Draco and Basis Universal:" \
  "  Apache-2.0, see draco/README.md and basis/README.md; three.js: MIT, LICENSE.three)" \
  > "$dst/VERSION.txt"
echo "vendored model-viewer $version into $dst"
