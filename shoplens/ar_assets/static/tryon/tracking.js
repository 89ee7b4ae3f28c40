// Landmarks -> where the product goes: one pose per copy of the model (two shoes, two
// earrings), in the frame's pixel space (x right, y up = -row, z toward the camera).
//
// MediaPipe gives landmarks as fractions of the frame (z in the scale of x, smaller =
// nearer) and, for hands and pose, "world" landmarks in metres: the ratio of the two is
// the frame's pixels per metre at the body part, so the model is shown true to size.
// The face has no world landmarks here: its scale comes from the interpupillary distance.
import * as THREE from "three";

export const IPD_M = 0.063;

// Face mesh landmark numbers.
const FACE = { rightEye: [33, 133], leftEye: [362, 263], bridge: 168, forehead: 10, chin: 152,
  rightLobe: 93, leftLobe: 323 };
// Hands: wrist, index, middle and pinky knuckles.
const HAND = { wrist: 0, index: 5, middle: 9, pinky: 17 };
// Pose: [ankle, heel, toe] per side, and the segments measured for the scale.
const FEET = [[27, 29, 31], [28, 30, 32]];
const LEG_SEGMENTS = [[23, 25], [25, 27], [24, 26], [26, 28], [27, 29], [28, 30], [29, 31], [30, 32]];

export function frameSpace(width, height) {
  // A landmark (fractions of the frame) as a point of the three.js scene, in pixels.
  return (l) => new THREE.Vector3(l.x * width, -l.y * height, -(l.z || 0) * width);
}

function world(l) { return new THREE.Vector3(l.x, -l.y, -l.z); }

function mid(a, b) { return a.clone().add(b).multiplyScalar(0.5); }

// Rotation taking the model's (forward, up) onto the body's (forward, up), both orthonormalised.
export function basis(modelForward, modelUp, forward, up) {
  const frame = (f, u) => {
    const e1 = f.clone().normalize();
    const e2 = u.clone().sub(e1.clone().multiplyScalar(u.dot(e1))).normalize();
    const e3 = new THREE.Vector3().crossVectors(e1, e2);
    return new THREE.Matrix4().makeBasis(e1, e2, e3);
  };
  const model = frame(modelForward, modelUp);
  const body = frame(forward, up);
  return new THREE.Quaternion().setFromRotationMatrix(body.multiply(model.transpose()));
}

function toFraction(p, width, height) { return { x: p.x / width, y: -p.y / height }; }

// Each function returns null when nothing is in view, else
// {anchor: {x, y} fractions, scale: px per metre, copies: [{position, forward, up, mirror}]}.
export function faceFit(results, fit, width, height) {
  const faces = results.multiFaceLandmarks || [];
  if (!faces.length) return null;
  const lm = faces[0];
  const v = frameSpace(width, height);
  const rightEye = mid(v(lm[FACE.rightEye[0]]), v(lm[FACE.rightEye[1]]));
  const leftEye = mid(v(lm[FACE.leftEye[0]]), v(lm[FACE.leftEye[1]]));
  const scale = rightEye.distanceTo(leftEye) / IPD_M;
  const across = leftEye.clone().sub(rightEye).normalize();  // image right on a front camera
  const up = v(lm[FACE.forehead]).sub(v(lm[FACE.chin]));
  up.sub(across.clone().multiplyScalar(up.dot(across))).normalize();
  const out = new THREE.Vector3().crossVectors(across, up);  // toward the camera
  const at = (p, dUp, dOut) => p.clone().add(up.clone().multiplyScalar(dUp * scale))
    .add(out.clone().multiplyScalar(dOut * scale));
  let copies;
  let anchor;
  if (fit.kind === "hat") {
    // The hat band goes round the head at the top of the forehead, centred on the
    // middle of the head (8.5 cm behind the forehead).
    const crown = at(v(lm[FACE.forehead]), -0.005, -0.085);
    copies = [{ position: crown, forward: out, up }];
    anchor = crown;
  } else if (fit.kind === "earrings") {
    copies = [FACE.rightLobe, FACE.leftLobe].map((i, k) => (
      { position: at(v(lm[i]), -0.01, -0.01), forward: out, up, mirror: k === 1 }));
    anchor = copies[0].position;
  } else {
    // Glasses: the lenses' centre on the eyes' midpoint, the frame's front a little in
    // front of the eyes (the bridge of the nose, landmark 168, is above the eye line).
    const eyes = mid(rightEye, leftEye);
    copies = [{ position: at(eyes, 0, 0.012), forward: out, up }];
    anchor = eyes;
  }
  return { anchor: toFraction(anchor, width, height), scale, copies, landmarks: lm, frame: v,
    head: { across, up, out, bridge: v(lm[FACE.bridge]) } };
}

