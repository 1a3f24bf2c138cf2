"""Killed runs: what is on disk afterwards, and picking up where they stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nstyle.io import read_metadata

from ..conftest import CONTENT, SAMPLES, STYLE, cli_args

ROCKET = SAMPLES / "content" / "rocket.jpg"
GRID = [
    "grid",
    "--content",
    str(CONTENT),
    str(ROCKET),
    "--style",
    str(STYLE),
    *"--weights random:0 --size 64 --iterations 3 --seed 1 --quiet".split(),
]


def nstyle(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nstyle", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def wait_for(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def cells(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*__*.png"))


@pytest.mark.slow
def test_grid_killed_with_sigkill_reuses_its_finished_cells(tmp_path):
    out = tmp_path / "grid"
    proc = nstyle(*GRID, "-o", str(out))
    wait_for(lambda: len(cells(out)) >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = cells(out)
    assert len(done) in (1, 2)  # killed after the first cell, most likely before the second
    for path in out.iterdir():  # whole files or none: a killed write leaves no half image
        if path.suffix == ".png":
            Image.open(path).load()
            read_metadata(path)
    stamps = {p.name: p.stat().st_mtime_ns for p in done}

    again = subprocess.run([sys.executable, "-m", "nstyle", *GRID[:-1], "-o", str(out)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"reusing {len(done)} of 2 finished cells" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps  # reused, not redone
    assert len(cells(out)) == 2 and Image.open(out / "grid.png").width > 200


@pytest.mark.slow
def test_a_cell_from_other_settings_is_refused_not_reused(tmp_path, capsys):
    from nstyle.cli import main

    out = tmp_path / "grid"
    assert main([*GRID, "-o", str(out)]) == 0
    before = (out / "chelsea__starry_night.png").read_bytes()
    other = [*GRID, "-o", str(out)]
    other[other.index("--iterations") + 1] = "4"
    capsys.readouterr()
    assert main(other) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err
    assert (out / "chelsea__starry_night.png").read_bytes() == before


# --- checkpoints and resume -------------------------------------------------------------------

RUN = dict(weights="random:0", size=64, seed=3)


def interrupt_at(iteration: int):
    def callback(p) -> None:
        if p.iteration == iteration:
            raise KeyboardInterrupt

    return callback


@pytest.mark.slow
def test_adam_resumed_from_a_checkpoint_is_bit_identical(tmp_path):
    import numpy as np

    from nstyle.api import stylize
    from nstyle.checkpoints import Checkpoint, CheckpointPlan

    full = stylize(CONTENT, STYLE, preset="seed", iterations=12, **RUN)
    plan = CheckpointPlan(tmp_path / "run.ckpt.npz", every=5)
    part = stylize(CONTENT, STYLE, preset="seed", iterations=12, callbacks=[interrupt_at(7)], checkpoint=plan, **RUN)
    assert part.outcome.signum == signal.SIGINT and len(part.history) == 7 and plan.path.exists()
    checkpoint = Checkpoint.load(plan.path)
    assert checkpoint.state.iteration == 7  # written when stopped, not only at 5
    import nstyle

    rest = nstyle.resume(plan.path, every=5)
    assert rest.history == full.history and not rest.outcome.early
    np.testing.assert_array_equal(np.asarray(rest.image), np.asarray(full.image))
    assert not plan.path.exists()  # a finished run leaves no checkpoint behind


def test_lbfgs_resumed_continues_its_loss_and_scales(tmp_path):
    """L-BFGS's curvature history is not saved: the resumed run restarts it, from the saved iterate."""
    from nstyle.api import stylize
    from nstyle.checkpoints import Checkpoint, CheckpointPlan

    opts = dict(preset="default", iterations=6, scales=2, scale_factor=1.5, **RUN)
    plan = CheckpointPlan(tmp_path / "run.ckpt.npz", every=100)
    part = stylize(CONTENT, STYLE, callbacks=[interrupt_at(9)], checkpoint=plan, **opts)
    checkpoint = Checkpoint.load(plan.path)
    assert (checkpoint.scale, checkpoint.state.iteration, len(checkpoint.earlier_history)) == (1, 3, 6)
    rest = stylize(CONTENT, STYLE, resume=checkpoint)
    assert len(rest.history) == 12 and rest.history[:9] == part.history
    # At the second scale the loss goes on down from where it was stopped, not from the start.
    assert rest.history[9]["total"] <= part.history[8]["total"] * 1.05
    assert rest.history[-1]["total"] < part.history[6]["total"]


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_uninterrupted_image(tmp_path):
    import numpy as np

    from nstyle.api import stylize

    out = tmp_path / "out.png"
    args = cli_args(
        out, "--preset seed --weights random:0 --size 64 --seed 3 --iterations 100 --checkpoint-every 2 --quiet"
    )
    proc = nstyle(*args)
    ckpt = tmp_path / "out.ckpt.npz"
    wait_for(ckpt.exists)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert f"`nstyle resume {ckpt}` continues it" in err
    record = read_metadata(out)["result"]
    assert record["outcome"] == {"ending": "signal", "detail": "SIGTERM", "where": ""}
    assert 0 < record["iterations_run"] < 100
    resumed = subprocess.run(
        [sys.executable, "-m", "nstyle", "resume", str(ckpt), "--quiet"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert read_metadata(out)["result"]["iterations_run"] == 100 and not ckpt.exists()
    full = stylize(CONTENT, STYLE, preset="seed", iterations=100, **RUN)
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(full.image))


@pytest.mark.slow
def test_bad_checkpoints_are_one_line_and_touch_nothing(tmp_path):
    from nstyle.cli import main

    damaged = tmp_path / "out.ckpt.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    before = damaged.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "nstyle", "resume", str(damaged)], capture_output=True, text=True)
    assert (
        proc.returncode == 2 and proc.stderr.count("\n") == 1 and "damaged or not an nstyle checkpoint" in proc.stderr
    )
    assert damaged.read_bytes() == before
    assert main(["resume", str(tmp_path / "missing.ckpt.npz")]) == 2
    assert main([str(CONTENT), str(STYLE), "-o", str(tmp_path / "x.png"), "--checkpoint-every", "0"]) == 2
    # a stopped run's checkpoint is not silently replaced by a new run
    assert main([str(CONTENT), str(STYLE), "-o", str(tmp_path / "out.png"), "--weights", "random:0"]) == 2


def test_checkpoint_from_another_version_or_truncated_is_refused(tmp_path, monkeypatch):
    import pytest

    from nstyle import _version
    from nstyle.api import stylize
    from nstyle.checkpoints import Checkpoint, CheckpointError, CheckpointPlan

    plan = CheckpointPlan(tmp_path / "run.ckpt.npz", every=2)
    stylize(CONTENT, STYLE, preset="seed", iterations=6, callbacks=[interrupt_at(3)], checkpoint=plan, **RUN)
    monkeypatch.setattr(_version, "__version__", "9.9.9")
    with pytest.raises(CheckpointError, match="written by nstyle 0.1.0; this is nstyle 9.9.9"):
        Checkpoint.load(plan.path)
    monkeypatch.undo()
    data = plan.path.read_bytes()
    plan.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        Checkpoint.load(plan.path)


@pytest.mark.slow
def test_signals_at_random_moments_leave_only_whole_files(tmp_path):
    """Each stop signal at a seeded random moment after the first checkpoint: every file left is a
    whole image, record or checkpoint; SIGINT/TERM/HUP always leave the best image; after SIGKILL
    the checkpoint resumes. (Four runs: each costs a process start, and CI time is counted; 120
    iterations, so that the signal comes while the run is still optimising.)"""
    import json
    import random

    import numpy as np

    from nstyle.checkpoints import Checkpoint

    rng = random.Random(7)
    for n, signum in enumerate([signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]):
        out = tmp_path / f"run{n}" / "out.png"
        out.parent.mkdir()
        proc = nstyle(
            *cli_args(
                out, "--preset seed --weights random:0 --size 64 --iterations 120 --checkpoint-every 3 --seed 1 --quiet"
            )
        )
        wait_for((out.parent / "out.ckpt.npz").exists)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signum)
        proc.communicate(timeout=120)
        for path in out.parent.iterdir():
            if path.name == ".out.png.lock" and signum == signal.SIGKILL:
                continue  # a killed run cannot release its claim; the next run takes it over (below)
            assert not path.name.startswith("."), f"a temporary file was left: {path.name}"
            if path.suffix == ".png":
                Image.open(path).load()
            elif path.suffix == ".json":
                json.loads(path.read_text())
            else:
                Checkpoint.load(path)
        if signum != signal.SIGKILL:
            assert proc.returncode in (128 + signum, 0)  # 0: it finished before the signal came
            if proc.returncode:
                assert read_metadata(out)["result"]["outcome"]["detail"] == signal.Signals(signum).name
        else:
            assert proc.returncode == -signal.SIGKILL
            checkpoint = Checkpoint.load(out.parent / "out.ckpt.npz")
            resumed = subprocess.run(
                [sys.executable, "-m", "nstyle", "resume", str(out.parent / "out.ckpt.npz"), "--quiet"],
                capture_output=True,
                text=True,
            )
            assert resumed.returncode == 0, resumed.stderr
            record = read_metadata(out)["result"]
            assert record["iterations_run"] == 120 and checkpoint.state.iteration % 3 == 0
            assert np.isfinite(record["best_loss"]) and not (out.parent / ".out.png.lock").exists()


