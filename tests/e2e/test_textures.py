"""Textures, seamless pictures and the look size, the way users run them."""

from __future__ import annotations

import random
import signal

import pytest
from PIL import Image

from nstyle.io import read_metadata
from nstyle.wrap import seam_score

from ..conftest import CONTENT, STYLE
from ..terminal import Terminal
from .test_cli import run
from .test_terminal import assert_clean_stop, resume_in_terminal, stop_at_random

TINY = ["--weights", "random:0", "--size", "64", "--seed", "1"]


def test_a_texture_in_a_terminal_is_the_painting_alone_and_says_so_in_its_record(tmp_path):
    out = tmp_path / "texture.png"
    with Terminal("texture", str(STYLE), "-o", str(out), *TINY, "--iterations", "4", "--tileable") as term:
        code = term.wait()
    assert code == 0 and "Traceback" not in term.screen, term.screen[-2000:]
    assert Image.open(out).size == (64, 64)
    record = read_metadata(out)
    assert record["content"] == {"texture": [64, 64]}
    assert record["config"]["content_weight"] == 0 and record["config"]["init"] == "noise"
    assert record["config"]["tileable"] == "wrap"
    assert record["config"]["style_scale"] == pytest.approx(4.0)  # the 640 px sample at its own size, capped at 4


@pytest.mark.slow
def test_ctrl_c_in_a_texture_keeps_it_and_resume_finishes_it(tmp_path):
    out, total = tmp_path / "texture.png", 40
    with Terminal("texture", str(STYLE), "-o", str(out), *TINY, "--iterations", str(total)) as term:
        stop_at_random(term, random.Random(3), total, term.ctrl_c)
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGINT)
    assert 0 < read_metadata(out)["result"]["iterations_run"] < total
    resume_in_terminal(tmp_path / "texture.ckpt.npz", out, total)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["texture", "missing.jpg", "-o", "t.png"], "style image not found"),
        (["texture", STYLE, "-o", "t.png", "--preset", "lite0", "--tileable", "roll"], "tileable: roll"),
        (["texture", STYLE, "-o", "t.png", "--look-size", "5"], "look_size: 5 must be between"),
    ],
)
def test_bad_texture_input_is_one_line(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *argv, "--quiet")
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "t.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("size, tile", [(128, 0), (256, 128)])
def test_a_tileable_texture_wraps_where_an_ordinary_one_does_not(size, tile):
    """lite0, whole and in 2x2 tiles of 128 px (as benchmarks/tileable.py runs them): the seam
    metric of --tileable is near 1, lower than without it."""
    import nstyle

    def texture(mode: str) -> float:
        result = nstyle.texture(STYLE, size=size, preset="lite0", iterations=40, seed=0, tile=tile, tileable=mode)
        return seam_score(result.image)

    wrapped, plain = texture("wrap"), texture("off")
    assert wrapped < 0.8 * plain and wrapped < 1.5, (wrapped, plain)


def test_a_look_size_runs_coarse_to_fine_from_it(tmp_path, capsys):
    out = tmp_path / "out.png"
    code, err = run(capsys, CONTENT, STYLE, "-o", out, *TINY, "--iterations", "2", "--look-size", "40", "--quiet")
    assert code == 0, err
    record = read_metadata(out)
    assert [max(s["height"], s["width"]) for s in record["result"]["memory"]["steps"]] == [40, 51, 64]
    assert record["result"]["iterations_run"] == 6


def test_a_tileable_photo_wraps_more_than_the_same_run_without(tmp_path):
    import nstyle

    scores = {}
    for mode in ("off", "wrap"):
        result = nstyle.stylize(CONTENT, STYLE, preset="lite0", size=96, iterations=12, seed=0, tileable=mode)
        scores[mode] = seam_score(result.image)
    # the photo is made to wrap (nstyle.wrap.seamless) and the network sees it repeat
    assert scores["wrap"] < 0.5 * scores["off"] and scores["wrap"] < 1.5, scores


@pytest.mark.slow
def test_roll_offsets_follow_the_seed():
    """--tileable roll draws its offsets from --seed: the same seed, the same picture; from the
    same start (a blank canvas), another seed rolls otherwise and paints another picture."""
    import numpy as np

    import nstyle

    def texture(seed: int) -> np.ndarray:
        options = {"weights": "random:0", "size": 64, "iterations": 3, "seed": seed, "tileable": "roll"}
        return np.asarray(nstyle.texture(STYLE, preset="seed", init="content", **options).image, np.float32)

    first, again, other = texture(1), texture(1), texture(2)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.5
