// The try-on page: camera (or photo) -> one MediaPipe solution -> the product's GLB drawn
// on the body part with three.js. Every file comes from this origin (/ar/lib, /ar/static,
// /ar/files). window.shoplensTryOn is the page's public state (API.md, AR try-on).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { DRACOLoader } from "three/addons/loaders/DRACOLoader.js";
import { RoomEnvironment } from "three/addons/environments/RoomEnvironment.js";
import { FITS, basis, faceTriangles } from "/ar/static/tryon/tracking.js";

const cfg = JSON.parse(document.getElementById("tryon-config").textContent);
const $ = (id) => document.getElementById(id);
const frame = $("frame");
const frameCtx = frame.getContext("2d");
const renderCanvas = $("render");
const video = $("video");

const state = {
  status: "loading",
  placement: cfg.placement,
  anchor: null,
  fps: 0,
  frames: 0,
  // Moving averages (ms): a whole frame (tracking + placing + drawing) and the
  // placing + drawing part alone; the tracker's share is the difference.
  timings: { frame_ms: 0, render_ms: 0 },
  inference: null,  // where MediaPipe runs its models: "gpu" (WebGL) or "cpu" (wasm)
  message: "",
  mode: cfg.mode,
  // The camera frame or photo with the product on it, as a PNG data URL (what
  // "Take a picture" saves); {product: false} leaves the product out.
  capture: (opts) => capture(opts || {}),
};
window.shoplensTryOn = state;

function setStatus(status, message) {
  state.status = status;
  state.message = message;
  $("message").textContent = message;
  document.body.dataset.status = status;
}

const MESSAGES = {
  face: "Look at the camera: the glasses go on your eyes.",
  head: "Look at the camera: the hat goes on your head.",
  wrist: "Show your wrist and hand to the camera.",
  foot: "Point the camera at your feet, ankles in view.",
};

// ---------------------------------------------------------------- three.js scene
let renderer = null;  // made in main(): a browser without WebGL gets a message, not a crash
function makeRenderer() {
  renderer = new THREE.WebGLRenderer({ canvas: renderCanvas, alpha: true, antialias: true,
    preserveDrawingBuffer: true });
  renderer.setClearColor(0x000000, 0);
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  // Metals and glass reflect their surroundings: without an environment they render black.
  scene.environment = new THREE.PMREMGenerator(renderer).fromScene(new RoomEnvironment(), 0.04).texture;
}
const scene = new THREE.Scene();
scene.add(new THREE.HemisphereLight(0xffffff, 0x666666, 2.2));
const sun = new THREE.DirectionalLight(0xffffff, 1.6);
sun.position.set(0.3, 1, 1);
scene.add(sun);
const camera = new THREE.OrthographicCamera(0, 1, 0, -1, -1e5, 1e5);
const copies = [];  // one group per worn copy (two shoes, two earrings)
let model = null;
let gltfParser = null;
let occluder = null;
let headProxy = null;
let lastFit = null;

function sizeTo(width, height) {
  for (const c of [frame, renderCanvas]) { c.width = width; c.height = height; }
  renderer.setSize(width, height, false);
  camera.left = 0; camera.right = width; camera.top = 0; camera.bottom = -height;
  camera.updateProjectionMatrix();
}

async function loadModel() {
  const loader = new GLTFLoader();
  const draco = new DRACOLoader();
  draco.setDecoderPath("/ar/static/draco/");
  loader.setDRACOLoader(draco);
  if (self.MeshoptDecoder) loader.setMeshoptDecoder(self.MeshoptDecoder);
  const gltf = await loader.loadAsync(cfg.model_url);
  gltfParser = gltf.parser;
  model = gltf.scene;
  const [px, py, pz] = cfg.fit.point_m;
  const count = cfg.placement === "foot" || cfg.fit.kind === "earrings" ? 2 : 1;
  // The model axis across the body: a second copy is mirrored across it (left shoe).
  const f = new THREE.Vector3(...cfg.fit.forward);
  const lateral = new THREE.Vector3().crossVectors(f, new THREE.Vector3(0, 1, 0));
  for (let i = 0; i < count; i++) {
    const inner = i === 0 ? model : model.clone();
    inner.position.set(-px, -py, -pz);
    const flip = new THREE.Group();
    if (i === 1) flip.scale.set(lateral.x ? -1 : 1, 1, lateral.z ? -1 : 1);
    flip.add(inner);
    const group = new THREE.Group();
    group.add(flip);
    group.visible = false;
    group.renderOrder = 2;
    scene.add(group);
    copies.push(group);
  }
  await fillVariants();
}

