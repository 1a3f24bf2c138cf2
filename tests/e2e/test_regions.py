"""Masks and the histogram term the way users run them: in a terminal, tiled, in video, on every backend.

What a masked run must give: the photo, pixel for pixel, wherever every mask is black (at the
output's size), and a styled picture inside the regions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nstyle.backends import NAMES, is_installed
from nstyle.io import fit, load_image, read_metadata
from nstyle.regions import load_regions

from ..conftest import SAMPLES, STYLE, cli_args
from ..terminal import Terminal

ROCKET = SAMPLES / "content" / "rocket.jpg"
SCREAM = SAMPLES / "style" / "the_scream.jpg"
SKY = SAMPLES / "masks" / "rocket_sky.png"
GROUND = SAMPLES / "masks" / "rocket_ground.png"
TINY = "--weights random:0 --size 64 --iterations 4 --seed 1"


def kept_and_styled(image: Image.Image, masks: list[Path], styles: int = 1) -> tuple[int, float]:
    """Largest difference from the photo where the regions are exactly 0, and the mean
    difference where they are 1 (RGB levels)."""
    size = image.size
    regions = load_regions(None, [str(m) for m in masks], styles, (), load_image(ROCKET).size).resized(size)
    union = regions.union
    photo = np.asarray(fit(load_image(ROCKET), max(size)), np.int16)
    diff = np.abs(np.asarray(image, np.int16) - photo)
    assert (union == 0).sum() > 50 and (union == 1).sum() > 50
    return int(diff[union == 0].max()), float(diff[union == 1].mean())


def test_a_masked_run_in_a_terminal_keeps_the_photo_where_the_mask_is_black(tmp_path):
    out = tmp_path / "out.png"
    with Terminal(*cli_args(out, f"{TINY} --mask {SKY}", content=ROCKET)) as term:
        code = term.wait()
    assert code == 0 and "Traceback" not in term.screen, term.screen[-2000:]
    kept, styled = kept_and_styled(Image.open(out), [SKY])
    assert kept == 0 and styled > 5
    record = read_metadata(out)
    assert record["config"]["mask"] == str(SKY.resolve()) and len(record["masks"]) == 1


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_tiled_run_with_two_styles_paints_each_region_and_keeps_none_outside(workers):
    import nstyle

    result = nstyle.stylize(
        ROCKET,
        [STYLE, SCREAM],
        weights="random:0",
        size=96,
        iterations=8,
        tile=64,
        seed=2,
        mask=str(SKY),
        style_masks=[str(SKY), str(GROUND)],
        workers=workers,
    )
    assert result.memory["steps"][0]["tile"] == 64
    kept, styled = kept_and_styled(result.image, [SKY], 1)  # the mask's black: the photo, whatever the style masks
    assert kept == 0 and styled > 5


def test_gram_plus_histogram_with_two_region_styles_runs_whole(tmp_path):
    import nstyle

    result = nstyle.stylize(
        ROCKET,
        [STYLE, SCREAM],
        weights="random:0",
        size=64,
        iterations=3,
        style_loss="gram+histogram",
        histogram_weight=2.0,
        style_masks=[str(SKY), str(GROUND)],
    )
    assert np.isfinite(result.best_loss) and result.config.style_loss == "gram+histogram"
    assert {"content", "style"} <= set(result.history[-1])


@pytest.mark.slow
def test_one_mask_serves_every_frame_of_a_video(tmp_path, capsys):
    from nstyle.cli import main

    clip = SAMPLES.parent / "video" / "pan.mp4"
    frames_out = tmp_path / "frames"
    mask = tmp_path / "left.png"
    half = np.zeros((30, 40), np.uint8)
    half[:, 20:] = 255
    Image.fromarray(half).save(mask)
    args = ["video", clip, STYLE, "-o", frames_out, *TINY.split(), "--max-frames", "3", "--mask", mask, "--quiet"]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    from nstyle.video.frames import read_clip

    photos = read_clip(clip, 64, 3).frames
    for photo, path in zip(photos, sorted(frames_out.glob("frame_*.png"))):
        frame = np.asarray(Image.open(path).convert("RGB"), np.int16)
        left = frame.shape[1] // 2 - 4  # the mask's black half, clear of the bilinear edge
        assert np.abs(frame[:, :left] - photo[: frame.shape[0], :left]).max() == 0
        assert np.abs(frame[:, -left:] - photo[: frame.shape[0], -left:]).mean() > 5


@pytest.mark.slow
@pytest.mark.parametrize("backend", [n for n in NAMES if is_installed(n)])
def test_masks_and_the_histogram_term_run_on_every_backend(backend, tmp_path):
    out = tmp_path / "out.png"
    flags = f"{TINY} --mask {SKY} --style-loss gram+histogram --backend {backend} --quiet"
    proc = subprocess.run(
        [sys.executable, "-m", "nstyle", *cli_args(out, flags, content=ROCKET)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    kept, styled = kept_and_styled(Image.open(out), [SKY])
    assert kept == 0 and styled > 5
    assert read_metadata(out)["result"]["backend"] == backend
