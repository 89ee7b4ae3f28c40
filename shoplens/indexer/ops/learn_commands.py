"""``shoplens learn`` and the feedback lines of ``shoplens status`` (registered by
``shoplens.indexer.ops.commands``)."""

from __future__ import annotations

import json
from typing import Any

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings, one_blas_thread


def learn(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Learn from approved shopper photos: publish a snapshot of the live catalog whose
    adaptation also learns from them (a running service switches to it by itself)."""
    one_blas_thread()  # as `shoplens serve`, which runs the same job
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
