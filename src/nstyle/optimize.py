"""The optimisation loop: gradients on the image itself, Adam or L-BFGS, best image kept.

The image lives in the network's input space (as in the notebook), so clipping to valid
pixels is a per-channel box. Adam runs as one compiled ``tf.function`` step (forward,
gradient, update, clip and best-image bookkeeping in one graph: with BatchNorm folded, 3.2x
the notebook's eager loop on a 2-core AVX2 CPU in float32; XLA's ``jit_compile`` measured no
faster, so it is off). L-BFGS is scipy's L-BFGS-B, whose bounds do the clipping. A float16
network gets dynamic loss scaling in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.optimize

from ._tf import quiet_tensorflow
from .signals import deferred

tf = quiet_tensorflow()

LossFn = Callable[[tf.Tensor], dict[str, tf.Tensor]]
MAX_LBFGS_STARTS = 5


class Stop(Exception):
    """Raised by a callback to end the run early; the best image so far is kept."""


@dataclass
class OptimizerState:
    """Where an optimisation stands: enough to continue it exactly (Adam) or from there (L-BFGS).

    Arrays are in network space, batch of one. ``slots`` are Adam's own variables (its step
    count and moments) in Keras's order; L-BFGS keeps none, because its curvature history is
    rebuilt from the restart point (see :mod:`nstyle.checkpoints`).
    """

    iteration: int  # completed iterations
    image: np.ndarray  # the current iterate
    best: np.ndarray
    best_loss: float
    best_iteration: int
    average: np.ndarray  # the EMA accumulator (zeros when EMA is off)
    slots: list[np.ndarray]
    loss_scale: float
    history: list[dict[str, float]]


@dataclass
class Progress:
    """What a callback sees after each iteration."""

    iteration: int  # 1-based
    iterations: int
    losses: dict[str, float]
    image: Callable[[], np.ndarray]  # the current image as RGB uint8, made only when asked
    state: Callable[[], OptimizerState] | None = None  # the optimiser's state, made only when asked
    position: float | None = None  # iterations done, with fractions while a tiled scale is under way
    stage: str = ""  # where a multi-scale or tiled run is: "scale 3/4, tile 5/24"


Callback = Callable[[Progress], None]


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimiser part of a :class:`~nstyle.config.Config`."""

    name: str = "adam"
    iterations: int = 100
    lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    ema: float = 0.0  # decay of a moving average of the iterates; 0 = off
    loss_scaling: bool = False  # dynamic loss scaling, for a float16 network


class LossScale:
    """Dynamic loss scaling for a float16 network, as mixed-precision training does it.

    float16 has five exponent bits: the backward pass of a style loss weighted 1e6 overflows
    it, a small one underflows. The loss is multiplied by ``value`` before differentiation and
    the gradient divided by it after; a gradient with an inf or NaN halves the scale and the
    step is taken again, and every ``GROWTH_STEPS`` good steps the scale doubles, so it settles
    just under overflow. Disabled (``value`` 1 for ever) for float32 and bfloat16, whose
    exponent range is float32's.
    """

    GROWTH_STEPS = 100
    MIN_VALUE = 2.0**-24

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.value = 1.0
        self._good = 0

    def update(self, finite: bool) -> bool:
        """Record whether the last gradient was finite; True when the step must be taken again."""
        if not self.enabled:
            return False
        if finite:
            self._good += 1
            if self._good >= self.GROWTH_STEPS:
                self.value, self._good = self.value * 2, 0
            return False
        self._good = 0
        if self.value <= self.MIN_VALUE:
            return False  # nothing left to scale away: let the non-finite value through
        self.value /= 2
        return True


@dataclass
class OptimizeResult:
    """The result image (network space, batch of one) and how the run went.

    The image is the lowest-loss iterate; with ``ema`` it is the bias-corrected moving average
    of the iterates instead, which trades a little loss for less high-frequency noise.
    """

    image: np.ndarray
    best_loss: float
    best_iteration: int
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C, SIGTERM, SIGHUP
    stopped: bool = False  # a callback raised Stop
    stop_reason: str = "completed"  # why the run ended; anything but "completed" means early
    state: OptimizerState | None = None  # where it stopped, when interrupted: to checkpoint