function metricScale(pairs, lm, wl, v) {
  let px = 0;
  let m = 0;
  for (const [a, b] of pairs) {
    if (!lm[a] || !lm[b] || !wl[a] || !wl[b]) continue;
    px += v(lm[a]).distanceTo(v(lm[b]));
    m += world(wl[a]).distanceTo(world(wl[b]));
  }
  return m > 0 ? px / m : 0;
}

export function wristFit(results, fit, width, height) {
  const hands = results.multiHandLandmarks || [];
  const worlds = results.multiHandWorldLandmarks || [];
  if (!hands.length || !worlds.length) return null;
  const lm = hands[0];
  const v = frameSpace(width, height);
  const H = HAND;
  const scale = metricScale([[H.wrist, H.index], [H.wrist, H.middle], [H.wrist, H.pinky],
    [H.index, H.pinky]], lm, worlds[0], v);
  if (!(scale > 0)) return null;
  const wrist = v(lm[H.wrist]);
  const along = v(lm[H.middle]).sub(wrist).normalize();  // toward the fingers
  // The back of the hand's normal, turned toward the camera so that the dial shows.
  const normal = new THREE.Vector3().crossVectors(
    v(lm[H.index]).sub(wrist), v(lm[H.pinky]).sub(wrist)).normalize();
  if (normal.z < 0) normal.negate();
  const position = wrist.clone().sub(along.clone().multiplyScalar(0.015 * scale));
  // Model: dial +z, wrist along +x; body: dial = normal, up = normal x along.
  const up = new THREE.Vector3().crossVectors(normal, along);
  return { anchor: toFraction(wrist, width, height), scale,
    copies: [{ position, forward: normal, up }], arm: { position, along } };
}

export function footFit(results, fit, width, height) {
  const lm = results.poseLandmarks;
  const wl = results.poseWorldLandmarks;
  if (!lm || !wl) return null;
  const v = frameSpace(width, height);
  const seen = (i) => lm[i] && (lm[i].visibility === undefined || lm[i].visibility > 0.3);
  const scale = metricScale(LEG_SEGMENTS.filter(([a, b]) => seen(a) && seen(b)), lm, wl, v);
  const copies = [];
  let anchor = null;
  FEET.forEach(([ankle, heel, toe], side) => {
    if (!(seen(ankle) && seen(heel) && seen(toe))) return;
    const a = v(lm[ankle]);
    const h = v(lm[heel]);
    const t = v(lm[toe]);
    const forward = t.clone().sub(h);
    const up = a.clone().sub(h);
    if (forward.lengthSq() < 1e-6) return;
    copies.push({ position: mid(h, t), forward, up, mirror: side === 1 });
    anchor = anchor || a;
  });
  if (!copies.length || !(scale > 0)) return null;
  return { anchor: toFraction(anchor, width, height), scale, copies };
}

export const FITS = { face: faceFit, head: faceFit, wrist: wristFit, foot: footFit };

// Triangles of the face mesh from its tesselation's edges: every 3-clique of the
// edge graph is a face of the (near planar) mesh. Used for the depth-only occluder.
export function faceTriangles(edges) {
  const next = new Map();
  for (const [a, b] of edges) {
    if (!next.has(a)) next.set(a, new Set());
    if (!next.has(b)) next.set(b, new Set());
    next.get(a).add(b);
    next.get(b).add(a);
  }
  const tris = [];
  for (const [a, na] of next) {
    for (const b of na) {
      if (b <= a) continue;
      for (const c of next.get(b)) {
        if (c <= b || !na.has(c)) continue;
        tris.push(a, b, c);
      }
    }
  }
  return tris;
}
