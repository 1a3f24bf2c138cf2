import numpy as np
import pytest

from nstyle.api import stylize
from nstyle.backends import ops
from nstyle.optimize import K, OptimizerSettings, Stop, optimize
from nstyle.outcome import Ending, Outcome

from ..conftest import CONTENT, STYLE, TINY, backend_name, cli_args, numpy, tensor


def quadratic(target, conditioning=1.0):
    """mean(w (x - target)^2), w spread from 1 to ``conditioning``: ill-conditioned takes L-BFGS a while."""
    t = tensor(target)
    w = tensor(np.geomspace(1.0, conditioning, target.size).reshape(target.shape))

    def loss(x):
        total = K.mean(w * K.square(x - t))
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
    result = optimize(quadratic(target, 1e4), np.zeros_like(target), BOUNDS, settings, lambda x: x, [stop_at_3])
    assert len(result.history) == 3
    assert result.outcome.ending is (Ending.SIGNAL if signal is KeyboardInterrupt else Ending.CALLBACK)
    assert result.outcome.describe() == (
        "stopped by SIGINT" if signal is KeyboardInterrupt else "stopped by a callback"
    )
    assert result.best_loss <= min(h["total"] for h in result.history)
    assert np.abs(result.image - 0.5).mean() < 0.5  # moved towards the target, not the start


@pytest.mark.slow
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


def test_lbfgs_reaches_scipys_minimum_of_a_coupled_bounded_problem():
    """An independent reference: SciPy's L-BFGS-B, in float64, on the same non-quadratic loss,
    with coupled pixels and a minimum partly outside the box."""
    import scipy.optimize

    rng = np.random.default_rng(0)
    shape = (1, 4, 4, 3)
    n = int(np.prod(shape))
    a = np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.uniform(-2, 2, n)

    def reference(x):
        r = a @ x - b
        return float(np.mean(r**2) + 0.1 * np.mean(x**4)), (2 * a.T @ r + 0.4 * x**3) / n

    at, bt = tensor(a), tensor(b)

    def loss(x):
        flat = K.reshape(x, (n, 1))
        total = K.mean(K.square(K.reshape(K.matmul(at, flat), (n,)) - bt)) + 0.1 * K.mean(flat**4)
        return {"total": total, "content": total, "style": total, "tv": total}

    expected = scipy.optimize.minimize(
        reference,
        np.zeros(n),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-1, 1)] * n,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
    )
    result = optimize(loss, np.zeros(shape, np.float32), BOUNDS, OptimizerSettings("lbfgs", 300), lambda x: x)
    assert result.best_loss == pytest.approx(expected.fun, rel=1e-4)
    np.testing.assert_allclose(result.image.ravel(), expected.x, atol=2e-3)
    assert result.best_iteration == len(result.history)  # every accepted step lowers the loss


class TracesCounted:
    """A loss whose pure evaluation records each time it is traced (or, eagerly, run)."""

    def __init__(self, loss):
        self.loss, self.traces = loss, []

    @property
    def state(self):
        return self.loss.state

    def evaluate(self, x, state):
        self.traces.append(tuple(x.shape))
        return self.loss.evaluate(x, state)


def test_lbfgs_shortens_steps_into_nan_and_says_when_none_is_lower():
    """Away from the start the loss is NaN: every step is shortened, none is taken, the start is kept."""
    start = np.full((1, 2, 2, 3), 0.25, np.float32)
    x0 = tensor(start)

    def loss(x):
        total = K.sum(x) + K.where(K.max(K.abs(x - x0)) > 0, np.float32("nan"), np.float32(0.0))
        return {"total": total, "content": total, "style": total, "tv": total}

    result = optimize(loss, start, BOUNDS, OptimizerSettings("lbfgs", 10), lambda x: x)
    assert result.history == []
    assert result.outcome == Outcome(Ending.NO_PROGRESS)
    assert result.outcome.describe() == "L-BFGS made no progress (the line search found no lower loss)"
    assert result.best_loss == pytest.approx(3.0) and result.best_iteration == 0
    np.testing.assert_array_equal(result.image, start)


def test_lbfgs_at_the_minimum_says_it_converged():
    """Started at the quadratic's minimum, the gradient is exactly zero: L-BFGS stops before a step."""
    target = np.full((1, 4, 4, 3), 0.5, np.float32)
    result = optimize(quadratic(target), target.copy(), BOUNDS, OptimizerSettings("lbfgs", 20), lambda x: x)
    assert result.outcome == Outcome(Ending.CONVERGED) and result.history == []
    assert result.outcome.describe() == "L-BFGS converged (zero gradient on the pixels free to move)"
    np.testing.assert_array_equal(result.image, target)


