"""MkDocs hook: fills the reference pages from the code at build time, so they cannot go stale.

docs/configuration.md and docs/cli.md hold a marker comment where the generated reference goes
(`topicli.cli.reference`); everything around the marker is written by hand.
"""

from __future__ import annotations

from typing import Any

from topicli.cli.reference import commands_markdown, settings_markdown

GENERATED = {"<!-- generated: settings -->": settings_markdown, "<!-- generated: commands -->": commands_markdown}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, render in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
