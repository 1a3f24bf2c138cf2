"""One engine on every Keras backend: the same seeded run gives the same result on TensorFlow, JAX
and PyTorch; a checkpoint written on one resumes on another; nstyle runs where TensorFlow is absent.

Keras picks its backend once per process, so every run here is a process of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nstyle.backends import NAMES, is_installed
from nstyle.io import read_metadata

from ..conftest import cli_args

INSTALLED = [name for name in NAMES if is_installed(name)]
SEEDED = "--preset seed --weights random:0 --size 64 --iterations 30 --seed 1 --precision float32 --quiet"


def nstyle(args: list[str], backend: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.run(
        [sys.executable, "-m", "nstyle", *args], capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


@pytest.fixture(scope="module")
def tensorflow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tensorflow") / "out.png"
    proc = nstyle(cli_args(out, SEEDED), "tensorflow")
    assert proc.returncode == 0, proc.stderr
    return read_metadata(out)["result"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", INSTALLED)
def test_a_seeded_float32_adam_run_ends_within_2_percent_on_every_backend(backend, tensorflow_run, tmp_path):
    out = tmp_path / "out.png"
    proc = nstyle(cli_args(out, SEEDED), backend)
    assert proc.returncode == 0, proc.stderr
    result = read_metadata(out)["result"]
    assert result["backend"] == backend and result["random_weights"] == "numpy-pcg64"
    assert result["iterations_run"] == 30
    assert result["best_loss"] == pytest.approx(tensorflow_run["best_loss"], rel=0.02)


@pytest.mark.slow
@pytest.mark.skipif("jax" not in INSTALLED, reason="needs JAX")
def test_runs_with_no_tensorflow_importable(tmp_path):
    """As on a GPU machine with PyTorch and JAX but no TensorFlow: any import of it fails."""
    out = tmp_path / "out.png"
    blocker = (
        "import sys, importlib.abc\n"
        "class NoTensorFlow(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('no tensorflow here')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "import importlib.util\n"
        "real_find_spec = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] == 'tensorflow' else real_find_spec(n, *a)\n"
        "from nstyle.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = cli_args(out, "--preset lite0 --size 64 --iterations 3 --backend jax --quiet")
    proc = subprocess.run([sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert read_metadata(out)["result"]["backend"] == "jax"
    assert "tensorflow" not in read_metadata(out)["versions"]


@pytest.mark.slow
@pytest.mark.skipif("jax" not in INSTALLED, reason="needs JAX")
def test_a_checkpoint_written_on_tensorflow_resumes_on_jax(tmp_path, tensorflow_run):
    out = tmp_path / "out.png"
    args = cli_args(out, SEEDED.replace("--iterations 30", "--iterations 30 --checkpoint-every 2"))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.Popen([sys.executable, "-m", "nstyle", *args], stderr=subprocess.PIPE, text=True, env=env)
    ckpt = tmp_path / "out.ckpt.npz"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped_at = read_metadata(out)["result"]["iterations_run"]
    assert 0 < stopped_at < 30
    resumed = nstyle(["resume", str(ckpt), "--quiet"], "jax")
    assert resumed.returncode == 0, resumed.stderr
    result = read_metadata(out)["result"]
    assert result["iterations_run"] == 30 and result["backend"] == "jax" and not ckpt.exists()
    assert result["best_loss"] == pytest.approx(tensorflow_run["best_loss"], rel=0.02)
