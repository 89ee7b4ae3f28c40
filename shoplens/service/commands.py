"""``shoplens serve`` and ``shoplens demo`` (registered by shoplens.cli).

Heavy modules (FastAPI, ONNX Runtime, FAISS) are imported inside the commands
so that ``shoplens --help`` stays fast.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shoplens.cli_options import DataDirOption, make_settings, one_blas_thread
from shoplens.errors import BadParameter

if TYPE_CHECKING:
    from shoplens.config import Settings

log = logging.getLogger(__name__)

# Written into the data dir after the demo catalog is indexed: the hash of the
# demo manifest it was built from. Its presence also marks the data dir as a
# demo one, so `shoplens demo` never prunes a real catalog.
DEMO_MARKER = "demo-manifest.sha256"

_Host = Annotated[
    str | None,
    typer.Option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for phones)."),
]
_Port = Annotated[int | None, typer.Option("--port", help="TCP port (default 8000).")]
_AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        help="Bearer token for the admin routes (default: SHOPLENS_ADMIN_TOKEN, "
        "else a random one, printed at start-up).",
        show_default=False,
    ),
]


def run_server(settings: Settings) -> None:
    """Serve until interrupted (one process: the model and index live in memory)."""
    import uvicorn

    from shoplens.service.app import create_app

    typer.echo(f"shoplens: serving on http://{settings.host}:{settings.port}/", err=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the CLI's logging configuration
        access_log=False,  # shoplens.access logs each request once, with its request id
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


def _manifest_hash(path: Path, model: str) -> str:
    """Hash of the demo manifest, every photo it names and the model: a changed photo
    or another configured model re-indexes (a snapshot of another model cannot serve)."""
    h = hashlib.sha256(path.read_bytes())
    h.update(model.encode())
    for photo in sorted((path.parent / "images").glob("*.jpg")):
        h.update(photo.name.encode())
        h.update(hashlib.sha256(photo.read_bytes()).digest())
    return h.hexdigest()


def ensure_demo_index(settings: Settings, *, progress: bool = False) -> bool:
    """Index the bundled demo catalog unless the data dir already serves it; True if indexed."""
    from shoplens import demo
    from shoplens.indexer.ops.build import run_index
    from shoplens.indexer.serving.snapshot import current_id

    manifest = demo.manifest_path()
    marker = settings.data_dir / DEMO_MARKER
    wanted = _manifest_hash(manifest, settings.model)
    has_snapshot = current_id(settings) is not None
    built_from = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if has_snapshot and built_from == wanted:
        return False
    if has_snapshot and built_from is None:
        log.warning(
            "%s already holds a catalog that is not the demo one: serving it as it is",
            settings.data_dir,
        )
        return False
    typer.echo(f"shoplens: indexing the demo catalog into {settings.data_dir} ...", err=True)
    report = run_index(settings, manifest, prune=True, progress=progress)
    typer.echo(f"shoplens: {report.summary_line()}", err=True)
    marker.write_text(wanted + "\n", encoding="utf-8")
    return True


def serve(host: _Host = None, port: _Port = None, data_dir: DataDirOption = None) -> None:
    """Run the HTTP service (search, products, images, metrics, the demo page)."""
    one_blas_thread()
    run_server(make_settings(data_dir, host=host, port=port))


def demo_settings(
    data_dir: Path | None, host: str | None, port: int | None, admin_token: str | None
) -> tuple[Settings, str]:
    """The demo's settings, always with an admin token, and where that token came from.

    The demo exists to be tried, admin routes included (AR uploads, product edits,
    re-index jobs), so it never runs with them disabled: without ``--admin-token``
    or ``SHOPLENS_ADMIN_TOKEN`` it makes a random token for this run and says so.
    """
    from pydantic import SecretStr

    if admin_token is not None and (not admin_token or any(c.isspace() for c in admin_token)):
        raise BadParameter("--admin-token must be a non-empty token without spaces")
    settings = make_settings(data_dir, host=host, port=port, admin_token=admin_token)
    if admin_token is not None:
        return settings, "--admin-token"
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        return settings, "SHOPLENS_ADMIN_TOKEN"
    # 128 bits: the demo may listen on 0.0.0.0 for phones; a guessable token would not do.
    token = SecretStr(secrets.token_urlsafe(16))
    return settings.model_copy(update={"admin_token": token}), "generated"


def demo_banner(settings: Settings, token_source: str) -> str:
    """What ``shoplens demo`` prints before serving: where to look and how to be admin."""
    assert settings.admin_token is not None  # demo_settings always sets one
    url = f"http://{settings.host}:{settings.port}"
    if token_source == "generated":
        token = settings.admin_token.get_secret_value()
        how = f"{token}  (random, for this run; --admin-token TOKEN picks your own)"
    else:
        token = "$TOKEN"
        how = f"the one given with {token_source}"
    return (
        f"shoplens: demo page {url}/ , API docs {url}/docs\n"
        f"shoplens: admin token: {how}\n"
        f"shoplens: admin calls: curl -H 'Authorization: Bearer {token}' ...  "
        "(README: For app developers)"
    )


def demo(
    host: _Host = None,
    port: _Port = None,
    data_dir: DataDirOption = None,
    admin_token: _AdminToken = None,
) -> None:
    """Index the bundled demo catalog if needed, then serve it with the demo page at /."""
    one_blas_thread()
    settings, token_source = demo_settings(data_dir, host, port, admin_token)
    ensure_demo_index(settings, progress=sys.stderr.isatty())
    typer.echo(demo_banner(settings, token_source), err=True)
    run_server(settings)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``shoplens`` app."""
    app.command("serve")(serve)
    app.command("demo")(demo)
