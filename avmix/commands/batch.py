"""``avmix batch JOBS -o OUTDIR``: many generate jobs on a local process pool or on Ray."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from avmix.errors import AvmixError
from avmix.progress import Bar


class Engine(str, Enum):
    local = "local"
    ray = "ray"


def register(app: typer.Typer) -> None:
    app.command("batch", help="Render many generate jobs from a JSONL or CSV file.")(batch_command)


def batch_command(
    jobs: Path = typer.Argument(..., help="Jobs file: JSONL (one object per line) or CSV (header row; "
                                          "list items separated by ';').", show_default=False),
    outdir: Path = typer.Option(..., "--output", "-o", help="Output directory (created if missing).",
                                rich_help_panel="Output", show_default=False),
    engine: Engine = typer.Option(Engine.local, "--engine", help="Where jobs run: a local process pool or Ray.",
                                  rich_help_panel="Performance"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1,
                                          help="Parallel jobs (default: CPU cores).", rich_help_panel="Performance"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local "
                                          "Ray).", rich_help_panel="Performance"),
    force: bool = typer.Option(False, "--force", help="Rerun jobs that are already complete, and replace existing "
                               "outputs that batch did not make.",
                               rich_help_panel="Output"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout.",
                                 rich_help_panel="Output"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel="Output"),
) -> int:
    from avmix.batch import batch

    with Bar(quiet=quiet or as_json) as bar:
        summary = batch(jobs, outdir, engine=engine.value, workers=workers, address=address, force=force,
                        progress=bar)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _table(summary)
    if summary["failed"]:
        raise AvmixError(failure_line(summary))
    return 0


def failure_line(summary: dict) -> str:
    """``N of M jobs failed: OUTPUT (line L): ERROR`` for the first failed job, on one line."""
    first = next(r for r in summary["jobs"] if r["status"] == "failed")
    error = " ".join((first["error"] or "failed").split())
    return (f"{summary['failed']} of {len(summary['jobs'])} jobs failed: {first['output']} (line {first['line']}): "
            f"{error}")


def _table(summary: dict) -> None:
    console = Console(highlight=False)
    table = Table(title=f"avmix batch ({summary['engine']}, {summary['workers']} workers)")
    for col, just in (("line", "right"), ("output", "left"), ("status", "left"), ("time", "right"),
                      ("error", "left")):
        table.add_column(col, justify=just, overflow="fold")
    style = {"ok": "green", "skipped": "cyan", "failed": "red"}
    for r in summary["jobs"]:
        t = f"{r['elapsed']:.1f} s" if r["elapsed"] is not None else "-"
        table.add_row(str(r["line"]), escape(r["output"]), f"[{style[r['status']]}]{r['status']}[/]", t,
                      escape(r["error"] or ""))
    console.print(table)
    console.print(f"{summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed "
                  f"in {summary['elapsed']:.1f} s; details in {Path(summary['outdir']) / 'batch.json'}")
