"""Stopping runs the way users do: in a terminal, progress bar on, Ctrl-C, ``kill``, a closed window.

Each run is ``nstyle`` in a pseudo-terminal (:mod:`tests.terminal`) without ``--quiet``, stopped
at a seeded random moment. What a stop must leave: exit 128 + the signal, no traceback, no
temporary or lock file; once an iteration has run, a valid image with its record, and a
checkpoint that resumes to the requested iteration count; before that, one line saying
nothing was computed, and no file at all. The default suite runs a few; the rest of the
matrix is marked ``slow`` (``.ci/run`` runs it).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nstyle.io import read_metadata
from nstyle.outcome import Ending, Outcome

from ..conftest import CONTENT, SAMPLES, STYLE, cli_args
from ..terminal import Terminal, iterations_shown

ROCKET = SAMPLES / "content" / "rocket.jpg"
SCREAM = SAMPLES / "style" / "the_scream.jpg"
TINY = ["--weights", "random:0", "--size", "64", "--seed", "1"]


def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """The photo and painting copied beside the run, so that the folder holds only what the run made besides."""
    folder = tmp_path / "in"
    folder.mkdir()
    return Path(shutil.copy(CONTENT, folder)), Path(shutil.copy(STYLE, folder))


def assert_clean_stop(term: Terminal, code: int, signum: int) -> None:
    assert code == 128 + signum, term.screen[-2000:]
    assert "Traceback" not in term.screen and "Error" not in term.screen, term.screen[-3000:]


def assert_no_leftovers(folder: Path) -> None:
    """No temporary file, no lock: every name is a finished output."""
    left = [p.name for p in folder.rglob("*") if p.name.startswith(".")]
    assert not left, f"left behind: {left}"


def stop_at_random(term: Terminal, rng: random.Random, total: int, stop) -> None:  # noqa: ANN001
    """Once the bar shows a first iteration, wait a seeded random moment, then ``stop()``."""
    term.wait_for(rf"[1-9]\d*/{total} \[")
    time.sleep(rng.uniform(0.0, 1.5))
    stop()


def assert_stopped_picture(out: Path, signum: int, total: int) -> dict:
    """The picture a signal left: a whole image whose record says the signal stopped it mid-run."""
    Image.open(out).load()
    record = read_metadata(out)["result"]
    assert Outcome.from_record(record) == Outcome.by_signal(signum)
    assert 0 < record["iterations_run"] < total
    assert np.isfinite(record["best_loss"])
    return record


def resume_in_terminal(ckpt: Path, out: Path, total: int) -> None:
    """``nstyle resume`` in a terminal, to the end: the requested count, no checkpoint left."""
    with Terminal("resume", str(ckpt)) as term:
        code = term.wait()
    assert code == 0, term.screen[-2000:]
    assert term.lines()[-1].startswith(f"wrote {out} (best loss")
    record = read_metadata(out)["result"]
    assert record["iterations_run"] == total and Outcome.from_record(record) == Outcome()
    assert not ckpt.exists()


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_picture_and_resume_finishes_it(tmp_path):
    """The default preset (L-BFGS), as the README's first command runs it."""
    content, style = inputs(tmp_path)
    out, ckpt, total = tmp_path / "out.png", tmp_path / "out.ckpt.npz", 400
    with Terminal(str(content), str(style), "-o", str(out), *TINY, "--iterations", str(total)) as term:
        stop_at_random(term, random.Random(25), total, term.ctrl_c)
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGINT)
    record = assert_stopped_picture(out, signal.SIGINT, total)
    last = term.lines()[-1]
    assert last.startswith(f"nstyle: stopped by SIGINT at iteration {record['iterations_run']}/{total}")
    assert f"wrote the best image so far (best loss {record['best_loss']:.4g}" in last and ckpt.name in last
    assert iterations_shown(term, total) > 0  # the bar was drawn, as on a terminal
    assert_no_leftovers(tmp_path)
    resume_in_terminal(ckpt, out, total)
    assert_no_leftovers(tmp_path)


def test_ctrl_c_stops_a_run_that_started_with_sigint_ignored(tmp_path):
    """A background job of a non-interactive shell (`nstyle ... &` in a script, some launchers)
    starts with SIGINT ignored; Ctrl-C must still stop it and keep the picture (it once did
    nothing, and the run was killed with its work lost)."""
    content, style = inputs(tmp_path)
    out, total = tmp_path / "out.png", 3000
    with Terminal(
        *cli_args(out, f"--preset seed --iterations {total}", content=content, style=style),
        *TINY,
        ignored=(signal.SIGINT,),
    ) as term:
        stop_at_random(term, random.Random(24), total, term.ctrl_c)
        code = term.wait(timeout=60)
    assert_clean_stop(term, code, signal.SIGINT)
    assert_stopped_picture(out, signal.SIGINT, total)
    assert_no_leftovers(tmp_path)


