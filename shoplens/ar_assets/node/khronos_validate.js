// Run the Khronos glTF validator on one asset and print its JSON report.
// usage: node khronos_validate.js <validator module dir> <asset path>
// External resources are read only from the asset's own folder (no network,
// no paths outside it); the caller already rejected anything else.
"use strict";
const fs = require("fs");
const path = require("path");

const [validatorDir, assetPath] = process.argv.slice(2);
const validator = require(validatorDir);
const root = path.dirname(path.resolve(assetPath));

function loadResource(uri) {
  return new Promise((resolve, reject) => {
    let rel;
    try {
      rel = decodeURIComponent(uri);
    } catch (e) {
      reject(new Error("undecodable uri"));
      return;
    }
    const full = path.resolve(root, rel);
    if (full !== root && !full.startsWith(root + path.sep)) {
      reject(new Error("resource outside the asset folder"));
      return;
    }
    fs.readFile(full, (err, data) => (err ? reject(err) : resolve(new Uint8Array(data))));
  });
}

const bytes = new Uint8Array(fs.readFileSync(assetPath));
validator
  .validateBytes(bytes, {
    uri: path.basename(assetPath),
    maxIssues: 200,
    writeTimestamp: false,
    externalResourceFunction: loadResource,
  })
  .then((report) => {
    process.stdout.write(JSON.stringify(report));
  })
  .catch((error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error));
    process.exit(3);
  });
