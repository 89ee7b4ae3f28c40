// Decode one KTX2 image to raw RGBA8 bytes (level 0) for the USDZ converter:
// BasisU (ETC1S or UASTC) through the Basis transcoder Shoplens serves to
// browsers, plain R8G8B8A8 KTX2 straight from its level data (ktx-parse).
// Prints {"width", "height"} as the last stdout line.
// usage: node ktx2_rgba.js <node_modules dir> <basis dir> <input.ktx2> <output.rgba>
"use strict";
const fs = require("fs");
const path = require("path");

const [nm, basisDir, input, output] = process.argv.slice(2);
const RGBA32 = 13; // basist::transcoder_texture_format::cTFRGBA32
const VK_R8G8B8A8 = [37, 43]; // UNORM, SRGB

(async () => {
  const data = new Uint8Array(fs.readFileSync(input));
  const ktx = require(path.join(nm, "ktx-parse"));
  const container = ktx.read(data);
  const { pixelWidth: width, pixelHeight: height } = container;
  let rgba = null;
  if (VK_R8G8B8A8.includes(container.vkFormat) && container.supercompressionScheme === 0) {
    rgba = container.levels[0].levelData.slice(0, width * height * 4);
  } else {
    const BASIS = require(path.join(basisDir, "basis_transcoder.js"));
    const wasmBinary = fs.readFileSync(path.join(basisDir, "basis_transcoder.wasm"));
    const m = await BASIS({ wasmBinary });
    m.initializeBasis();
    const file = new m.KTX2File(data);
    try {
      if (!file.isValid() || !file.startTranscoding()) throw new Error("not a BasisU KTX2");
      const dst = new Uint8Array(file.getImageTranscodedSizeInBytes(0, 0, 0, RGBA32));
      if (!file.transcodeImage(dst, 0, 0, 0, RGBA32, 0, -1, -1)) throw new Error("transcoding failed");
      rgba = dst;
    } finally {
      file.close();
      file.delete();
    }
  }
  if (rgba.length !== width * height * 4) throw new Error("unexpected RGBA size");
  fs.writeFileSync(output, rgba);
  process.stdout.write(JSON.stringify({ width, height }) + "\n");
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(3);
});