def test_a_signal_while_tensorflow_loads_says_nothing_was_computed(tmp_path):
    content, style = inputs(tmp_path)
    out = tmp_path / "out.png"
    with Terminal(str(content), str(style), "-o", str(out), *TINY, "--iterations", "400") as term:
        time.sleep(random.Random(5).uniform(0.5, 1.5))  # TensorFlow takes seconds to import
        term.kill(signal.SIGTERM)
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGTERM)
    assert "device:" not in term.screen  # it was still loading
    assert term.lines() == ["nstyle: stopped by SIGTERM before anything was computed; nothing was written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing written, nothing half-written


@pytest.mark.slow
def test_an_lbfgs_early_stop_writes_the_picture_and_says_why(tmp_path):
    """Content = style, started at the content: nothing to do, so L-BFGS stops at once by construction."""
    out = tmp_path / "same.png"
    with Terminal(
        str(STYLE), str(STYLE), "-o", str(out), *TINY, "--iterations", "50", "--optimizer", "lbfgs", "--init", "content"
    ) as term:
        code = term.wait()
    assert code == 0, term.screen[-2000:]
    record = read_metadata(out)["result"]
    outcome = Outcome.from_record(record)
    assert outcome.ending in (Ending.CONVERGED, Ending.NO_PROGRESS) and record["iterations_run"] < 50
    last = term.lines()[-1]
    assert last.startswith(f"wrote {out} (best loss") and last.endswith(
        f"{outcome.describe()} after {record['iterations_run']} of 50 iterations"
    )
    assert f"stylizing ({outcome.describe()})" in term.screen  # the bar says it too
    Image.open(out).load()


def test_stylize_with_a_progress_bar_and_a_callback_that_stops(capsys):
    from nstyle import Stop, stylize

    def stop_at_3(p) -> None:  # noqa: ANN001
        if p.iteration == 3:
            raise Stop("the test")

    result = stylize(
        CONTENT,
        STYLE,
        preset="seed",
        weights="random:0",
        size=48,
        iterations=50,
        seed=0,
        progress=True,
        callbacks=[stop_at_3],
    )
    assert result.outcome == Outcome(Ending.CALLBACK, "the test") and len(result.history) == 3
    assert result.metadata()["result"]["outcome"] == {"ending": "callback", "detail": "the test", "where": ""}
    err = capsys.readouterr().err
    assert "stylizing (stopped by the test)" in err and " 3/50 " in err


# --- the rest of the matrix -------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_adam_and_resume_finishes_it(tmp_path):
    content, style = inputs(tmp_path)
    out, ckpt, total = tmp_path / "out.png", tmp_path / "out.ckpt.npz", 600
    with Terminal(
        str(content), str(style), "-o", str(out), "--preset", "seed", *TINY, "--iterations", str(total)
    ) as term:
        stop_at_random(term, random.Random(26), total, lambda: term.kill(signal.SIGTERM))
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGTERM)
    assert_stopped_picture(out, signal.SIGTERM, total)
    assert term.lines()[-1].startswith("nstyle: stopped by SIGTERM at iteration")
    assert_no_leftovers(tmp_path)
    resume_in_terminal(ckpt, out, total)


@pytest.mark.slow
def test_closing_the_terminal_keeps_the_picture(tmp_path):
    """SIGHUP from a closed window: the terminal is gone, so the last line cannot be written, yet the
    picture, its record and the checkpoint are, and the exit status says SIGHUP."""
    content, style = inputs(tmp_path)
    out, ckpt, total = tmp_path / "out.png", tmp_path / "out.ckpt.npz", 800
    with Terminal(str(content), str(style), "-o", str(out), *TINY, "--iterations", str(total)) as term:
        stop_at_random(term, random.Random(27), total, term.close)
        code = term.wait()
    assert code == 128 + signal.SIGHUP
    assert_stopped_picture(out, signal.SIGHUP, total)
    assert_no_leftovers(tmp_path)
    resume_in_terminal(ckpt, out, total)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_in_a_tiled_run_keeps_its_tiles_and_resumes(tmp_path, workers):
    """With workers, Ctrl-C reaches them too (one process group): they leave the stop to nstyle."""
    content, style = inputs(tmp_path)
    out, ckpt, total = tmp_path / "out.png", tmp_path / "out.ckpt.npz", 40
    args = [
        *cli_args(out, f"--preset seed --weights random:0 --size 160 --seed 1 --iterations {total}", content, style),
        *f"--tile 96 --workers {workers}".split(),
    ]
    with Terminal(*args) as term:
        term.wait_for(r"tile [1-9]")  # a first tile is in the picture
        time.sleep(random.Random(28 + workers).uniform(0.0, 1.0))
        term.ctrl_c()
        code = term.wait()
    if code == 0:  # every tile finished before the stop arrived: nothing to resume
        pytest.skip("the run finished before Ctrl-C")
    assert_clean_stop(term, code, signal.SIGINT)
    Image.open(out).load()
    outcome = Outcome.from_record(read_metadata(out)["result"])
    assert outcome.ending is Ending.SIGNAL and "tiles done" in outcome.where  # where in the tiled scale it stopped
    assert ckpt.exists() and term.lines()[-1].startswith(f"nstyle: {outcome.describe()} (")
    assert_no_leftovers(tmp_path)
    resume_in_terminal(ckpt, out, total)