function depthOnly() {
  return new THREE.MeshBasicMaterial({ colorWrite: false, side: THREE.DoubleSide });
}

let forearm = null;
function updateArm(fitted) {
  // The wrist hides the back half of the band: a wrist-sized depth-only cylinder.
  if (!forearm) {
    forearm = new THREE.Mesh(new THREE.CylinderGeometry(1, 1, 1, 24), depthOnly());
    forearm.renderOrder = 1;
    scene.add(forearm);
  }
  const { position, along } = fitted.arm;
  forearm.visible = true;
  forearm.position.copy(position);
  forearm.quaternion.setFromUnitVectors(new THREE.Vector3(0, 1, 0), along);
  forearm.scale.set(0.026 * fitted.scale, 0.12 * fitted.scale, 0.02 * fitted.scale);
}

function updateOccluders(fitted) {
  if (fitted.arm) updateArm(fitted);
  // Face and head: the head hides what is behind it (temples, the back of a hat).
  if (!fitted.landmarks) return;
  const lm = fitted.landmarks;
  if (!occluder && self.FACEMESH_TESSELATION) {
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(new Float32Array(lm.length * 3), 3));
    geometry.setIndex(faceTriangles(self.FACEMESH_TESSELATION));
    occluder = new THREE.Mesh(geometry, depthOnly());
    occluder.renderOrder = 1;
    scene.add(occluder);
    headProxy = new THREE.Mesh(new THREE.SphereGeometry(1, 24, 16), depthOnly());
    headProxy.renderOrder = 1;
    scene.add(headProxy);
  }
  if (!occluder) return;
  const pos = occluder.geometry.attributes.position;
  lm.forEach((l, i) => { const p = fitted.frame(l); pos.setXYZ(i, p.x, p.y, p.z); });
  pos.needsUpdate = true;
  occluder.geometry.computeBoundingSphere();
  // A head-sized ellipsoid behind the face: hides the temples past the ears.
  const { across, up, out, bridge } = fitted.head;
  const s = fitted.scale;
  headProxy.position.copy(bridge).add(out.clone().multiplyScalar(-0.1 * s))
    .add(up.clone().multiplyScalar(0.01 * s));
  headProxy.quaternion.setFromRotationMatrix(new THREE.Matrix4().makeBasis(across, up, out));
  headProxy.scale.set(0.07 * s, 0.1 * s, 0.095 * s);
  occluder.visible = headProxy.visible = true;
}

const MODEL_UP = new THREE.Vector3(0, 1, 0);
function place(fitted) {
  lastFit = fitted;
  const modelForward = new THREE.Vector3(...cfg.fit.forward);
  copies.forEach((group, i) => {
    const c = fitted && fitted.copies[i];
    group.visible = Boolean(c);
    if (!c) return;
    group.position.copy(c.position);
    group.quaternion.copy(basis(modelForward, MODEL_UP, c.forward, c.up));
    group.scale.setScalar(fitted.scale);
  });
  if (fitted) updateOccluders(fitted);
  else {
    if (occluder) occluder.visible = headProxy.visible = false;
    if (forearm) forearm.visible = false;
  }
}

function render() { renderer.render(scene, camera); }

// MediaPipe infers on the GPU through WebGL by default. Without a GPU (software WebGL:
// SwiftShader, llvmpipe) its CPU path (wasm SIMD) is several times faster: hands went
// from 0.6 to 3-5 frames a second in headless Chromium here (benchmarks/tryon_fps.py).
// self.shoplensTryOnInference ("cpu" | "gpu"), set before the page's script runs,
// overrides the choice (the benchmark compares both).
function inferenceFor() {
  if (self.shoplensTryOnInference === "cpu" || self.shoplensTryOnInference === "gpu") {
    return self.shoplensTryOnInference;
  }
  const gl = renderer.getContext();
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  return /swiftshader|llvmpipe|softpipe|software/i.test(name) ? "cpu" : "gpu";
}

