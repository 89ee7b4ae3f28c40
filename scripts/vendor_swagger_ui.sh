#!/usr/bin/env bash
# Copy Swagger UI (npm swagger-ui-dist, Apache-2.0) into shoplens/service/static/swagger/
# so /docs works offline and a pip install needs no CDN. Only what the /docs page
# loads is kept: the bundle, its CSS and a favicon, with the licence and notices
# beside them. Re-run with another version to bump it: bash scripts/vendor_swagger_ui.sh 5.35.0
set -euo pipefail
version="${1:-5.35.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dst="$root/shoplens/service/static/swagger"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "swagger-ui-dist@$version" --silent >/dev/null && tar xzf swagger-ui-dist-*.tgz)
src="$work/package"
got="$(node -p "require('$src/package.json').version")"
rm -rf "$dst"
mkdir -p "$dst"
cp "$src/swagger-ui-bundle.js" "$src/swagger-ui.css" "$src/favicon-32x32.png" "$dst/"
cp "$src/LICENSE" "$dst/LICENSE"
cp "$src/NOTICE" "$dst/NOTICE"
# Licences of the libraries bundled into swagger-ui-bundle.js (React, ...).
cp "$src/swagger-ui-bundle.js.LICENSE.txt" "$dst/swagger-ui-bundle.js.LICENSE.txt"
printf '%s\n' "$got" > "$dst/VERSION.txt"
echo "vendored swagger-ui-dist $got into $dst"
