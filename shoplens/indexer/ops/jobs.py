"""Admin jobs: :func:`run_index` (``reindex``) or :func:`run_learn` (``learn``, from
shoppers' photos) on a worker thread, one job at a time, state in the database.

A job is a row of the ``jobs`` table (:mod:`job_store`), so it outlives the
process running it. A service killed mid-job finds the row still ``running``
when it starts again and runs the job again: the embedding cache makes the
rerun skip every batch the killed attempt committed. A job stopped by a clean
shutdown is marked ``interrupted`` and resumed the same way.

With replicas over PostgreSQL, every replica's runner looks for work, and the
one that takes a job holds the job lock (:mod:`job_lock`, a session advisory
lock) while it runs it: one job at a time across all of them. The row names
its ``owner`` and carries a heartbeat refreshed every
``settings.replica_heartbeat_s``; a runner that finds a ``running`` row whose
heartbeat is older than ``settings.replica_stale_s`` and can take the lock (so
its owner is gone) takes the job over and resumes it, exactly as a restart
does. A runner that loses its job (its lock connection dropped, or the row
was taken over) stops at the next image and writes nothing more to the row.

The live index is only swapped when a job succeeds: :func:`run_index`
publishes its snapshot and commits its catalog rows right after as its last
steps (a job that fails before that, or is interrupted, changes nothing the
service serves), and ``on_success`` lets the service pick it up at once
instead of on its next reload tick.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoplens.config import Settings
from shoplens.errors import BadParameter, NotFound, ShoplensError
from shoplens.indexer.ops.build import run_lock
from shoplens.indexer.ops.job_lock import JobLock
from shoplens.indexer.ops.job_store import JobStore
from shoplens.indexer.ops.replicas import new_replica_id
from shoplens.models.base import ImageEmbedder

log = logging.getLogger(__name__)

MAX_REJECTS = 100  # rejects listed in a job; the rest are in its rejects file
PERSIST_EVERY_S = 1.0  # progress is written to the database at most this often
# Shared database: how often an idle runner looks for a job submitted to
# another replica or left by a dead one (a local submission wakes it at once).
POLL_S = 1.0


def read_rejects(path: str | None, limit: int = MAX_REJECTS) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a run's rejects CSV."""
    if not path:
        return []
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if len(out) >= limit:
                    break
                line = row.get("line") or "0"
                out.append(
                    {
                        "line": int(line) if line.isdigit() else 0,
                        "product_id": row.get("product_id") or None,
                        "reason": row.get("reason", ""),
                    }
                )
    except OSError:
        return []
    return out


class _Stopped(Exception):
    """Raised from the progress callback to stop a run when the runner shuts down."""


