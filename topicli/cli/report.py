"""`topicli report`: one self-contained HTML page of a run, and its charts as PNG on request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topicli.cli.common import ConfigOption, chosen_run, command_group, console, progress_bar, settings_for
from topicli.report import MAP_POINTS
from topicli.runs.guard import check_files, run_files

report_app = command_group()


@report_app.command()
def report(
    run: Annotated[
        Path | None, typer.Option("--run", help="run folder to report on (default: the most recent run)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default: report.html in the run folder)")
    ] = None,
    posts: Annotated[
        Path | None, typer.Option("--posts", help="the run's posts output, where `-o` put it outside the run folder")
    ] = None,
    png: Annotated[Path | None, typer.Option("--png", help="also write the charts as PNG files in this folder")] = None,
    max_points: Annotated[
        int, typer.Option("--max-points", help="most posts drawn on the map (a random sample beyond)")
    ] = MAP_POINTS,
    config: ConfigOption = None,
) -> None:
    """Write one self-contained HTML page of a run: topic sizes, a map of the posts, examples, candidates."""
    from topicli.io import check_writable
    from topicli.report.data import build_report
    from topicli.report.html import write_page
    from topicli.report.png import PNG_FILES, write_pngs

    settings = settings_for(config)
    folder = chosen_run(run, settings)
    path = output or folder / "report.html"
    keep = run_files(settings, folder, own=(folder / "report.html",))
    check_writable(path, "-o" if output else "the run folder", inputs=(posts,) if posts else (), keep=keep)
    if png:
        check_files(settings, png, PNG_FILES, "--png")
    page = build_report(folder, settings, posts, max_points, progress_bar)
    write_page(page, path)
    console.print(f"wrote {path}: {len(page.topics)} topics, {len(page.map.xy):,} of {page.map.total:,} posts mapped")
    for written in write_pngs(page, png) if png else []:
        console.print(f"wrote {written}")