def optimize(
    loss_fn: LossFn,
    x0: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    settings: OptimizerSettings,
    to_rgb: Callable[[np.ndarray], np.ndarray],
    callbacks: Sequence[Callback] = (),
    resume: OptimizerState | None = None,
) -> OptimizeResult:
    """Minimise ``loss_fn(image)['total']`` from ``x0`` within per-channel ``bounds``.

    Ctrl-C or a callback's :class:`Stop` ends the run and still returns the best image; after
    Ctrl-C (or SIGTERM, SIGHUP) the result's ``state`` says where it stopped. ``resume``
    continues from such a state (``x0`` is then unused).
    """
    return Optimizer(loss_fn, np.shape(x0), bounds, settings).run(x0, to_rgb, callbacks, resume)


class Optimizer:
    """One compiled optimiser for images of one shape, run again and again from new starts.

    Compiling a step (tracing the network into a graph) takes seconds; a tiled run optimises
    dozens of same-sized tiles with one loss whose targets it swaps (``set_content``), so it
    builds this once per tile size and calls :meth:`run` per tile, each run from a fresh state.
    """

    def __init__(self, loss_fn: LossFn, shape: Sequence[int], bounds: tuple[np.ndarray, np.ndarray],
                 settings: OptimizerSettings):  # fmt: skip
        self.settings = settings
        self.shape = tuple(shape)
        self._engine = (_Adam if settings.name == "adam" else _LBFGS)(loss_fn, self.shape, bounds, settings)

    def run(self, x0: np.ndarray, to_rgb: Callable[[np.ndarray], np.ndarray], callbacks: Sequence[Callback] = (),
            resume: OptimizerState | None = None, iterations: int | None = None) -> OptimizeResult:  # fmt: skip
        """Optimise from ``x0`` (or ``resume``) for ``iterations`` (default: the settings')."""
        iterations = iterations or self.settings.iterations
        return self._engine.run(np.asarray(x0, np.float32), to_rgb, list(callbacks), resume, iterations)


def _notify(callbacks: list[Callback], progress: Progress) -> None:
    for callback in callbacks:
        callback(progress)


