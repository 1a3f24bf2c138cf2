"""Pages made at build time (mkdocs-gen-files): the CLI reference from the parser itself, and the
benchmark tables from ``benchmarks/results/*.json``, so neither can drift from what they describe."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).parent))
import results_tables  # noqa: E402


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


def benchmarks_page() -> str:
    parts = [
        "# Benchmark results\n",
        "Rendered from `benchmarks/results/*.json`, which the benchmark scripts write; each names the "
        "machine it ran on and when. Compare figures only within one file: the CPU changes between runs.\n",
    ]
    for name in results_tables.names():
        parts += [f"## {results_tables.title(name)} {{#{name.replace('_', '-')}}}\n", results_tables.render(name)]
    return "\n".join(parts)


with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
with mkdocs_gen_files.open("reference/benchmarks.md", "w") as f:
    f.write(benchmarks_page())
