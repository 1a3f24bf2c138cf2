"""nstyle tune the way users run it: in a terminal, with its progress, stopped and run again."""

from __future__ import annotations

import csv
import json
import signal

import numpy as np
import pytest
from PIL import Image

from nstyle.io import read_metadata

from ..conftest import CONTENT, STYLE
from ..terminal import Terminal
from .test_cli import run
from .test_terminal import assert_clean_stop

#: two options on each of two axes, three ratios: 11 candidates besides the preset
SPACE = """
style_weight_scale = [0.3, 1.0, 3.0]
[axes]
loss = [{}, { style_loss = "gram", style_weight = 1e3 }]
init = [{}, { init = "content" }]
"""


@pytest.fixture
def tune_args(tmp_path):
    (tmp_path / "space.toml").write_text(SPACE)
    (tmp_path / "short.toml").write_text("iterations = 12\n")
    out = tmp_path / "tuned"
    base = [str(CONTENT), str(STYLE), "-o", str(out), "--preset", "lite0", "--config", str(tmp_path / "short.toml")]
    return out, [*base, "--space", str(tmp_path / "space.toml"), "--size", "128"]


def test_tune_in_a_terminal_writes_its_four_outputs_and_its_pick_reproduces(tune_args, tmp_path, capsys):
    out, args = tune_args
    with Terminal("tune", *args, "--budget", "40") as term:
        code = term.wait(timeout=400)
    assert code == 0 and "Traceback" not in term.screen, term.screen[-3000:]
    assert "rung 1/4" in term.screen and "preset: (the preset) -> VGG16-HED: style" in term.screen
    assert "tune: searched" in term.screen and "rendered" in term.screen
    report = json.loads((out / "report.json").read_text())
    assert report["judges"] == ["VGG16-HED"]  # a Lite0 run is judged by the other network only
    trials = report["trials"]
    assert len(trials) >= 3 and sum(t["candidate"] == "preset" for t in trials) == max(t["rung"] for t in trials)
    ranks = [(-t["rung"], t["merit"]) for t in trials]
    assert ranks == sorted(ranks)  # later rungs first, then by merit
    picked = [t for t in trials if t["pick"]]
    assert len(picked) == 1 and picked[0]["candidate"] == report["pick"]
    assert all(t["candidate"] != "preset" or t["merit"] == 1 for t in trials)
    with (out / "report.csv").open() as f:
        assert [row["candidate"] for row in csv.DictReader(f)] == [t["candidate"] for t in trials]
    assert Image.open(out / "front.png").width > 128
    best = Image.open(out / "best.png")
    assert max(best.size) == 128
    # best.toml is a config the main command takes: the same settings give the same picture
    again = tmp_path / "again.png"
    code, err = run(capsys, CONTENT, STYLE, "-o", again, "--config", out / "best.toml", "--quiet")
    assert code == 0, err
    assert read_metadata(again)["config"] == read_metadata(out / "best.png")["config"]
    difference = np.abs(np.asarray(Image.open(again), float) - np.asarray(best, float))
    assert difference.mean() < 1.0, difference.mean()


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_scored_and_the_same_command_continues(tune_args):
    out, args = tune_args
    with Terminal("tune", *args, "--budget", "40") as term:
        term.wait_for(r"preset: \(the preset\) -> ", timeout=300)
        term.ctrl_c()
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGINT)
    assert "the same command again" in term.screen
    scored = (out / "trials.jsonl").read_text().splitlines()
    assert scored and json.loads(scored[0])["candidate"] == "preset"
    with Terminal("tune", *args, "--budget", "40") as term:
        code = term.wait(timeout=400)
    assert code == 0 and "continuing:" in term.screen, term.screen[-3000:]
    entries = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    keys = [e["key"] for e in entries]
    assert len(keys) == len(set(keys))  # nothing scored twice: the first call's trials were kept
    assert (out / "best.png").exists() and (out / "report.json").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--budget", "-5"], "budget: -5"),
        (["--budget", "nan"], "budget: nan"),
        (["--preset", "nope"], "preset"),
    ],
)
def test_bad_tune_input_is_one_line(tmp_path, capsys, extra, words):
    code, err = run(capsys, "tune", CONTENT, STYLE, "-o", tmp_path / "t", *extra, "--quiet")
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_a_missing_photo_or_another_tune_in_the_folder_is_refused(tmp_path, capsys):
    code, err = run(capsys, "tune", tmp_path / "missing.jpg", STYLE, "-o", tmp_path / "t", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "content image not found" in err, err
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tune.json").write_text(json.dumps({"identity": {"preset": "hed"}, "spent": 3.0}))
    code, err = run(capsys, "tune", CONTENT, STYLE, "-o", tmp_path / "t", "--quiet", "--preset", "lite0")
    assert code == 2 and err.count("\n") == 1 and "holds another tune" in err, err
