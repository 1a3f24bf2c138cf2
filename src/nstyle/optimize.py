"""The optimisation loop: gradients on the image itself, Adam or L-BFGS, best image kept.

The image lives in the network's input space (as in the notebook), so clipping to valid
pixels is a per-channel box. Adam runs as one compiled step (forward, gradient, update, clip
and best-image bookkeeping in one program, so no step pays Python's or an eager framework's
overhead), written in ``keras.ops`` as a pure function of the image, Adam's moments and the
loss's state, which the backend compiles (:mod:`nstyle.backends`). L-BFGS is nstyle's own
projected L-BFGS (see :class:`_LBFGS` for why not SciPy's L-BFGS-B) around a compiled
evaluation. A float16 network gets dynamic loss scaling in both.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_limits

from .backends import load_keras, ops
from .events import Progress
from .outcome import COMPLETED, Ending, Outcome, Stop, stopped
from .signals import check, deferred

keras = load_keras()
K = keras.ops
backend = ops()

#: What is minimised: a function of the image alone, or an object whose ``evaluate(image,
#: state)`` is a pure function of the image and its ``state`` (:class:`~nstyle.losses.StyleTransferLoss`);
#: such an object may give each step its own state (``step_state()``), else every step has ``state``.
LossFn = Any


def _pure(loss_fn: LossFn) -> tuple[Callable, Callable[[], Any]]:
    """``loss_fn`` as a pure function ``(image, state) -> losses`` and a getter of the next step's state."""
    if hasattr(loss_fn, "evaluate"):
        return loss_fn.evaluate, getattr(loss_fn, "step_state", lambda: loss_fn.state)
    return (lambda x, state: loss_fn(x)), tuple


def _float32(value: float) -> Any:
    return K.convert_to_tensor(np.float32(value))


def _scaled_value_and_grad(evaluate: Callable, loss_scaling: bool) -> Callable:
    """``(x, loss_scale, state) -> (losses, gradient of the total)``, the loss scaled for the
    backward pass and the gradient unscaled, when the network is float16."""

    def scaled_total(x, loss_scale, state):
        losses = evaluate(x, state)
        return (losses["total"] * loss_scale if loss_scaling else losses["total"]), losses

    gradient = backend.value_and_grad(scaled_total)

    def value_and_grad(x, loss_scale, state):
        _, losses, grad = gradient(x, loss_scale, state)
        return losses, grad / loss_scale if loss_scaling else grad

    return value_and_grad


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
    outcome: Outcome = COMPLETED
    state: OptimizerState | None = None  # where it stopped, when stopped by a signal: to checkpoint


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
    return Optimizer(loss_fn, bounds, settings).run(x0, to_rgb, callbacks, resume)


class Optimizer:
    """One compiled optimiser, run again and again from new starts: tiles, frames, scales.

    Compiling a step (tracing the loss into a graph, and the backend optimising that graph at
    its first call) costs more than many steps; a tiled run optimises dozens of
    same-sized tiles with one loss whose targets it swaps (``set_content``), and a multi-scale
    run one image at each size (``retarget``). L-BFGS's evaluation takes images of any size,
    so it is compiled once for all of them where the backend generalises over shapes
    (TensorFlow; XLA compiles one program per size); Adam keeps moments of the image's shape,
    so it gets one compiled step per size.
    """

    def __init__(self, loss_fn: LossFn, bounds: tuple[np.ndarray, np.ndarray], settings: OptimizerSettings):
        self.loss_fn, self.bounds, self.settings = loss_fn, bounds, settings
        self._engines: dict[tuple[int, ...], _Adam | _LBFGS] = {}

    def run(
        self,
        x0: np.ndarray,
        to_rgb: Callable[[np.ndarray], np.ndarray],
        callbacks: Sequence[Callback] = (),
        resume: OptimizerState | None = None,
        iterations: int | None = None,
    ) -> OptimizeResult:
        """Optimise from ``x0`` (or ``resume``) for ``iterations`` (default: the settings')."""
        iterations = iterations or self.settings.iterations
        x0 = np.asarray(x0, np.float32)
        shape = tuple(np.shape(resume.image if resume is not None else x0))
        adam = self.settings.name == "adam"
        key = shape if adam else ()
        if key not in self._engines:
            self._engines[key] = (_Adam if adam else _LBFGS)(self.loss_fn, shape, self.bounds, self.settings)
        return self._engines[key].run(x0, to_rgb, list(callbacks), resume, iterations)