# --- one writer per output, disk space, a save that fails at the end -------------------------


def test_a_second_run_on_the_same_output_refuses_and_a_stale_claim_is_taken_over(tmp_path):
    from nstyle.cli import main

    out = tmp_path / "out.png"
    lock = tmp_path / ".out.png.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(str(sleeper.pid))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nstyle",
                *cli_args(out, "--weights random:0 --size 64 --iterations 1"),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
        assert f"another nstyle run (process {sleeper.pid}) is writing {out}" in proc.stderr
        assert not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # its process is gone now: the claim is stale, and the next run takes it over
    assert main(cli_args(out, "--weights random:0 --size 64 --iterations 1 --quiet")) == 0
    assert out.exists() and not lock.exists()


def test_too_little_disk_is_refused_before_the_work(tmp_path, monkeypatch, capsys):
    import shutil

    from nstyle.cli import main

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    assert main([str(CONTENT), str(STYLE), "-o", str(tmp_path / "out.png"), "--size", "512"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MB free; this run writes up to" in err


def test_a_failed_final_save_goes_to_a_named_fallback(tmp_path):
    import pytest
    from PIL import Image as PILImage

    from nstyle.io import save_with_fallback

    out = tmp_path / "out.png"
    out.write_bytes(b"appeared during the run")  # e.g. written by hand meanwhile: not replaced
    image = PILImage.new("RGB", (8, 8), "red")
    with pytest.warns(RuntimeWarning, match="wrote the result to"):
        saved = save_with_fallback(image, out, force=False, metadata={"nstyle": "test"})
    assert saved != out and saved.parent == tmp_path and saved.name.startswith("out-")
    assert out.read_bytes() == b"appeared during the run"
    assert PILImage.open(saved).getpixel((0, 0)) == (255, 0, 0) and read_metadata(saved) == {"nstyle": "test"}


def test_image_checkpoints_from_before_jobs_still_load(tmp_path):
    """The record gained ``kind`` and ``job``; a checkpoint written without them is an image's."""
    import io
    import json
    import zipfile

    import numpy as np

    from nstyle.api import stylize
    from nstyle.checkpoints import Checkpoint, CheckpointPlan

    plan = CheckpointPlan(tmp_path / "run.ckpt.npz", every=2)
    stylize(CONTENT, STYLE, preset="seed", iterations=6, callbacks=[interrupt_at(3)], checkpoint=plan, **RUN)
    with np.load(plan.path) as data:
        arrays = {name: data[name] for name in data.files}
    record = json.loads(arrays.pop("record").tobytes())
    del record["kind"], record["job"]
    buffer = io.BytesIO()
    np.savez(buffer, record=np.frombuffer(json.dumps(record).encode(), np.uint8), **arrays)
    plan.path.write_bytes(buffer.getvalue())
    assert zipfile.is_zipfile(plan.path)
    old = Checkpoint.load(plan.path)
    assert old.kind == "image" and old.job is None and old.state is not None and old.state.iteration == 3


def test_a_stopped_grid_continues_through_nstyle_resume_and_refuses_changed_inputs(tmp_path, monkeypatch, capsys):
    import shutil

    from nstyle.checkpoints import Checkpoint
    from nstyle.cli import main
    from nstyle.signals import Interrupted
    from nstyle.workflows import runner

    photo = tmp_path / "photo.jpg"
    shutil.copy(CONTENT, photo)
    out = tmp_path / "grid"
    args = ["grid", "--content", str(photo), str(ROCKET), *GRID[4:], "-o", str(out)]
    real, calls = runner.execute, []

    def stop_second(trial, threads=None):  # noqa: ANN001
        calls.append(trial.key)
        if len(calls) == 2:
            raise Interrupted(signal.SIGINT)  # what Ctrl-C raises in a run
        return real(trial, threads)

    monkeypatch.setattr(runner, "execute", stop_second)
    assert main(args) == 130
    ckpt = out / "run.ckpt.npz"
    saved = Checkpoint.load(ckpt)
    assert saved.kind == "batch" and saved.job["call"] == "grid" and saved.state is None
    assert f"`nstyle resume {ckpt}`" in capsys.readouterr().err
    (kept,) = out.glob("*__*.png")
    stamp = kept.stat().st_mtime_ns
    monkeypatch.setattr(runner, "execute", real)
    assert main(["resume", str(ckpt), "-o", str(tmp_path / "x.png")]) == 2  # -o is an image's
    assert main(["resume", str(ckpt), "--quiet"]) == 0
    assert (out / "grid.png").is_file() and len(list(out.glob("*__*.png"))) == 2 and not ckpt.exists()
    assert kept.stat().st_mtime_ns == stamp  # the finished cell was reused, not run again
    capsys.readouterr()

    saved.save(ckpt)  # as if stopped again, then the photo edited
    photo.write_bytes(ROCKET.read_bytes())
    assert main(["resume", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{photo.resolve()} is missing or has changed" in err
