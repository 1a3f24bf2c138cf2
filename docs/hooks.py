"""MkDocs hook: a line ``<!-- results: NAME -->`` in a page becomes the table of
``benchmarks/results/NAME.json`` (see ``results_tables.py``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results_tables import render  # noqa: E402

MARKER = re.compile(r"^<!-- results: ([\w-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: object) -> str:
    return MARKER.sub(lambda m: render(m.group(1)), markdown)