def notify(callbacks: Sequence[Callback], progress: Progress) -> None:
    """Each callback hears ``progress``, in order (a Stop from one ends the iteration there)."""
    for callback in callbacks:
        callback(progress)


class _AdamTensors(NamedTuple):
    """What one Adam step takes and returns besides the loss scale and the loss's state."""

    image: Any
    m: Any
    v: Any
    count: Any
    best: Any
    best_loss: Any
    average: Any


class _Adam:
    """Keras's Adam, step for step (the same arithmetic in the same order), as one compiled pure
    function: ``(image, moments, step count, best, best loss, average, loss scale, loss state)``
    in, their next values out. Its state stays in the backend's tensors between steps."""

    def __init__(self, loss_fn: LossFn, shape: tuple[int, ...], bounds, settings: OptimizerSettings):
        self.settings = settings
        evaluate, self.loss_state = _pure(loss_fn)
        value_and_grad = _scaled_value_and_grad(evaluate, settings.loss_scaling)
        low, high = (np.asarray(b, np.float32) for b in bounds)
        lr, beta1, beta2 = np.float32(settings.lr), np.float32(settings.beta1), np.float32(settings.beta2)
        decay = np.float32(settings.ema)

        def step(x, m, v, count, best, best_loss, average, loss_scale, state):
            losses, grad = value_and_grad(x, loss_scale, state)
            # The loss was measured on the image before this update: that is the one to keep.
            improved = losses["total"] < best_loss
            new_best = K.where(improved, x, best)
            new_best_loss = K.where(improved, losses["total"], best_loss)
            local_step = K.cast(count + 1, "float32")
            alpha = lr * K.sqrt(1 - K.power(beta2, local_step)) / (1 - K.power(beta1, local_step))
            new_m = m + K.multiply(K.subtract(grad, m), 1 - settings.beta1)
            new_v = v + K.multiply(K.subtract(K.square(grad), v), 1 - settings.beta2)
            new_x = x - K.divide(K.multiply(new_m, alpha), K.add(K.sqrt(new_v), settings.epsilon))
            new_x = K.clip(new_x, low, high)
            # decided when traced: no extra pass over the image when EMA is off
            new_average = decay * average + (1 - decay) * new_x if settings.ema > 0 else average
            new = (new_x, new_m, new_v, count + 1, new_best, new_best_loss, new_average)
            if not settings.loss_scaling:  # decided when traced: float32 and bfloat16 never overflow
                return losses, new, K.convert_to_tensor(True)
            finite = K.all(K.isfinite(grad))
            old = (x, m, v, count, best, best_loss, average)
            return losses, tuple(K.where(finite, a, b) for a, b in zip(new, old)), finite

        self.step = backend.compile(step)

    def run(self, x0, to_rgb, callbacks, resume, iterations) -> OptimizeResult:
        settings = self.settings
        scale = LossScale(settings.loss_scaling)
        result = OptimizeResult(image=x0, best_loss=math.inf, best_iteration=0)
        zeros = np.zeros_like(x0)
        fresh = [np.int64(0), np.float32(settings.lr), zeros, zeros]  # Keras's Adam's variables, in its order
        start = resume or OptimizerState(0, x0, x0, math.inf, 0, zeros, fresh, 1.0, [])
        count, _, m, v = start.slots
        as_float = lambda a: K.convert_to_tensor(np.asarray(a, np.float32))  # noqa: E731
        now = _AdamTensors(
            *map(as_float, (start.image, m, v)),
            K.convert_to_tensor(np.int32(count)),
            *map(as_float, (start.best, start.best_loss, start.average)),
        )
        scale.value = start.loss_scale
        result.history, result.best_loss = list(start.history), start.best_loss
        best_iteration = start.best_iteration

        def numpy(name: str) -> np.ndarray:
            return backend.to_numpy(getattr(now, name))

        def state() -> OptimizerState:
            slots = [np.int64(numpy("count")), np.float32(settings.lr), numpy("m"), numpy("v")]
            return OptimizerState(
                len(result.history),
                numpy("image"),
                numpy("best"),
                float(numpy("best_loss")),
                best_iteration,
                numpy("average"),
                slots,
                scale.value,
                list(result.history),
            )

        try:
            for i in range(len(result.history) + 1, iterations + 1):
                check()  # a stop signal whose first raise something swallowed
                with deferred():  # a stop signal waits for the step and its bookkeeping: the state stays whole
                    while True:
                        out, new, finite = self.step(*now, _float32(scale.value), self.loss_state())
                        now = _AdamTensors(*new)
                        if not scale.update(bool(backend.to_numpy(finite))):
                            break
                    losses = {k: float(backend.to_numpy(v)) for k, v in out.items()}
                    if losses["total"] < result.best_loss:
                        result.best_loss, best_iteration = losses["total"], i
                    result.history.append(losses)
                    notify(callbacks, Progress(i, iterations, losses, lambda: to_rgb(numpy("image")[0]), state))
        except KeyboardInterrupt as e:
            result.outcome, result.state = stopped(e), state()
        except Stop as e:
            result.outcome = stopped(e)
        result.image, result.best_iteration = numpy("best"), best_iteration
        if not math.isfinite(result.best_loss):  # interrupted before the first step finished
            result.image = numpy("image")
        elif settings.ema > 0:
            result.image = numpy("average") / (1 - settings.ema ** len(result.history))
        return result


