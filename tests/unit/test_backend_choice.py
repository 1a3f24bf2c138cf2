"""Choosing the Keras backend: one clear line for a wrong or impossible choice."""

import pytest

from nstyle.backends import NAMES, current, select
from nstyle.cli import main
from nstyle.config import resolve
from nstyle.errors import ConfigError

from ..conftest import cli_args


def test_an_unknown_backend_is_refused_by_name():
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        select("nope")
    with pytest.raises(ConfigError, match="backend"):
        resolve("default", overrides={"backend": "nope"})


def test_another_backend_than_the_one_keras_runs_on_needs_a_new_process():
    running = current()
    assert select(None) == running and select(running) == running
    other = next(name for name in NAMES if name != running)
    with pytest.raises(ConfigError, match=f"Keras already runs on {running}"):
        select(other)


def test_the_cli_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(cli_args(out, "--backend nope --quiet")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backend" in err and "nope" in err
    assert not out.exists()
