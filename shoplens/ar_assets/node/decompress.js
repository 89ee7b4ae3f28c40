// Rewrite a glTF as a plain GLB: Draco / meshopt geometry decoded, quantized
// attributes turned back into floats. The USDZ converter reads the result.
// usage: node decompress.js <node_modules dir> <input> <output.glb>
"use strict";
const path = require("path");
const { pathToFileURL } = require("url");

const [nm, input, output] = process.argv.slice(2);
const req = (name) => require(path.join(nm, name));

(async () => {
  const core = req("@gltf-transform/core");
  const ext = req("@gltf-transform/extensions");
  const fn = req("@gltf-transform/functions");
  const draco3d = req("draco3dgltf");
  const { MeshoptDecoder } = await import(pathToFileURL(path.join(nm, "meshoptimizer", "index.js")).href);
  await MeshoptDecoder.ready;
  const io = new core.NodeIO()
    .registerExtensions(ext.ALL_EXTENSIONS)
    .registerDependencies({
      "draco3d.decoder": await draco3d.createDecoderModule(),
      "meshopt.decoder": MeshoptDecoder,
    });
  const doc = await io.read(input);
  await doc.transform(fn.dequantize());
  const drop = ["KHR_draco_mesh_compression", "EXT_meshopt_compression", "KHR_mesh_quantization"];
  for (const e of doc.getRoot().listExtensionsUsed()) {
    if (drop.includes(e.extensionName)) e.dispose();
  }
  await io.write(output, doc);
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(3);
});