// ---------------------------------------------------------------- variants
async function fillVariants() {
  const ext = gltfParser.json.extensions && gltfParser.json.extensions.KHR_materials_variants;
  const names = ext ? ext.variants.map((v, i) => v.name || `variant ${i}`) : [];
  const select = $("variant");
  select.replaceChildren(new Option("As modelled", ""),
    ...names.map((n, i) => new Option(n, String(i))));
  $("variant-picker").hidden = names.length === 0;
  select.addEventListener("change", () => setVariant(select.value === "" ? null : +select.value));
  const first = names.indexOf(cfg.material_variant);
  if (first >= 0) { select.value = String(first); await setVariant(first); }
}

async function setVariant(index) {
  // KHR_materials_variants: each primitive maps variants to materials; null = as modelled.
  const jobs = [];
  for (const group of copies) {
    group.traverse((o) => {
      if (!o.isMesh) return;
      const assoc = gltfParser.associations.get(o) || gltfParser.associations.get(o.userData.src);
      if (!o.userData.src) o.userData.src = o;
      if (!assoc || assoc.meshes === undefined) return;
      const prim = gltfParser.json.meshes[assoc.meshes].primitives[assoc.primitives];
      const mappings = (prim.extensions && prim.extensions.KHR_materials_variants || {}).mappings;
      if (!o.userData.original) o.userData.original = o.material;
      const hit = index === null ? null : (mappings || []).find((m) => m.variants.includes(index));
      if (!hit) { o.material = o.userData.original; return; }
      jobs.push(gltfParser.getDependency("material", hit.material).then((m) => { o.material = m; }));
    });
  }
  await Promise.all(jobs);
  state.variant = index;
  render();
}

// ---------------------------------------------------------------- tracking
let tracker = null;
let busy = false;
const times = [];

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(s);
  });
}

async function startTracker(staticImages) {
  const t = cfg.tracker;
  await loadScript(t.script);
  const Solution = self[t.class];
  tracker = new Solution({ locateFile: (file) => t.base + file });
  // Only these options: setting minDetectionConfidence on face mesh 0.4 replaces its
  // detector's options wholesale (num_classes lost) and the graph aborts.
  const options = { selfieMode: false, useCpuInference: state.inference === "cpu" };
  if (cfg.placement === "wrist") Object.assign(options, { maxNumHands: 1, modelComplexity: 1 });
  else if (cfg.placement === "foot") Object.assign(options, { modelComplexity: 1, smoothLandmarks: !staticImages });
  else Object.assign(options, { maxNumFaces: 1, refineLandmarks: false });
  tracker.setOptions(options);
  tracker.onResults(onResults);
  // Hands and pose fetch their model on initialize(): send() before it aborts.
  await tracker.initialize();
}

function onResults(results) {
  state.frames += 1;  // tracker answers so far: scripts wait on it for a new photo
  const now = performance.now();
  times.push(now);
  while (times.length > 1 && now - times[0] > 2000) times.shift();
  if (times.length > 1) state.fps = Math.round(((times.length - 1) * 1000 / (now - times[0])) * 10) / 10;
  const t0 = performance.now();
  const fitted = FITS[cfg.placement](results, cfg.fit, frame.width, frame.height);
  place(fitted);
  state.anchor = fitted ? fitted.anchor : null;
  state.scale = fitted ? fitted.scale : null;  // frame pixels per metre at the body part
  if (fitted) setStatus("tracking", "");
  else setStatus("searching", MESSAGES[cfg.placement] || "Nothing to put the product on is in view.");
  $("shoot").disabled = false;
  render();
  state.timings.render_ms = smooth(state.timings.render_ms, performance.now() - t0);
}

function smooth(previous, value) {
  return Math.round((previous ? 0.8 * previous + 0.2 * value : value) * 10) / 10;
}

