"""``stylize``: the whole pipeline as one call, and the record that makes a run repeatable."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .backbones import FeatureExtractor, get_backbone, load_model
from .config import Config, resolve
from .io import ImageSource, fit, load_image
from .losses import StyleTransferLoss, WeightedLayer, tf
from .optimize import Callback, OptimizerSettings, optimize


@dataclass
class StylizeResult:
    """The stylized image, the loss history and everything needed to run it again."""

    image: Image.Image
    history: list[dict[str, float]]
    config: Config
    best_loss: float
    best_iteration: int
    seconds: float
    interrupted: bool = False
    stopped: bool = False
    sources: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The run record written into PNG text and the JSON sidecar; ``nstyle reproduce`` reads it."""
        import keras

        from . import __version__

        return {
            "nstyle": __version__,
            **self.sources,
            "config": self.config.to_dict(),
            "result": {
                "best_loss": self.best_loss,
                "best_iteration": self.best_iteration,
                "iterations_run": len(self.history),
                "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3),
            },
            "versions": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "numpy": np.__version__,
                "pillow": Image.__version__,
            },
        }


def stylize(
    content: ImageSource,
    style: ImageSource,
    *,
    preset: str = "default",
    config: Config | str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    **options: Any,
) -> StylizeResult:
    """Stylize ``content`` in the manner of ``style``.

    ``content`` and ``style`` are paths, PIL images or arrays. Settings come from ``preset``,
    then ``config`` (a :class:`Config` replaces the preset; a TOML path is layered on it),
    then ``options`` (any :class:`Config` field, e.g. ``iterations=200, style_weight=1e5``).
    ``callbacks`` see every iteration; ``progress=True`` adds a progress bar.
    """
    cfg = _configure(preset, config, options)
    if cfg.seed is None:
        cfg = dataclasses.replace(cfg, seed=int(np.random.SeedSequence().entropy % 2**32))
    content_img = fit(load_image(content, "content image"), cfg.size, "content image")
    style_img = fit(load_image(style, "style image"), cfg.size, "style image")

    backbone = get_backbone(cfg.backbone)
    extractor = FeatureExtractor(
        backbone, load_model(cfg.backbone, cfg.weights), [s.name for s in (*cfg.content_layers, *cfg.style_layers)]
    )
    prep = backbone.preprocessing
    loss = StyleTransferLoss(
        extractor,
        tf.constant(prep.forward(np.asarray(content_img))[None]),
        tf.constant(prep.forward(np.asarray(style_img))[None]),
        [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.content_layers],
        [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.style_layers],
        cfg.content_weight,
        cfg.style_weight,
        cfg.tv_weight,
    )
    x0 = prep.forward(initial_image(cfg.init, content_img, style_img, cfg.seed))[None]
    settings = OptimizerSettings(cfg.optimizer, cfg.iterations, cfg.lr, cfg.beta1, cfg.beta2, cfg.epsilon)

    callbacks = list(callbacks)
    bar = None
    if progress:
        from .callbacks import ProgressBar

        bar = ProgressBar(cfg.iterations)
        callbacks.insert(0, bar)
    start = time.perf_counter()
    try:
        run = optimize(loss, x0, prep.bounds(), settings, prep.inverse, callbacks)
    finally:
        if bar is not None:
            bar.close()
    return StylizeResult(
        image=Image.fromarray(prep.inverse(run.image[0])),
        history=run.history,
        config=cfg,
        best_loss=run.best_loss,
        best_iteration=run.best_iteration,
        seconds=time.perf_counter() - start,
        interrupted=run.interrupted,
        stopped=run.stopped,
        sources={"content": _describe_source(content), "style": _describe_source(style)},
    )


def initial_image(init: str, content: Image.Image, style: Image.Image, seed: int) -> np.ndarray:
    """The starting RGB pixels (float, 0..255) at the content image's size."""
    if init == "content":
        return np.asarray(content, np.float32)
    if init == "style":
        return np.asarray(style.resize(content.size, Image.Resampling.LANCZOS), np.float32)
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (content.height, content.width, 3)).astype(np.float32)


def _configure(preset: str, config: Config | str | os.PathLike | None, options: dict[str, Any]) -> Config:
    if isinstance(config, Config):
        return Config.from_dict({**config.to_dict(), **{k: v for k, v in options.items() if v is not None}})
    return resolve(preset, config, options)


def _describe_source(source: ImageSource) -> dict[str, Any] | None:
    """Path and content hash of a file input (None for in-memory images), for reproduce."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return None
