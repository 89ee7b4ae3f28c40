"""FetchHook (the indexer's fetch) on a RemoteFetcher against a real HTTP server on
127.0.0.1: order, read-ahead, cancelling, and plugged into run_index."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shoplens.indexer.sources.fetch import FetchConfig, RemoteFetcher
from shoplens.indexer.sources.fetch_hook import FetchFailed, FetchHook
from tests.indexer.sources.image_server import FAST, JPEG, JPEG_V2, PNG, ServerState, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.timeout(60)


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a guard: it fails the test after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not so after {timeout_s} s")
        time.sleep(0.01)


def test_fetch_hook_serves_the_pipeline_in_order(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    urls = [f"{base}/img/a.jpg", f"{base}/missing", f"{base}/img/b.png", f"{base}/img/a.jpg"]
    with RemoteFetcher(tmp_path, FAST) as fetcher, FetchHook(fetcher) as hook:
        hook.prefetch(urls)
        assert hook(urls[0]) == JPEG
        with pytest.raises(FetchFailed) as info:
            hook(urls[1])
        assert info.value.message == "HTTP 404"
        assert hook(urls[2]) == PNG
        assert hook(urls[3]) == JPEG  # the duplicate row is served from the same download
        assert hook(f"{base}/img/c.jpg") == JPEG_V2  # never announced: fetched on demand
        assert (hook.downloaded, hook.from_cache, hook.failed) == (4, 0, 1)
    assert state.hits["/img/a.jpg"] == 1 and state.hits["/missing"] == 1


def test_fetch_hook_runs_at_most_ahead_downloads_in_advance(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    urls = [f"{base}/wait/{i}" for i in range(12)]
    with RemoteFetcher(tmp_path, FAST) as fetcher, FetchHook(fetcher, ahead=3) as hook:
        hook.prefetch(urls)
        _until(lambda: sum(state.hits.values()) >= 3)  # the read-ahead started, then
        time.sleep(0.6)  # had long enough for far more than 3 downloads of 0.15 s
        assert sum(state.hits.values()) == 3
        assert all(hook(u) == JPEG for u in urls)
    assert sum(state.hits.values()) == 12


def test_fetch_hook_close_cancels_retrying_downloads(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    config = FetchConfig(**{**FAST.__dict__, "retries": 10})  # ~4 s of retrying if left alone
    with RemoteFetcher(tmp_path, config) as fetcher:
        hook = FetchHook(fetcher)
        hook.prefetch([f"{base}/slow"])
        _until(lambda: state.hits["/slow"] >= 2)  # the download is retrying
        hook.close()
    # close() joins the download threads: had it waited for the retries instead of
    # cancelling them, the server would have seen all 11 attempts by now.
    assert state.hits["/slow"] <= 3


def test_plugged_into_run_index(server: tuple[str, ServerState], tmp_path: Path) -> None:
    """The hook as the indexer's ``fetch``: rejects carry the reason; a rerun is all 304s."""
    from shoplens.config import Settings
    from shoplens.indexer.ops.build import run_index
    from shoplens.models.onnx_embedder import OnnxEmbedder
    from tests.indexer.engines.test_ray_engine import _tiny_model

    base, state = server
    embedder = OnnxEmbedder(_tiny_model(tmp_path / "model"))
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "product_id,image,title\n"
        f"p1,{base}/img/a.jpg,Red\n"
        f"p2,{base}/img/b.png,Green\n"
        f"p3,{base}/missing,Gone\n"
        f"p4,{base}/page.html,Html\n"
    )
    settings = Settings(data_dir=tmp_path / "data")

    def index() -> tuple[int, int, dict[int, str]]:
        with (
            RemoteFetcher(tmp_path / "fetch-cache", FAST) as fetcher,
            FetchHook(fetcher) as hook,
        ):
            hook.prefetch(  # what run_index would do with manifest.images
                [f"{base}/img/a.jpg", f"{base}/img/b.png", f"{base}/missing", f"{base}/page.html"]
            )
            report = run_index(settings, manifest, embedder=embedder, fetch=hook)
        reasons = {int(r["line"]): str(r["reason"]) for r in report.rejects_sample}
        return report.indexed, report.unchanged, reasons

    indexed, unchanged, reasons = index()
    assert (indexed, unchanged) == (2, 0)
    assert reasons[4] == f"cannot fetch {base}/missing: HTTP 404"
    assert reasons[5].startswith(f"cannot fetch {base}/page.html: not an image (got text/html")
    assert state.bodies["/img/a.jpg"] == 1

    indexed, unchanged, reasons = index()
    assert (indexed, unchanged) == (0, 2) and set(reasons) == {4, 5}
    assert state.bodies["/img/a.jpg"] == 1 and state.not_modified["/img/a.jpg"] == 1
    assert state.bodies["/img/b.png"] == 1 and state.not_modified["/img/b.png"] == 1