// ---------------------------------------------------------------- camera
let stream = null;
let facing = cfg.placement === "face" || cfg.placement === "head" ? "user" : "environment";

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("error", "This browser cannot open the camera here (it needs HTTPS and a recent browser): use a photo.");
    return photoMode();
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: facing, width: { ideal: 1280 } }, audio: false });
  } catch (e) {
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    setStatus("error", denied ? "No permission to use the camera: allow it in the browser's settings, or use a photo."
      : "No camera found: use a photo.");
    return photoMode();
  }
  video.srcObject = stream;
  await video.play();
  sizeTo(video.videoWidth, video.videoHeight);
  document.body.classList.toggle("mirrored", facing === "user");
  $("switch-camera").hidden = false;
  $("photo-pick").hidden = false;
  // One tracker per page (MediaPipe solutions clash): back from photo mode, reuse it.
  if (tracker) tracker.reset();
  else await startTracker(false);
  loop();
}

async function loop() {
  if (!stream) return;
  if (!busy && video.readyState >= 2) {
    busy = true;
    frameCtx.drawImage(video, 0, 0, frame.width, frame.height);
    const t0 = performance.now();
    try { await tracker.send({ image: frame }); } finally { busy = false; }
    // send() resolves once onResults (placing and drawing the product) has run.
    state.timings.frame_ms = smooth(state.timings.frame_ms, performance.now() - t0);
  }
  requestAnimationFrame(loop);
}

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
}

$("switch-camera").addEventListener("click", async () => {
  stopCamera();
  facing = facing === "user" ? "environment" : "user";
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: facing }, audio: false });
  } catch (e) {
    setStatus("error", "This camera cannot be opened: use the other one or a photo.");
    return;
  }
  video.srcObject = stream;
  await video.play();
  sizeTo(video.videoWidth, video.videoHeight);
  document.body.classList.toggle("mirrored", facing === "user");
  tracker.reset();
  loop();
});

// ---------------------------------------------------------------- photo mode
async function photoMode() {
  stopCamera();
  document.body.classList.remove("mirrored");
  $("photo-pick").hidden = false;
  $("use-camera").hidden = !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  $("switch-camera").hidden = true;
  if (state.status === "loading") setStatus("loading", "Pick a photo to try it on.");
  if (!tracker) await startTracker(true);
  state.ready = true;
}

async function showPhoto(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const k = Math.min(1, 1280 / Math.max(bitmap.width, bitmap.height));
  sizeTo(Math.round(bitmap.width * k), Math.round(bitmap.height * k));
  frameCtx.drawImage(bitmap, 0, 0, frame.width, frame.height);
  setStatus("loading", "Looking…");
  // A photo is not the next frame of a video: forget the last one's tracked region.
  tracker.reset();
  await tracker.send({ image: frame });
}

$("photo").addEventListener("change", async (e) => {
  const file = e.target.files && e.target.files[0];
  if (!file) return;
  if (!tracker || stream) await photoMode();
  try { await showPhoto(file); } catch (err) { setStatus("error", `Cannot read this photo: ${err.message}`); }
});

$("use-camera").addEventListener("click", () => { $("use-camera").hidden = true; startCamera(); });

// ---------------------------------------------------------------- pictures
function capture({ product = true }) {
  const out = document.createElement("canvas");
  out.width = frame.width;
  out.height = frame.height;
  const ctx = out.getContext("2d");
  if (document.body.classList.contains("mirrored")) { ctx.translate(out.width, 0); ctx.scale(-1, 1); }
  ctx.drawImage(frame, 0, 0);
  if (product) {
    render();
    ctx.drawImage(renderCanvas, 0, 0);
  }
  return out.toDataURL("image/png");
}

$("shoot").addEventListener("click", () => {
  const a = $("saved");
  a.href = capture({});
  a.hidden = false;
  a.click();
});

// ---------------------------------------------------------------- start
async function main() {
  if (cfg.placement === "foot") $("limits").hidden = false;
  if (!cfg.tracker.installed) {
    setStatus("error", "Try-on is not installed on this server (three.js and MediaPipe are missing).");
    return;
  }
  try {
    makeRenderer();
    state.inference = inferenceFor();
  } catch (e) {
    setStatus("error", "This browser has no WebGL: try-on needs it.");
    return;
  }
  try {
    await loadModel();
    if (cfg.mode === "photo") await photoMode();
    else await startCamera();
  } catch (e) {
    setStatus("error", `Try-on could not start: ${e.message || e}`);
  }
}

main();
