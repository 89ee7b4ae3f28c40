"""Tracking speed of the try-on page (``GET /ar/try/{id}``) in headless Chromium.

``python -m benchmarks.tryon_fps [--seconds 20]``

For each tracker (face mesh with SunglassesKhronos, hands with a generated watch, pose
with MaterialsVariantsShoe, all from ../shared) the page runs in camera mode on
Chromium's fake camera playing a photo of ../shared/data/people (a Y4M made on the
fly), with software WebGL (SwiftShader) as on a machine without a GPU. Once it is
``tracking`` the page's own clock is read twice, ``--seconds`` apart:

- ``frames/s``: tracker answers per second between the two readings (each answer
  places and draws the product), and the page's own ``fps`` (last 2 s);
- ``frame ms``: one frame, tracking + placing + drawing (moving average), and
  ``drawing ms``, the JavaScript side of placing + drawing alone (WebGL runs the
  draw calls later, so their cost lands in the next frames);

each twice, in the same run: MediaPipe inferring through WebGL (``gpu``, its default:
the baseline) and on the CPU (``cpu``, what the page picks when WebGL is software).

A phone runs MediaPipe on its GPU and is much faster; the numbers show where the time
goes here. The machine's load average is saved with them (the box is shared).
Writes ``benchmarks/results/tryon_fps.json`` and ``tryon_fps.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine, write_results

SHARED = REPO.parent / "shared" / "data"
CASES = [
    ("face", "glasses", "face_front_1.jpg"),
    ("wrist", "watch", "hand_wrist_1.jpg"),
    ("foot", "shoe", "body_1.jpg"),
]


def _model(kind: str, tmp: Path) -> Path:
    if kind == "glasses":
        return SHARED / "ar" / "SunglassesKhronos.glb"
    if kind == "shoe":
        return Path(
            shutil.make_archive(str(tmp / "shoe"), "zip", SHARED / "ar" / "MaterialsVariantsShoe")
        )
    from tests.ar_assets.wearables import watch_glb  # the tests' generated watch

    path = tmp / "watch.glb"
    path.write_bytes(watch_glb())
    return path


def _measure(
    base: str, video: Path, profile: Path, seconds: float, inference: str
) -> dict[str, Any]:
    from tests.support import headless_chromium

    flags = [
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    read = "const s = shoplensTryOn; return [performance.now(), s.frames, s.status]"
    with headless_chromium(profile, window="900,900", flags=flags) as d:
        d.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": f"self.shoplensTryOnInference = {inference!r};"},
        )
        d.get(f"{base}/ar/try/p")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = d.execute_script("return window.shoplensTryOn && shoplensTryOn.status")
            if state in ("tracking", "error"):
                break
            time.sleep(0.5)
        t0, f0, _ = d.execute_script(read)
        time.sleep(seconds)
        t1, f1, status = d.execute_script(read)
        s = d.execute_script("return shoplensTryOn")
    frames_per_s = (f1 - f0) * 1000 / max(t1 - t0, 1)
    return {
        "inference": s["inference"],
        "status": status,
        "frames_per_s": round(frames_per_s, 2),
        "page_fps": s["fps"],
        "frame_ms": s["timings"]["frame_ms"],
        "drawing_ms": s["timings"]["render_ms"],
        "tracker_ms": round(s["timings"]["frame_ms"] - s["timings"]["render_ms"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    import uvicorn

    from shoplens.config import Settings
    from tests.ar_assets.conftest import make_app
    from tests.ar_assets.wearables import y4m
    from tests.support import free_port

    rows = []
    with tempfile.TemporaryDirectory(prefix="tryon-fps-") as tmp_s:
        tmp = Path(tmp_s)
        for placement, kind, photo in CASES:
            work = tmp / kind
            work.mkdir()
            app = make_app(Settings(data_dir=work / "data"))
            app.state.ar.ingest("p", _model(kind, work), placement=placement)
            video = y4m(SHARED / "people" / photo, work / "camera.y4m")
            port = free_port()
            srv = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=srv.run, daemon=True)
            thread.start()
            while not srv.started:
                time.sleep(0.05)
            try:
                for inference in ("gpu", "cpu"):
                    load = os.getloadavg()[0]
                    result = _measure(
                        f"http://127.0.0.1:{port}",
                        video,
                        work / f"profile-{inference}",
                        args.seconds,
                        inference,
                    )
                    row = {"placement": placement, "product": kind, "photo": photo}
                    rows.append({**row, **result, "load_avg_1m": round(load, 1)})
                    print(rows[-1], flush=True)
            finally:
                srv.should_exit = True
                thread.join(timeout=10)

    lines = [
        "# Try-on tracking speed (headless Chromium, SwiftShader WebGL, fake camera)",
        "",
        f"{args.seconds:.0f} s per tracker once `tracking`; {machine()['cpus']} CPUs, shared.",
        "",
        "| tracker | product | inference | status | frames/s | page fps | frame ms | drawing ms "
        "| tracker ms | load avg |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['placement']} | {r['product']} | {r['inference']} | {r['status']} | "
            f"{r['frames_per_s']} | "
            f"{r['page_fps']} | {r['frame_ms']} | {r['drawing_ms']} | {r['tracker_ms']} | "
            f"{r['load_avg_1m']} |"
        )
    write_results(
        "tryon_fps", {"machine": machine(), "seconds": args.seconds, "rows": rows}, "\n".join(lines)
    )


if __name__ == "__main__":
    main()