class _LBFGS:
    """L-BFGS on the image, its box kept by projection: one loss evaluation per iteration, mostly.

    Each iteration takes the quasi-Newton direction from the last ``HISTORY`` curvature pairs
    (the two-loop recursion), with the pixels held at a bound by their gradient left out;
    steps along it, clipped to the box; and accepts the step at once when the loss falls
    enough (Armijo), else shortens it by quadratic interpolation: about 1.05 evaluations an
    iteration. SciPy's L-BFGS-B, used before, was slower an iteration, and its exact bound
    handling (generalised Cauchy point, subspace minimisation) made longer histories cost more
    time than they saved; here a pair
    costs four passes over the image, so 20 pairs pay. The pairs are float32 (their differences
    are exact enough; float64 would double memory): 20 of them hold what L-BFGS-B's 10 float64
    pairs held. Its evaluation is compiled once for images of any size; each :meth:`run` takes
    its box and shape from its start.
    """

    HISTORY = 20
    FIRST_STEP = 0.05  # the first step's largest pixel change, as a share of the box: no curvature known yet
    ARMIJO = 1e-4  # the share of the predicted decrease a step must achieve
    MAX_TRIES = 10  # shortened steps before the direction is given up

    def __init__(self, loss_fn: LossFn, shape: tuple[int, ...], bounds, settings: OptimizerSettings):
        self.bounds, self.settings = bounds, settings
        evaluate, self.loss_state = _pure(loss_fn)
        self.value_and_grad = backend.compile(_scaled_value_and_grad(evaluate, settings.loss_scaling), any_shape=True)

    def _evaluate(self, x: np.ndarray, scale: LossScale) -> tuple[dict[str, float], np.ndarray]:
        """The losses at ``x`` and the total's gradient, flat float32; a non-finite total is inf."""
        image = K.convert_to_tensor(x.reshape(self.shape))
        while True:
            losses, grad = self.value_and_grad(image, _float32(scale.value), self.loss_state())
            grad = np.asarray(backend.to_numpy(grad), np.float32).ravel()
            finite = bool(np.isfinite(grad).all())
            if not scale.update(finite):
                break
        values = {k: float(backend.to_numpy(v)) for k, v in losses.items()}
        if not (finite and math.isfinite(values["total"])):
            values["total"] = math.inf  # a step into overflow is a step to shorten, never one to take
        return values, grad

    @staticmethod
    def _direction(grad: np.ndarray, pairs: collections.deque) -> np.ndarray:
        """-H grad, H the inverse Hessian the pairs (s, y, 1/(s.y)) describe (two-loop recursion).

        BLAS's in-place saxpy and sdot instead of NumPy's ``q -= alpha * y`` (which makes a
        temporary): the recursion touches every pair twice, so the temporaries would cost
        about as much as the arithmetic.
        """
        q = grad.copy()
        alphas = []
        for s, y, rho in reversed(pairs):
            alpha = rho * blas.sdot(s, q)
            q = blas.saxpy(y, q, a=-alpha)
            alphas.append(alpha)
        s, y, rho = pairs[-1]
        q = blas.sscal(1.0 / (rho * blas.sdot(y, y)), q)  # the newest pair's curvature scales the start
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            q = blas.saxpy(s, q, a=alpha - rho * blas.sdot(y, q))
        return -q

    def run(self, x0, to_rgb, callbacks, resume, iterations) -> OptimizeResult:
        """The L-BFGS loop, with NumPy's and SciPy's BLAS on one thread meanwhile.

        Its vector work runs between the backend's evaluations, and OpenBLAS's idle workers
        spin for a while after each call, on the cores the next evaluation needs, which then
        runs markedly slower than with one BLAS thread.
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return self._run(x0, to_rgb, callbacks, resume, iterations)

    def _run(self, x0, to_rgb, callbacks, resume, iterations) -> OptimizeResult:
        settings = self.settings
        shape = self.shape = tuple(np.shape(resume.image if resume is not None else x0))
        low, high = (np.broadcast_to(np.asarray(b, np.float32), shape).ravel().copy() for b in self.bounds)
        self.low, self.high = low, high  # the line search's box, for this run's image size
        scale = LossScale(settings.loss_scaling)
        result = OptimizeResult(image=x0, best_loss=math.inf, best_iteration=0)
        x = x0.ravel().astype(np.float32)
        average = np.zeros(x.size, np.float64)
        if resume is not None:
            x, average = resume.image.ravel().astype(np.float32), resume.average.ravel().astype(np.float64)
            result.image, result.best_loss, result.best_iteration = resume.best, resume.best_loss, resume.best_iteration
            result.history, scale.value = list(resume.history), resume.loss_scale
        # The pairs' memory is taken and touched now, not one pair an iteration: the memory plan
        # budgets for the full history, so a run that cannot have it fails at its start. One slot
        # more than the history: each new pair is written into the slot no kept pair uses.
        slots = np.empty((self.HISTORY + 1, 2, x.size), np.float32)
        slots.fill(0)
        next_slot = 0
        pairs: collections.deque = collections.deque(maxlen=self.HISTORY)
        first_step = self.FIRST_STEP * float(np.max(high - low))

        def state() -> OptimizerState:
            return OptimizerState(
                len(result.history),
                x.reshape(shape).copy(),
                result.image,
                result.best_loss,
                result.best_iteration,
                average.reshape(shape),
                [],
                scale.value,
                list(result.history),
            )

        try:
            losses, grad = self._evaluate(x, scale)
            if losses["total"] < result.best_loss:  # the start itself, when no step improves on it
                result.best_loss, result.best_iteration = losses["total"], len(result.history)
                result.image = x.reshape(shape).copy()
            while len(result.history) < iterations:
                check()
                # Pixels at a bound whose gradient points outwards stay there: the rest move.
                held = ((x <= low) & (grad > 0)) | ((x >= high) & (grad < 0))
                free_grad = np.where(held, np.float32(0), grad)
                if not free_grad.any():
                    result.outcome = Outcome(Ending.CONVERGED)
                    break
                direction = self._descent(free_grad, held, pairs, first_step)
                step = self._line_search(x, losses["total"], grad, direction, scale)
                if step is None:
                    if pairs:  # the history misled it: start again from steepest descent
                        pairs.clear()
                        continue
                    result.outcome = Outcome(Ending.NO_PROGRESS)
                    break
                with deferred():  # the iteration's bookkeeping happens whole or not at all
                    new_x, losses, new_grad = step
                    next_slot = self._remember(slots, next_slot, pairs, (x, new_x), (grad, new_grad))
                    x, grad = new_x, new_grad
                    result.history.append(losses)
                    if losses["total"] < result.best_loss:  # always, unless resumed from a better best
                        result.best_loss, result.best_iteration = losses["total"], len(result.history)
                        result.image = x.reshape(shape).copy()
                    if settings.ema > 0:  # no extra pass over the image when EMA is off
                        average = settings.ema * average + (1 - settings.ema) * x
                    notify(
                        callbacks,
                        Progress(
                            len(result.history), iterations, losses, lambda x=x: to_rgb(x.reshape(shape)[0]), state
                        ),
                    )
        except KeyboardInterrupt as e:
            result.outcome, result.state = stopped(e), state()
        except Stop as e:
            result.outcome = stopped(e)
        if settings.ema > 0 and result.history:
            result.image = (average / (1 - settings.ema ** len(result.history))).reshape(shape).astype(np.float32)
        return result

    def _descent(
        self, free_grad: np.ndarray, held: np.ndarray, pairs: collections.deque, first_step: float
    ) -> np.ndarray:
        """L-BFGS's direction from the kept pairs; scaled steepest descent when there are none or it is not downhill."""
        if pairs:
            direction = self._direction(free_grad, pairs)
            direction[held] = 0
            if float(np.dot(direction, free_grad)) < 0:
                return direction
            pairs.clear()
        return -free_grad * np.float32(first_step / float(np.abs(free_grad).max()))

    @staticmethod
    def _remember(slots: np.ndarray, next_slot: int, pairs: collections.deque, xs: tuple, grads: tuple) -> int:
        """Keep the step (``xs``: before, after) and the gradient's change as a pair, written into a
        free slot in place, when there is curvature along the step; returns the next free slot."""
        s, y = slots[next_slot]
        np.subtract(xs[1], xs[0], out=s)
        np.subtract(grads[1], grads[0], out=y)
        sy = float(np.dot(s, y))
        if sy > 1e-10 * float(np.dot(y, y)):  # curvature along the step: a pair H may use
            pairs.append((s, y, 1.0 / sy))
            return (next_slot + 1) % len(slots)
        return next_slot

    def _line_search(
        self, x: np.ndarray, loss: float, grad: np.ndarray, direction: np.ndarray, scale: LossScale
    ) -> tuple[np.ndarray, dict[str, float], np.ndarray] | None:
        """The first step along ``direction`` (from length 1, shortened) that lowers the loss enough.

        Returns the new point with its losses and gradient, or None when every try failed and
        none lowered the loss at all (the best of tries that lowered it a little is taken).
        """
        t, fallback = 1.0, None
        for _ in range(self.MAX_TRIES):
            new_x = np.clip(x + np.float32(t) * direction, self.low, self.high)
            predicted = float(np.dot(grad, new_x - x))  # the first-order change of the projected step
            if predicted >= 0:  # clipping left nothing of the step
                return fallback
            losses, new_grad = self._evaluate(new_x, scale)
            total = losses["total"]
            if total < loss and total <= loss + self.ARMIJO * predicted:  # strictly lower, even where float32 rounds
                return new_x, losses, new_grad
            if total < loss and (fallback is None or total < fallback[1]["total"]):
                fallback = (new_x, losses, new_grad)
            # The minimum of the parabola through the loss, its slope at 0, and the loss at t;
            # kept between a tenth and a half of t, so a wild fit neither stalls nor barely moves.
            slope = predicted / t
            curvature = total - loss - slope * t if math.isfinite(total) else math.inf
            t = min(max(-slope * t * t / (2 * curvature), 0.1 * t), 0.5 * t) if curvature > 0 else 0.5 * t
        return fallback