def test_lbfgs_held_at_its_bounds_says_it_converged():
    """Every pixel at a bound with its gradient pointing out of the box: nothing is free to move."""
    target = np.full((1, 2, 2, 3), 3.0, np.float32)  # beyond the upper bound of 1
    start = np.ones_like(target)
    result = optimize(quadratic(target), start, BOUNDS, OptimizerSettings("lbfgs", 20), lambda x: x)
    assert result.outcome.ending is Ending.CONVERGED and result.history == []


def test_lbfgs_says_why_it_ended_early():
    target = np.full((1, 4, 4, 3), 0.5, np.float32)
    result = optimize(quadratic(target), np.zeros_like(target), BOUNDS, OptimizerSettings("lbfgs", 200), lambda x: x)
    assert len(result.history) < 200  # a quadratic is solved long before
    assert result.outcome.ending in (Ending.CONVERGED, Ending.NO_PROGRESS) and not result.outcome.halts
    full = optimize(quadratic(target), np.zeros_like(target), BOUNDS, OptimizerSettings("adam", 5, lr=0.1), lambda x: x)
    assert (len(full.history), full.outcome) == (5, Outcome())


def test_an_early_end_reaches_the_record_and_the_last_line(tmp_path, capsys):
    """Content = style, started at the content: the loss is 0 with no gradient, nothing to do."""
    from nstyle.cli import main
    from nstyle.io import read_metadata

    out = tmp_path / "same.png"
    code = main(cli_args(out, "--weights random:0 --size 64 --iterations 20 --optimizer lbfgs --quiet", content=STYLE))
    assert code == 0
    record = read_metadata(out)["result"]
    assert record["iterations_run"] < 20
    assert Outcome.from_record(record).ending in (Ending.CONVERGED, Ending.NO_PROGRESS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wrote {out} (best loss")  # one line, even with --quiet
    assert "L-BFGS " in err and f"after {record['iterations_run']} of 20 iterations" in err


@pytest.mark.parametrize("swag", [0.0, 1.0])
def test_a_retargeted_loss_and_one_compiled_lbfgs_serve_every_scale(swag):
    """The next scale retargets the loss instead of building one, and L-BFGS is traced once for both sizes.

    The retargeted loss must equal a loss built afresh at the new size (content and style
    targets, and SWAG's scales, all follow); Adam, whose moments have the image's shape, traces per size.
    """
    from nstyle.backbones import REGISTRY, FeatureExtractor, load_model
    from nstyle.losses import StyleTransferLoss, Terms, WeightedLayer
    from nstyle.optimize import Optimizer

    rng = np.random.default_rng(1)
    extractor = FeatureExtractor(REGISTRY["vgg16"], load_model("vgg16", "random:0"), ["block1_conv2", "block2_conv1"])
    bounds = extractor.backbone.preprocessing.bounds()

    def image(height, width):
        return tensor(rng.uniform(-100, 100, (1, height, width, 3)))

    def build(content, style):
        layers = [WeightedLayer("block1_conv2", 1.0), WeightedLayer("block2_conv1", 2.0)]
        return StyleTransferLoss(
            extractor, Terms(layers[:1], layers, 1.0, 1e3, 0.0, swag_temperature=swag), content, [style]
        )

    small, big = (image(12, 18), image(12, 18)), (image(26, 34), image(20, 30))
    loss = build(*small)
    lbfgs_traces = 1 if ops().GENERALISES_SHAPES else 2  # XLA compiles a program per shape
    for name, traces_expected in (("lbfgs", lbfgs_traces), ("adam", 2)):
        counted = TracesCounted(loss)
        optimizer = Optimizer(counted, bounds, OptimizerSettings(name, 3))
        loss.retarget(*small[:1], small[1:])
        optimizer.run(numpy(small[0]) + 1, lambda x: x)
        loss.retarget(big[0], big[1:])
        start = numpy(big[0]) + 1
        result = optimizer.run(start, lambda x: x)
        if backend_name() != "torch":  # eager: no traces to count
            assert len(counted.traces) == traces_expected, counted.traces
        assert result.best_loss < loss.value_at(start) and len(result.history) == 3

    x = image(26, 34)
    retargeted, fresh = loss(x), build(*big)(x)
    for term in ("total", "content", "style"):
        assert float(retargeted[term]) == pytest.approx(float(fresh[term]), rel=1e-5), term