class _Progress:
    """done/total, rate and ETA of the running attempt."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self.phase = "starting"

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.phase = "embedding" if done < total else "building index"

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed if self.done else None
        eta = None
        if rate and self.total is not None:
            eta = round((self.total - self.done) / rate, 1)
        return {
            "done": self.done,
            "total": self.total,
            "rate_per_s": None if rate is None else round(rate, 2),
            "eta_s": eta,
            "phase": self.phase,
        }


class JobRunner:
    """Runs queued jobs one at a time on a daemon thread.

    ``embedder`` is the caller's loaded model (the service's); ``on_success``
    is called with the new snapshot id after a job published it; ``owner``
    names this runner in the job rows (the service's replica id).
    """

    def __init__(
        self,
        settings: Settings,
        embedder: ImageEmbedder,
        *,
        on_success: Callable[[str], object] | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.on_success = on_success
        self.owner = owner or new_replica_id()
        target = settings.database(settings.db_path)
        self.store = JobStore(target)
        self.job_lock = JobLock(target)
        self._lost = threading.Event()  # the running job is no longer ours
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running: tuple[str, _Progress] | None = None

    def start(self) -> list[str]:
        """Start the worker; jobs left unfinished by a previous process run again. Their ids."""
        resumed = self.store.requeue_unfinished()
        for job_id in resumed:
            log.info("resuming re-index job %s", job_id)
        self._thread = threading.Thread(target=self._loop, name="shoplens-jobs", daemon=True)
        self._thread.start()
        return resumed

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop at the next image: the running job becomes ``interrupted`` (resumed on start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # it still uses the store: leave it open
                log.warning("re-index job still finishing; it will be resumed on the next start")
                return
        self.job_lock.close()
        self.store.close()

    def submit(self, manifest: str, prune: bool) -> str:
        """Queue a job for ``manifest`` (a file on this machine); its id."""
        try:
            path = Path(manifest).expanduser()
            is_file, exists = path.is_file(), path.exists()
        except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, ~nosuchuser: a 400, not a 500
            raise BadParameter(f"manifest path cannot be used: {exc}") from None
        if not is_file:
            what = "does not exist" if not exists else "is not a file"
            raise BadParameter(f"manifest {manifest} {what} (on the server's file system)")
        self.store.check_idle()
        # A `shoplens index` holding the data dir: say so now rather than fail the job.
        with run_lock(self.settings):
            pass
        job_id = self.store.create(str(path.resolve()), prune)
        log.info("queued re-index job %s for %s (prune=%s)", job_id, path, prune)
        self._wake.set()
        return job_id

    def submit_learn(self) -> str:
        """Queue a learn job (``shoplens.indexer.ops.learn``); its id."""
        self.store.check_idle()
        with run_lock(self.settings):
            pass
        job_id = self.store.create("", False, kind="learn")
        log.info("queued learn job %s", job_id)
        self._wake.set()
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no re-index job {job_id}")
        with self._lock:
            running = self._running
        if running is not None and running[0] == job_id and job["state"] == "running":
            job["progress"] = running[1].as_dict()  # fresher than the persisted one
        return job

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no job is queued or running (tests, scripts)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                busy = self._running is not None
            if not busy and self.store.next_queued() is None:
                return True
            time.sleep(0.05)
        return False

    def _stale_before(self) -> float | None:
        """Running rows with no heartbeat since then are orphans (shared database only:
        on SQLite this process is the only runner, and a restart requeues them)."""
        if not self.store.shared:
            return None
        return time.time() - self.settings.replica_stale_s

    def _loop(self) -> None:
        poll = POLL_S if self.store.shared else None
        while not self._stop.is_set():
            try:
                job = self.store.next_claimable(self._stale_before())
                if job is None:
                    self._wake.wait(poll)
                    self._wake.clear()
                    continue
                if not self.job_lock.try_acquire():  # another replica runs a job
                    self._stop.wait(poll or 1.0)
                    continue
                try:
                    self._take(job)
                finally:
                    self.job_lock.release()
            except Exception:  # the runner itself must survive (e.g. the database away)
                log.exception("the job loop failed; retrying")
                self._stop.wait(1.0)

    def _take(self, found: dict[str, Any]) -> None:
        job_id = str(found["job_id"])
        # Under the lock: still claimable? (another runner may have finished it)
        job = self.store.claim(job_id, self.owner, self._stale_before())
        if job is None:
            return
        if found["state"] == "running":
            log.warning(
                "taking over %s job %s from replica %s (no heartbeat for %s s)",
                found["kind"],
                job_id,
                found["owner"],
                self.settings.replica_stale_s,
            )
        try:
            self._run(job)
        except Exception:
            log.exception("%s job %s could not be run", job["kind"], job_id)

    def _run(self, job: dict[str, Any]) -> None:
        job_id = str(job["job_id"])
        progress = _Progress()
        self._lost.clear()
        with self._lock:
            self._running = (job_id, progress)
        done = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(job_id, done), name="shoplens-job-beat", daemon=True
        )
        beat.start()
        try:
            self._attempt(job, progress)
        finally:
            done.set()
            beat.join(10.0)
            with self._lock:
                self._running = None

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        """Keep the row's heartbeat fresh; stop the job if it is no longer ours."""
        while not done.wait(self.settings.replica_heartbeat_s):
            try:
                mine = self.job_lock.alive() and self.store.heartbeat(job_id, self.owner)
            except Exception:  # the database is away: the next beat retries
                log.warning("job %s heartbeat failed", job_id, exc_info=True)
                continue
            if not mine:
                log.error("job %s is no longer run by %s; stopping it here", job_id, self.owner)
                self._lost.set()
                return

    def _attempt(self, job: dict[str, Any], progress: _Progress) -> None:
        from shoplens.indexer.ops.build import remote_fetch, run_index

        job_id = str(job["job_id"])
        last_saved = 0.0

        def on_progress(done: int, total: int) -> None:
            nonlocal last_saved
            if self._stop.is_set() or self._lost.is_set():
                raise _Stopped
            progress.update(done, total)
            now = time.monotonic()
            if now - last_saved >= PERSIST_EVERY_S or done >= total:
                last_saved = now
                self.store.set_progress(job_id, progress.as_dict(), self.owner)

        log.info("%s job %s started (attempt %d)", job["kind"], job_id, int(job["attempts"]) + 1)
        if job["kind"] == "learn":
            self._learn(job_id, progress)
            return
        try:
            with remote_fetch(self.settings) as hook:
                report = run_index(
                    self.settings,
                    Path(job["manifest"]),
                    prune=bool(job["prune"]),
                    embedder=self.embedder,
                    fetch=hook,
                    on_progress=on_progress,
                )
        except _Stopped:
            progress.phase = "interrupted"
            self.store.finish(job_id, "interrupted", progress=progress.as_dict(), owner=self.owner)
            log.info("re-index job %s interrupted; it will be resumed", job_id)
            return
        except ShoplensError as exc:
            self._fail(job_id, progress, exc.message)
            return
        except Exception as exc:
            log.exception("re-index job %s failed", job_id)
            self._fail(job_id, progress, f"unexpected error: {type(exc).__name__}: {exc}")
            return
        progress.phase = "done"
        result = {
            "counts": {
                "indexed": report.indexed,
                "unchanged": report.unchanged,
                "rejected": report.rejected,
                "removed": report.removed,
            },
            "rejects": read_rejects(report.rejects_path),
            "rejects_total": report.rejected,
            "rejects_path": report.rejects_path,
            "seconds": report.seconds,
            "run_id": report.run_id,
        }
        self._succeed(job_id, progress, report.snapshot_id, result, "re-index")
        log.info("re-index job %s succeeded: %s", job_id, report.summary_line())

    def _learn(self, job_id: str, progress: _Progress) -> None:
        from shoplens.indexer.ops.learn import run_learn

        progress.phase = "learning"
        self.store.set_progress(job_id, progress.as_dict(), self.owner)
        try:
            report = run_learn(self.settings, embedder=self.embedder)
        except ShoplensError as exc:
            self._fail(job_id, progress, exc.message)
            return
        except Exception as exc:
            log.exception("learn job %s failed", job_id)
            self._fail(job_id, progress, f"unexpected error: {type(exc).__name__}: {exc}")
            return
        progress.phase = "done"
        result = {"learn": report.to_dict(), "seconds": report.seconds}
        self._succeed(job_id, progress, report.snapshot_id, result, "learn")
        log.info("learn job %s succeeded: %s", job_id, report.summary_line())

    def _succeed(
        self, job_id: str, progress: _Progress, snapshot_id: str, result: dict[str, Any], kind: str
    ) -> None:
        # Swap the service onto the run's snapshot *and* its catalog rows (committed
        # just after the publish) before the job says "succeeded": a client that
        # polls the job and then searches must see the new catalog, never the new
        # snapshot with the old rows the reload loop may have caught in between.
        if self.on_success is not None:
            try:
                self.on_success(snapshot_id)
            except Exception:  # the reload loop picks the snapshot up anyway
                log.exception(
                    "swapping in snapshot %s after %s job %s failed", snapshot_id, kind, job_id
                )
        self.store.finish(
            job_id,
            "succeeded",
            progress=progress.as_dict(),
            result=result,
            snapshot_id=snapshot_id,
            owner=self.owner,
        )

    def _fail(self, job_id: str, progress: _Progress, message: str) -> None:
        progress.phase = "failed"
        self.store.finish(
            job_id, "failed", progress=progress.as_dict(), error=message, owner=self.owner
        )
        log.warning("re-index job %s failed: %s", job_id, message)
