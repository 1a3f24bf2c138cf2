"""Things that watch a run: the progress bars, numbered snapshots, the notebook's strip.

The bars subscribe to the run's events (:mod:`nstyle.events`, through :func:`nstyle.pool.subscribe`),
wherever the work runs; snapshots and the strip are callbacks taking
:class:`~nstyle.optimize.Progress` in this process, since they need the image.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .io import save_image
from .optimize import Progress
from .outcome import Outcome
from .sheets import contact_sheet

#: tqdm's default layout, the count whole: tiles under way move it by fractions of an iteration.
BAR = "{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class ProgressBar:
    """A tqdm bar on stderr: iteration, it/s, ETA, and total/style/content loss.

    In a multi-scale or tiled run the description says where it is (scale i/N, tile j/M), and
    the count moves by fractions of an iteration as tiles finish, so the ETA keeps up.
    """

    def __init__(self, iterations: int, description: str = "stylizing"):
        self.description = description
        self.bar = tqdm(total=iterations, desc=description, unit="it", dynamic_ncols=True, leave=True, bar_format=BAR)

    def __call__(self, p: object) -> None:
        if not isinstance(p, Progress):
            return
        if p.losses:
            self.bar.set_postfix(
                total=f"{p.losses['total']:.4g}",
                style=f"{p.losses['style']:.4g}",
                content=f"{p.losses['content']:.4g}",
                refresh=False,
            )
        if p.stage:
            self.bar.set_description(f"{self.description} ({p.stage})", refresh=False)
        self.bar.update((p.position if p.position is not None else p.iteration) - self.bar.n)

    def finish(self, outcome: Outcome) -> None:
        """Close the bar, its description saying how the run ended when it ended early."""
        if outcome.early:
            self.bar.set_description(f"{self.description} ({outcome.describe()})", refresh=False)
        self.bar.close()


class CountBar:
    """A tqdm bar counting finished items, frames or trials, from their events; the current
    item's iteration (from its :class:`~nstyle.optimize.Progress` events) beside the count."""

    def __init__(self, kind: type, total: int, done: int = 0, unit: str = "item", enabled: bool = True):
        self.kind, self.description = kind, f"{unit}s"
        self.bar = tqdm(
            total=total, initial=done, desc=self.description, unit=unit, dynamic_ncols=True, disable=not enabled
        )
        self.shown = 0.0  # when the current item's iteration was last drawn

    def __call__(self, event: object) -> None:
        if isinstance(event, self.kind):
            label = getattr(event, "key", None)
            if label is not None:
                self.bar.set_postfix_str(f"{label}: {getattr(event, 'status', '')}", refresh=False)
            self.bar.update(1)
        elif isinstance(event, Progress) and time.monotonic() - self.shown >= 0.5:  # a redraw per iteration would flood
            self.shown = time.monotonic()
            self.bar.set_postfix_str(f"iteration {event.iteration}/{event.iterations}")

    def finish(self, outcome: Outcome) -> None:
        """Close the bar, its description saying how the run ended when it ended early."""
        if outcome.early:
            self.bar.set_description(f"{self.description} ({outcome.describe()})", refresh=False)
        self.bar.close()


def snapshot_paths(output: str | Path, every: int, iterations: int) -> list[Path]:
    """Where ``--snapshot-every`` writes: ``out_0050.png`` beside ``out.png`` for each multiple."""
    output = Path(output)
    width = max(4, len(str(iterations)))
    return [
        output.with_name(f"{output.stem}_{i:0{width}d}{output.suffix}") for i in range(every, iterations + 1, every)
    ]


def strip_path(output: str | Path) -> Path:
    """Where ``--strip`` writes: ``out_strip.png`` beside ``out.png``."""
    output = Path(output)
    return output.with_name(f"{output.stem}_strip.png")


class Snapshots:
    """Writes the current image every ``every`` iterations, numbered by iteration."""

    def __init__(self, output: str | Path, every: int, iterations: int, force: bool = False):
        self.every = every
        self.force = force
        self.paths = {int(p.stem.rsplit("_", 1)[1]): p for p in snapshot_paths(output, every, iterations)}

    def __call__(self, p: Progress) -> None:
        if p.iteration in self.paths:
            save_image(Image.fromarray(p.image()), self.paths[p.iteration], force=self.force)


class Strip:
    """Keeps ``count`` evenly spaced intermediate images and lays them out in one picture.

    The notebook showed ten intermediate images in a 2x5 figure; this is that figure.
    """

    def __init__(self, iterations: int, count: int = 10):
        marks = np.linspace(1, iterations, num=min(count, iterations))
        self.marks = set(int(round(m)) for m in marks)
        self.frames: list[tuple[int, Image.Image, float]] = []
        self.last: Progress | None = None

    def __call__(self, p: Progress) -> None:
        self.last = p
        if p.iteration in self.marks:
            self.frames.append((p.iteration, Image.fromarray(p.image()), p.losses["total"]))

    def sheet(self, tile_size: int = 256) -> Image.Image:
        """The captured frames, five to a row, each captioned with iteration and loss.

        A run that stopped early (Ctrl-C, or an optimiser that converged) ends on its last image.
        """
        frames = list(self.frames)
        if self.last is not None and (not frames or frames[-1][0] != self.last.iteration):
            frames.append((self.last.iteration, Image.fromarray(self.last.image()), self.last.losses["total"]))
        tiles = [(img, f"iteration {i}\nloss {loss:.4g}") for i, img, loss in frames]
        return contact_sheet(tiles, columns=5, tile_size=tile_size)
