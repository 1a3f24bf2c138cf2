"""SIGTERM and SIGHUP stop a run like Ctrl-C: the best image and its record are written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from nstyle.signals import Interrupted, received, stop_on_signals

from ..conftest import cli_args


def test_first_signal_raises_and_later_ones_wait():
    with stop_on_signals():
        with pytest.raises(Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
        assert caught.value.signum == signal.SIGTERM and received() == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGHUP)  # e.g. while the best image is written: ignored
        time.sleep(0.1)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are put back


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_run_writes_its_best_image(tmp_path, signum):
    out = tmp_path / "out.png"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nstyle",
            *cli_args(out, "--preset seed --weights random:0 --size 48 --iterations 500 --snapshot-every 3 --quiet"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (tmp_path / "out_0003.png").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the optimisation is running once the first snapshot is on disk
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert err.count("\n") == 1 and f"stopped by {signal.Signals(signum).name} at iteration" in err, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["result"]["outcome"]["ending"] == "signal" and 3 <= record["result"]["iterations_run"] < 500
    assert Image.open(out).size == (48, 32) and json.loads(Image.open(out).info["nstyle"]) == record