class _Adam:
    def __init__(self, loss_fn: LossFn, shape: tuple[int, ...], bounds, settings: OptimizerSettings):
        import keras

        zeros = np.zeros(shape, np.float32)
        self.image, self.best, self.average = tf.Variable(zeros), tf.Variable(zeros), tf.Variable(zeros)
        self.best_loss = tf.Variable(math.inf)
        decay = tf.constant(settings.ema, tf.float32)
        low, high = (tf.constant(b, tf.float32) for b in bounds)
        self.adam = keras.optimizers.Adam(
            learning_rate=settings.lr, beta_1=settings.beta1, beta_2=settings.beta2, epsilon=settings.epsilon
        )
        self.adam.build([self.image])  # its moments exist before the step is traced, so the update can be conditional
        self.fresh = [v.numpy() for v in self.adam.variables]  # step count and moments before any step
        self.settings = settings
        image, best, best_loss, average, adam = self.image, self.best, self.best_loss, self.average, self.adam

        def update(losses: dict[str, tf.Tensor], grad: tf.Tensor) -> tf.Tensor:
            # The loss was measured on the image before this update: that is the one to keep.
            improved = losses["total"] < best_loss
            best.assign(tf.where(improved, image, best))
            best_loss.assign(tf.where(improved, losses["total"], best_loss))
            adam.apply_gradients([(grad, image)])
            image.assign(tf.clip_by_value(image, low, high))
            if settings.ema > 0:  # decided when traced: no extra pass over the image when EMA is off
                average.assign(decay * average + (1 - decay) * image)
            return tf.constant(True)

        @tf.function
        def step(loss_scale: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
            with tf.GradientTape() as tape:
                losses = loss_fn(image)
                scaled = losses["total"] * loss_scale if settings.loss_scaling else losses["total"]
            grad = tape.gradient(scaled, image)
            if not settings.loss_scaling:  # decided when traced: float32 and bfloat16 never overflow
                return losses, update(losses, grad)
            grad = grad / loss_scale
            finite = tf.reduce_all(tf.math.is_finite(grad))
            return losses, tf.cond(finite, lambda: update(losses, grad), lambda: tf.constant(False))

        self.step = step

    def run(self, x0, to_rgb, callbacks, resume, iterations) -> OptimizeResult:
        settings, image, best, best_loss, average, adam = (self.settings, self.image, self.best, self.best_loss,
                                                           self.average, self.adam)  # fmt: skip
        scale = LossScale(settings.loss_scaling)
        result = OptimizeResult(image=x0, best_loss=math.inf, best_iteration=0)
        start = resume or OptimizerState(0, x0, x0, math.inf, 0, np.zeros_like(x0), self.fresh, 1.0, [])
        for variable, value in zip((image, best, best_loss, average), (start.image, start.best, start.best_loss, start.average)):
            variable.assign(value)
        for variable, value in zip(adam.variables, start.slots, strict=True):
            variable.assign(value)
        scale.value = start.loss_scale
        result.history, result.best_loss = list(start.history), start.best_loss
        best_iteration = start.best_iteration

        def state() -> OptimizerState:
            return OptimizerState(len(result.history), image.numpy(), best.numpy(), float(best_loss.numpy()), best_iteration,
                                  average.numpy(), [v.numpy() for v in adam.variables], scale.value, list(result.history))  # fmt: skip

        try:
            for i in range(len(result.history) + 1, iterations + 1):
                with deferred():  # a stop signal waits for the step and its bookkeeping: the state stays whole
                    while True:
                        out, finite = self.step(tf.constant(scale.value, tf.float32))
                        if not scale.update(bool(finite)):
                            break
                    losses = {k: float(v) for k, v in out.items()}
                    if losses["total"] < result.best_loss:
                        result.best_loss, best_iteration = losses["total"], i
                    result.history.append(losses)
                    _notify(callbacks, Progress(i, iterations, losses, lambda: to_rgb(image.numpy()[0]), state))
        except KeyboardInterrupt:
            result.interrupted, result.stop_reason, result.state = True, "interrupted", state()
        except Stop:
            result.stopped, result.stop_reason = True, "stopped by a callback"
        result.image, result.best_iteration = best.numpy(), best_iteration
        if not math.isfinite(result.best_loss):  # interrupted before the first step finished
            result.image = image.numpy()
        elif settings.ema > 0:
            result.image = average.numpy() / (1 - settings.ema ** len(result.history))
        return result


class _LBFGS:
    def __init__(self, loss_fn: LossFn, shape: tuple[int, ...], bounds, settings: OptimizerSettings):
        self.shape, self.settings = shape, settings
        self.low = np.broadcast_to(bounds[0], shape).ravel().astype(np.float64)
        self.high = np.broadcast_to(bounds[1], shape).ravel().astype(np.float64)

        @tf.function
        def value_and_grad(x: tf.Tensor, loss_scale: tf.Tensor):
            with tf.GradientTape() as tape:
                tape.watch(x)
                losses = loss_fn(x)
                scaled = losses["total"] * loss_scale if settings.loss_scaling else losses["total"]
            grad = tape.gradient(scaled, x)
            return losses, grad / loss_scale if settings.loss_scaling else grad

        self.value_and_grad = value_and_grad

    def run(self, x0, to_rgb, callbacks, resume, iterations) -> OptimizeResult:
        shape, settings, value_and_grad = self.shape, self.settings, self.value_and_grad
        scale = LossScale(settings.loss_scaling)
        result = OptimizeResult(image=x0, best_loss=math.inf, best_iteration=0)
        last: dict[str, object] = {}
        current = x0.ravel().astype(np.float64)  # the last completed iterate
        average = np.zeros(x0.size, np.float64)
        if resume is not None:
            current, average = resume.image.ravel().astype(np.float64), resume.average.ravel().astype(np.float64)
            result.image, result.best_loss, result.best_iteration = resume.best, resume.best_loss, resume.best_iteration
            result.history, scale.value = list(resume.history), resume.loss_scale

        def state() -> OptimizerState:
            return OptimizerState(len(result.history), current.reshape(shape).astype(np.float32), result.image,
                                  result.best_loss, result.best_iteration, average.reshape(shape), [], scale.value,
                                  list(result.history))  # fmt: skip

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            x = tf.constant(flat.reshape(shape), tf.float32)
            while True:
                losses, grad = value_and_grad(x, tf.constant(scale.value, tf.float32))
                finite = not scale.enabled or bool(np.isfinite(grad.numpy()).all())
                if not scale.update(finite):
                    break
            last["losses"] = {k: float(v) for k, v in losses.items()}
            last["x"] = flat
            total = last["losses"]["total"]
            if total < result.best_loss:
                result.best_loss, result.best_iteration = total, len(result.history) + 1
                result.image = flat.reshape(shape).astype(np.float32)
            return total, grad.numpy().ravel().astype(np.float64)

        def on_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
            nonlocal average, current
            with deferred():  # the iteration's bookkeeping happens whole or not at all
                losses = {**last["losses"], "total": float(intermediate_result.fun)}
                result.history.append(losses)
                x = current = np.array(intermediate_result.x)
                if settings.ema > 0:  # no extra pass over the image when EMA is off
                    average = settings.ema * average + (1 - settings.ema) * x
                _notify(
                    callbacks,
                    Progress(len(result.history), iterations, losses, lambda: to_rgb(x.reshape(shape)[0]), state),
                )

        x = current
        try:
            # A user asking for N iterations expects N: when the line search gives up, start again
            # from where it stopped with a fresh curvature history; stop when a fresh start makes no
            # progress either, or after a few restarts (each costs a search from steepest descent).
            for _ in range(MAX_LBFGS_STARTS):
                if len(result.history) >= iterations:
                    break
                done = len(result.history)
                remaining = iterations - done
                run = scipy.optimize.minimize(
                    fun,
                    x,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=scipy.optimize.Bounds(self.low, self.high),
                    callback=on_iteration,
                    options={"maxiter": remaining, "maxfun": 10 * remaining + 20, "ftol": 0.0, "gtol": 0.0},
                )
                x = run.x
                if len(result.history) == done:
                    break
            if len(result.history) < iterations:
                result.stop_reason = f"L-BFGS made no progress ({_lbfgs_message(run)})"
        except KeyboardInterrupt:
            result.interrupted, result.stop_reason, result.state = True, "interrupted", state()
        except Stop:
            result.stopped, result.stop_reason = True, "stopped by a callback"
        # A failed line search can still have evaluated a lower loss, during an iteration that never
        # completed: count it as the last completed one.
        result.best_iteration = min(result.best_iteration, len(result.history))
        if settings.ema > 0 and result.history:
            result.image = (average / (1 - settings.ema ** len(result.history))).reshape(shape).astype(np.float32)
        return result


def _lbfgs_message(run: scipy.optimize.OptimizeResult) -> str:
    """scipy's reason in words a user reads: its messages are Fortran status codes."""
    message = str(run.message)
    if "LNSRCH" in message or message.startswith("ABNORMAL"):
        return "the line search found no lower loss"
    if "PROJ_G" in message or "CONVERGENCE" in message:
        return "the gradient is zero: converged"
    if "TOTAL NO. OF F" in message or "maxfun" in message.lower():
        return "too many loss evaluations without an iteration"
    return message.lower()
