"""Benchmark figures as Markdown, from ``benchmarks/results/*.json``: the guides' tables
(through ``docs/hooks.py``) and the benchmark results page (through ``docs/gen_pages.py``)
are rendered by this one function, so no figure in the docs is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value).replace("|", "\\|")


def provenance(data: dict) -> str:
    """Which script measured the figures, on what, when, with which versions."""
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    line = f"`benchmarks/{data['script']}` on {data.get('cpu', '?')}, {data.get('date', '?')}"
    line += f"; {versions}." if versions else "."
    if data.get("source"):
        line += f" {data['source']}"
    return line


def table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def render(name: str) -> str:
    """One results file as a caption, its table and its summary line."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no benchmark results {path}: run benchmarks/{name}.py")
    data = json.loads(path.read_text())
    parts = [f"*{provenance(data)}*", ""]
    if data.get("rows"):
        parts += [*table(data["rows"]), ""]
    if data.get("summary"):
        parts += [f"`{data['summary']}`", ""]
    return "\n".join(parts)


def names() -> list[str]:
    return sorted(p.stem for p in RESULTS.glob("*.json"))


def title(name: str) -> str:
    return json.loads((RESULTS / f"{name}.json").read_text()).get("title", name)
