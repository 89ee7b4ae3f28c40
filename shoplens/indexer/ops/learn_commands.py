"""``shoplens learn`` and the feedback lines of ``shoplens status`` (registered by
``shoplens.indexer.ops.commands``)."""

from __future__ import annotations

import json
import os
from typing import Any

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings


def learn(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Learn from approved shopper photos: publish a snapshot of the live catalog whose
    adaptation also learns from them (a running service switches to it by itself)."""
    # One OpenBLAS thread, as `shoplens serve` runs the same job (one_blas_thread):
    # with its spin-waiting threads the fit took ~40 s instead of 1.6 s on a busy
    # 2-core box. Before numpy loads; an operator's setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from shoplens.indexer.ops.learn import run_learn

    settings = make_settings(data_dir)
    report = run_learn(settings)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(report.summary_line())


def feedback_lines(stats: dict[str, Any] | None) -> list[str]:
    """``shoplens status`` lines for the feedback numbers (none before any search)."""
    if stats is None:
        return []

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    ev, ph = stats["events"], stats["photos"]
    learning = (
        "on" + (", review" if stats["review"] else "") if stats["learn_from_feedback"] else "off"
    )
    return [
        f"feedback   last {stats['window_hours']:g} h: {stats['searches']} searches, "
        f"{ev['click']} clicks ({pct(stats['click_through_rate'])}), {ev['confirm']} confirms "
        f"({pct(stats['confirm_rate'])}), {ev['purchase']} purchases",
        f"shoppers   learning {learning}: {ph['pending']} photos pending review, "
        f"{ph['approved']} approved ({stats['learnt']} learnt), {ph['rejected']} rejected",
    ]
