"""``shoplens doctor``: every optional capability, whether it is here, and how to get it.

The checks are :mod:`shoplens.capabilities` (the same ones the service warns
about at start-up and ``/readyz`` reports).
"""

from __future__ import annotations

import json

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings


def doctor(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """List the optional capabilities: available or not, what each enables, how to enable it.

    Exits 0 either way: a missing capability is a choice (Shoplens works without
    each), and this says what that choice costs.
    """
    from shoplens import capabilities

    settings = make_settings(data_dir)
    caps = capabilities.check(settings)
    if as_json:
        payload = {
            "capabilities": capabilities.as_json(caps),
            "degraded": [c.name for c in caps if c.degraded],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    lines = []
    for c in caps:
        mark = "ok     " if c.available else "MISSING"
        lines.append(f"[{mark}] {c.title}")
        lines.append(f"          enables: {c.enables}")
        lines.append(f"          found:   {c.found}")
        if not c.available:
            used = "this configuration uses it: " if c.used else ""
            lines.append(f"          without: {used}{c.without}")
            lines.append(f"          enable:  {c.install}")
    have = sum(c.available for c in caps)
    degraded = [c.title for c in caps if c.degraded]
    summary = f"{have} of {len(caps)} optional capabilities available"
    if degraded:
        summary += f"; missing and used by this configuration: {', '.join(degraded)}"
    lines.append(summary)
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add ``shoplens doctor`` to the ``shoplens`` app."""
    app.command("doctor")(doctor)
