"""Pages made at build time (mkdocs-gen-files): the CLI reference from the parser itself, and the
benchmark tables from ``benchmarks/results/*.json``, so neither can drift from what they describe."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]


def command_help(argv: list[str]) -> str:
    """What ``nstyle ARGV --help`` prints, at a fixed width."""
    from nstyle.cli import main

    os.environ["COLUMNS"] = "100"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue().rstrip()


def cli_page() -> str:
    from nstyle.cli import COMMANDS

    parts = [
        "# Command line\n",
        "Generated from the parser at build time: what `--help` prints.\n",
        "## nstyle\n",
        f"```text\n{command_help([])}\n```\n",
    ]
    for command in COMMANDS:
        parts += [f"## nstyle {command}\n", f"```text\n{command_help([command])}\n```\n"]
    return "\n".join(parts)


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def benchmarks_page() -> str:
    parts = [
        "# Benchmark results\n",
        "Rendered from `benchmarks/results/*.json`, which the benchmark scripts write; each names the "
        "machine it ran on and when. Compare figures only within one file: the CPU changes between runs.\n",
    ]
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    if not files:
        parts.append("No results recorded yet: run a script in `benchmarks/`.\n")
    for path in files:
        data = json.loads(path.read_text())
        parts.append(f"## {data.get('title', path.stem)}\n")
        parts.append(
            f"`benchmarks/{data.get('script', path.stem + '.py')}` on {data.get('cpu', '?')}, "
            f"{data.get('date', '?')}; {', '.join(f'{k} {v}' for k, v in data.get('versions', {}).items())}.\n"
        )
        rows = data.get("rows", [])
        if rows:
            columns = list(rows[0])
            parts.append("| " + " | ".join(columns) + " |")
            parts.append("|" + " --- |" * len(columns))
            parts += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
            parts.append("")
        if data.get("summary"):
            parts.append(f"**{data['summary']}**\n")
    return "\n".join(parts)


with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
with mkdocs_gen_files.open("reference/benchmarks.md", "w") as f:
    f.write(benchmarks_page())