def batch_stop(tmp_path: Path, args: list[str], folder: Path, pattern: str, seed: int) -> list[Path]:
    """A batch command stopped by Ctrl-C after its first result; returns what it kept."""
    with Terminal(*args) as term:
        wait_until(lambda: any(folder.glob(pattern)), term)
        time.sleep(random.Random(seed).uniform(0.0, 1.0))
        term.ctrl_c()
        code = term.wait()
    assert_clean_stop(term, code, signal.SIGINT)
    assert f"`nstyle resume {folder / 'run.ckpt.npz'}`, or the same command again, continues it" in term.lines()[-1]
    assert (folder / "run.ckpt.npz").is_file()
    assert_no_leftovers(folder)
    return sorted(folder.glob(pattern))


def wait_until(predicate, term: Terminal, timeout: float = 240.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert term.returncode is None and time.monotonic() < deadline, term.screen[-2000:]
        time.sleep(0.05)


def run_to_the_end(args: list[str]) -> Terminal:
    with Terminal(*args) as term:
        code = term.wait()
    assert code == 0, term.screen[-2000:]
    assert "Traceback" not in term.screen
    return term


@pytest.mark.slow
def test_ctrl_c_in_a_grid_keeps_finished_cells_and_the_same_command_finishes(tmp_path):
    out = tmp_path / "grid"
    args = [
        "grid",
        "--content",
        str(CONTENT),
        str(ROCKET),
        "--style",
        str(STYLE),
        str(SCREAM),
        "-o",
        str(out),
        *TINY,
        *"--iterations 150".split(),
    ]
    kept = batch_stop(tmp_path, args, out, "*__*.png", 30)
    assert 1 <= len(kept) < 4 and not (out / "grid.png").exists()
    for cell in kept:  # a cell is a finished trial, never one cut short
        record = read_metadata(cell)["result"]
        assert record["iterations_run"] == 150 and not Outcome.from_record(record).early
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    term = run_to_the_end(
        ["resume", str(out / "run.ckpt.npz")]
    )  # the one resume path; the sweep's test runs the same command
    assert f"reusing {len(kept)} of 4 finished cells" in term.screen
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps
    assert len(list(out.glob("*__*.png"))) == 4 and Image.open(out / "grid.png").width > 200
    assert not (out / "run.ckpt.npz").exists()  # done: nothing left to resume


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_keeps_finished_trials_and_the_same_command_finishes(tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text(
        f'content = "{CONTENT}"\nstyle = "{STYLE}"\n[base]\nweights = "random:0"\nsize = 64\niterations = 150\n'
        "seed = 1\n[axes]\nstyle_weight = [1e4, 1e5, 1e6]\n"
    )
    out = tmp_path / "sweep"
    kept = batch_stop(tmp_path, ["sweep", str(spec), "-o", str(out)], out, "trial-*.png", 31)
    assert 1 <= len(kept) < 3
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["status"] for m in manifest] == ["ok"] * len(kept)  # the trial cut short is not recorded
    run_to_the_end(["sweep", str(spec), "-o", str(out)])
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 3 and {m["key"] for m in manifest} >= {p.stem for p in kept}
    assert (out / "sheet.png").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_video_keeps_finished_frames_and_the_same_command_finishes(tmp_path):
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    clip = SAMPLES.parent / "video" / "pan.mp4"
    out = tmp_path / "out.mp4"
    args = [
        "video",
        *cli_args(out, "--preset seed --iterations 30 --frame-iterations 15 --max-frames 8", content=clip),
        *TINY,
    ]
    work = tmp_path / "out.mp4.frames"
    with Terminal(*args) as term:
        wait_until(lambda: len(list(work.glob("chunk*/frame_*.png"))) >= 2, term)
        time.sleep(random.Random(32).uniform(0.0, 0.5))
        term.ctrl_c()
        code = term.wait()
    if code == 0:
        pytest.skip("the clip finished before Ctrl-C")
    assert_clean_stop(term, code, signal.SIGINT)
    assert f"the finished frames are kept in {work}" in term.lines()[-1] and not out.exists()
    kept = {p: p.stat().st_mtime_ns for p in work.glob("chunk*/frame_*.png")}
    for frame in kept:
        Image.open(frame).load()
    assert_no_leftovers(tmp_path)
    with Terminal(*args) as term:  # the same command again: only the missing frames are made
        while term.returncode is None and not term._exited(block=False):
            assert all(p.stat().st_mtime_ns == t for p, t in kept.items() if p.exists()), "a kept frame was redone"
            time.sleep(0.05)
    assert term.returncode == 0 and "Traceback" not in term.screen, term.screen[-2000:]
    assert out.exists() and not work.exists()
    assert term.lines()[-1].startswith(f"wrote {out} (8 frames")
