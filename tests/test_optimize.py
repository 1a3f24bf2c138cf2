import numpy as np
import pytest

from nstyle.api import stylize
from nstyle.optimize import OptimizerSettings, Stop, optimize, tf

from .conftest import CONTENT, STYLE, TINY


def quadratic(target):
    t = tf.constant(target)

    def loss(x):
        total = tf.reduce_mean(tf.square(x - t))
        return {"total": total, "content": total, "style": total, "tv": total}

    return loss


BOUNDS = (np.full(3, -1.0, np.float32), np.full(3, 1.0, np.float32))


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
def test_optimisers_lower_a_bounded_quadratic(name):
    target = np.full((1, 4, 4, 3), 0.5, np.float32)
    target[0, 0, 0, 0] = 3.0  # outside the bounds: must be clipped at 1
    settings = OptimizerSettings(name, iterations=60, lr=0.1)
    result = optimize(quadratic(target), np.zeros_like(target), BOUNDS, settings, lambda x: x)
    assert result.best_loss < result.history[0]["total"]
    assert result.image.max() <= 1.0 + 1e-6 and result.image.min() >= -1.0 - 1e-6
    np.testing.assert_allclose(result.image[0, 1:, 1:], 0.5, atol=0.05)
    assert result.image[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
@pytest.mark.parametrize("signal", [KeyboardInterrupt, Stop])
def test_interrupt_keeps_best_so_far(name, signal):
    target = np.full((1, 4, 4, 3), 0.5, np.float32)

    def stop_at_3(p):
        if p.iteration == 3:
            raise signal()

    settings = OptimizerSettings(name, iterations=50, lr=0.1)
    result = optimize(quadratic(target), np.zeros_like(target), BOUNDS, settings, lambda x: x, [stop_at_3])
    assert len(result.history) == 3
    assert result.interrupted == (signal is KeyboardInterrupt) and result.stopped == (signal is Stop)
    assert result.best_loss <= min(h["total"] for h in result.history)
    assert np.abs(result.image - 0.5).mean() < 0.5  # moved towards the target, not the start


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_few_steps_lower_the_style_transfer_loss(optimizer):
    result = stylize(CONTENT, STYLE, preset="seed", **{**TINY, "iterations": 6, "optimizer": optimizer})
    totals = [h["total"] for h in result.history]
    assert len(totals) == 6
    assert result.best_loss < totals[0]
    assert result.best_loss == min(totals)
    assert result.image.size == (64, 43)  # longer side = size, aspect kept


def test_result_is_the_lowest_loss_image():
    # Adam at a huge learning rate overshoots: the best image is an early one, not the last.
    result = stylize(CONTENT, STYLE, preset="seed", **{**TINY, "iterations": 8, "lr": 500.0})
    totals = [h["total"] for h in result.history]
    assert result.best_iteration == int(np.argmin(totals)) + 1


def test_lbfgs_best_found_in_an_unfinished_line_search(monkeypatch):
    """A failed line search can evaluate a lower loss in an iteration that never completes."""
    import scipy.optimize

    target = np.full((1, 2, 2, 3), 0.5, np.float32)
    starts = []

    def one_iteration_then_failed_search(fun, x, callback, **kwargs):
        starts.append(x)
        if len(starts) == 1:
            value, _ = fun(x)
            callback(scipy.optimize.OptimizeResult(x=x, fun=value))  # iteration 1 completes
            fun(np.full_like(x, 0.25))  # lower loss, but the search "fails": no iteration 2
        return scipy.optimize.OptimizeResult(x=x, message="ABNORMAL: ")

    monkeypatch.setattr("nstyle.optimize.scipy.optimize.minimize", one_iteration_then_failed_search)
    result = optimize(quadratic(target), np.zeros_like(target), BOUNDS, OptimizerSettings("lbfgs", 10), lambda x: x)
    assert len(result.history) == 1 and len(starts) == 2  # restarted once, no progress, stopped
    assert result.best_iteration == 1  # not 2: that iteration never completed
    np.testing.assert_allclose(result.image, 0.25)  # but its lower-loss image is kept
    assert result.stop_reason == "L-BFGS made no progress (the line search found no lower loss)"


def test_lbfgs_says_why_it_ended_early():
    target = np.full((1, 4, 4, 3), 0.5, np.float32)
    result = optimize(quadratic(target), np.zeros_like(target), BOUNDS, OptimizerSettings("lbfgs", 200), lambda x: x)
    assert len(result.history) < 200  # a quadratic is solved long before
    assert result.stop_reason.startswith("L-BFGS made no progress (")
    full = optimize(quadratic(target), np.zeros_like(target), BOUNDS, OptimizerSettings("adam", 5, lr=0.1), lambda x: x)
    assert (len(full.history), full.stop_reason) == (5, "completed")


def test_an_early_end_reaches_the_record_and_the_last_line(tmp_path, capsys):
    """Content = style, started at the content: the loss is 0 with no gradient, nothing to do."""
    from nstyle.cli import main
    from nstyle.io import read_metadata

    out = tmp_path / "same.png"
    code = main([str(STYLE), str(STYLE), "-o", str(out), "--weights", "random:0", "--size", "64",
                 "--iterations", "20", "--optimizer", "lbfgs", "--quiet"])  # fmt: skip
    assert code == 0
    record = read_metadata(out)["result"]
    assert record["iterations_run"] < 20
    assert record["stop_reason"].startswith("L-BFGS made no progress")
    err = capsys.readouterr().err
    assert f"stopped after {record['iterations_run']} of 20 iterations: L-BFGS made no progress" in err
