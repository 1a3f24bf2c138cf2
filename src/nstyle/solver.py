"""The optimisation core every step runs on: one config's loss on one feature network, and its
compiled optimiser, aimed at each step's images in turn.

A whole-image scale, a tile and a video frame differ only in what they aim the solver at and
where they start: the loss's targets are a state its compiled step takes as an argument, so one
compiled step serves every tile of a size and every frame of a chunk, and every scale of a run
where the backend generalises over sizes (:mod:`nstyle.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .backbones import FeatureExtractor, feature_extractor, get_backbone, load_model
from .config import Config
from .losses import Targets, network_input, objective
from .optimize import Callback, Optimizer, OptimizeResult, OptimizerSettings, OptimizerState
from .regions import Regions


def layer_names(cfg: Config) -> tuple[str, ...]:
    """The layers ``cfg`` reads, as the extractor is asked for them."""
    return tuple(s.name for s in (*cfg.content_layers, *cfg.style_layers))


def build_extractor(cfg: Config, precision: str) -> FeatureExtractor:
    """``cfg``'s feature network in ``precision``: the one way a run, a tile worker or a video chunk gets it."""
    return feature_extractor(
        get_backbone(cfg.backbone), load_model(cfg.backbone, cfg.weights), layer_names(cfg), precision
    )


def settings_of(cfg: Config, precision: str, iterations: int) -> OptimizerSettings:
    """``cfg``'s optimiser settings for a run of ``iterations``."""
    return OptimizerSettings(
        cfg.optimizer,
        iterations,
        cfg.lr,
        cfg.beta1,
        cfg.beta2,
        cfg.epsilon,
        cfg.ema,
        loss_scaling=precision == "float16",
    )


class Solver:
    """``cfg``'s loss and its compiled optimiser, built once and aimed at each step's images.

    Built from the first step's content image (any RGB image of the right size: a tile or a
    frame swaps in its own) and its style images, or their statistics computed beforehand
    (``targets``: a tiled scale's, shared by its tiles). ``temporal`` adds the video term;
    ``regions`` (:mod:`nstyle.regions`) make style apply where the masks say, for this and every
    later image it is aimed at with its own (``masked`` does so before any image's regions are known).
    """

    def __init__(
        self,
        cfg: Config,
        extractor: FeatureExtractor,
        precision: str,
        content: Image.Image | np.ndarray,
        styles: Sequence[Image.Image] = (),
        targets: Targets | None = None,
        temporal: bool = False,
        regions: Regions | None = None,
        masked: bool = False,
    ):
        self.cfg, self.extractor = cfg, extractor
        self.prep = extractor.backbone.preprocessing
        picture = content if isinstance(content, Image.Image) else Image.fromarray(np.asarray(content, np.uint8))
        self.loss = objective(cfg, extractor, picture, styles, targets, temporal, regions, masked)
        self.optimizer = Optimizer(self.loss, self.prep.bounds(), settings_of(cfg, precision, cfg.iterations))

    def aim(
        self,
        content: Image.Image | np.ndarray,
        styles: Sequence[Image.Image] | None = None,
        regions: Regions | None = None,
    ) -> None:
        """Aim at a new content image (RGB, any size), new style images when given, and the
        content's regions (at its size) in a masked run."""
        if styles is None:
            self.loss.set_content(network_input(self.extractor, content), regions)
        else:
            self.loss.retarget(
                network_input(self.extractor, content),
                [network_input(self.extractor, s) for s in styles],
                None,
                regions,
            )

    def hold(self, target: np.ndarray | None, mask: np.ndarray | None = None, weight: float = 0.0) -> None:
        """The temporal term's target (RGB float, the previous frame warped), where it counts and
        its weight; None turns it off (a clip's first frame)."""
        assert self.loss.temporal, "a solver built without the temporal term"
        self.loss.hold(None if target is None else self.prep.forward(target), mask, weight)

    def solve(
        self,
        start: np.ndarray,
        iterations: int,
        callbacks: Sequence[Callback] = (),
        resume: OptimizerState | None = None,
    ) -> OptimizeResult:
        """Optimise from ``start`` (network space, HxWx3) for ``iterations``, or continue ``resume``."""
        return self.optimizer.run(start[None], self.prep.inverse, callbacks, resume=resume, iterations=iterations)

    def start(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB image (float or uint8, 0..255) in network space, where :meth:`solve` starts."""
        return self.prep.forward(rgb)

    def loss_at(self, start: np.ndarray) -> float:
        """The total loss at ``start`` (network space), without optimising."""
        return self.loss.value_at(start[None])
