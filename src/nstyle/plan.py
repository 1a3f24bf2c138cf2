"""The plan of a run: which scales run whole and which in tiles, sized to a memory budget.

Peak memory of a stylization grows with the pixels one forward and backward pass sees, and
L-BFGS adds its curvature pairs and working images, so print sizes cannot run whole on most
machines. Coarse scales run whole (composition is global); a scale that would not fit in the
budget runs as overlapping tiles of the largest size that fits, each tile optimised with the
whole style image's statistics, and blended into the image with a feathered window. A size
that cannot fit even in tiles is refused here, before any work, with the size that fits.

Everything here is arithmetic on sizes (no TensorFlow): the memory model is calibrated by
``benchmarks/memory_model.py`` and checked by a test against measured peak RSS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

GB = 2**30
#: Peak bytes per input pixel of a forward and backward pass through a backbone cut at its
#: default layers, in float32, without the optimiser's state: the slope of peak RSS between two
#: sizes less the optimiser's bytes, as ``benchmarks/memory_model.py`` measures it. Fitted with
#: L-BFGS's pairs counted and nstyle's own convolution gradients, which both change the slope.
NETWORK_BYTES = {
    "resnet50": 1110.0,
    "resnet101": 1110.0,  # same default layers (conv1 to conv4_block5): the same cut network
    "resnet152": 1110.0,
    "vgg16": 1760.0,  # VGG19's, scaled by the activations of its default cut (828 vs 900 floats a pixel)
    "vgg19": 1910.0,
    "efficientnet_lite0": 960.0,
}
#: The optimiser's own arrays per input pixel. L-BFGS takes slots for ``_LBFGS.HISTORY`` + 1
#: curvature pairs of two float32 images at its start (so a run that cannot have them fails at
#: once, not mid-run) and keeps about eight working images (the iterate, its gradient, the
#: direction, the trial point and its gradient, the box, the best image). Adam: its moments and
#: images, the difference of its runs' slopes and L-BFGS's.
OPTIMIZER_BYTES = {"lbfgs": 610.0, "adam": 90.0}
#: Activations in 16 bits; the gradients and statistics stay float32, so the saving is less
#: than half (fitted from ResNet50 Adam runs in both precisions).
PRECISION_FACTOR = {"float32": 1.0, "bfloat16": 0.7, "float16": 0.7}
#: What a compiled step adds once, whatever the size (the graph, its constants, allocator slack).
TRACE_BYTES = 0.15 * GB
#: Bytes per pixel of the whole images a tiled scale keeps: the canvas in float32 (12), the content
#: and the upscaled start in 8 bits (6), the style image in float32 for its statistics (12 x
#: style_scale^2, added separately), the result in 8 bits and its file (6).
CANVAS_BYTES = 24.0
#: The smallest tile worth running: below it the overlap is most of the tile.
MIN_TILE = 128
#: Tiles overlap by at least this, more when the deepest layer's receptive field is wider.
MIN_OVERLAP = 64
#: With several workers, scales from this size up run in tiles even when they fit whole, so the
#: workers share them; smaller scales take seconds and run whole.
PARALLEL_MIN_SIDE = 1024
#: Tiles are multiples of the networks' total stride, so every tile's feature maps align.
TILE_MULTIPLE = 32


@dataclass(frozen=True)
class MemoryModel:
    """Peak resident bytes of a run, from the bytes in use now and a per-pixel cost."""

    base: int  # resident bytes now: the interpreter, TensorFlow and the network
    per_pixel: float  # bytes per pixel of one optimisation step (network and optimiser)

    @classmethod
    def for_run(cls, cfg, extractor, precision: str, base: int | None = None) -> MemoryModel:
        """The model for ``cfg``'s backbone, layers, optimiser and ``precision``, from this process's size now.

        The per-pixel cost is the backbone's measured figure, scaled by how many activations the
        run's layers need relative to the backbone's default layers (a deeper cut costs more).
        """
        from .backbones import default_activation_ratio

        network = NETWORK_BYTES.get(cfg.backbone, max(NETWORK_BYTES.values()))
        network *= default_activation_ratio(extractor) * PRECISION_FACTOR.get(precision, 1.0)
        return cls(resident_bytes() if base is None else base, network + OPTIMIZER_BYTES[cfg.optimizer])

    def whole(self, pixels: int) -> int:
        """Peak bytes of optimising a ``pixels`` image in one piece."""
        return int(self.base + TRACE_BYTES + self.per_pixel * pixels + CANVAS_BYTES * pixels)

    def tiled(self, tile_pixels: int, image_pixels: int, style_pixels: int, workers: int = 1) -> int:
        """Peak bytes of a tiled scale: the whole images here, one tile in each of ``workers``.

        Each worker process beyond this one holds its own TensorFlow and network (``base``).
        """
        tile = TRACE_BYTES + self.per_pixel * tile_pixels
        extra = (workers - 1) * self.base if workers > 1 else 0
        return int(self.base + CANVAS_BYTES * image_pixels + 12 * style_pixels + workers * tile + extra)


def resident_bytes() -> int:
    """This process's resident memory now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def default_budget() -> int:
    """A safe share of the memory available now: what this process holds, plus 80% of what is free."""
    import psutil

    return int(resident_bytes() + 0.8 * psutil.virtual_memory().available)


def check_budget(gigabytes: float | None) -> int:
    """``--max-memory`` in bytes (None: :func:`default_budget`); more than the machine has is an error."""
    if gigabytes is None:
        return default_budget()
    import psutil

    total = psutil.virtual_memory().total
    if gigabytes * GB > total:
        raise ConfigError(f"max_memory: {gigabytes:g} GB is more than this machine's {total / GB:.1f} GB")
    return int(gigabytes * GB)


@dataclass(frozen=True)
class Tile:
    """One tile of a pass: its box in the scale's image, and the group it runs with."""

    top: int
    left: int
    height: int
    width: int
    group: int = 0  # tiles of one group never overlap: they can run at once

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def index(self, shape: tuple[int, ...]) -> tuple[slice, slice] | tuple[np.ndarray, np.ndarray]:
        """Where the tile lies in an image of ``shape``: its box, or, for a tile of a wrapping
        grid that crosses the image's edge, its rows and columns taken round the other side."""
        height, width = shape[:2]
        if self.top + self.height <= height and self.left + self.width <= width:
            return self.box
        rows = np.arange(self.top, self.top + self.height) % height
        return np.ix_(rows, np.arange(self.left, self.left + self.width) % width)


@dataclass(frozen=True)
class Step:
    """One scale of the run: its size and iterations, whole or as tiles."""

    scale: int  # 1-based
    height: int
    width: int
    iterations: int
    estimate: int  # expected peak bytes
    tile: int | None = None  # tile side in px; None: the whole image at once
    overlap: int = 0
    style_pixels: int = 0
    wrap: bool = False  # a tileable scale: its grid wraps round the edges, as the picture does

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    @property
    def torus(self) -> tuple[int, int] | None:
        """(height, width) when the grid wraps (:func:`feather` needs it), else None."""
        return (self.height, self.width) if self.wrap else None

    @property
    def passes(self) -> list[int]:
        """Iterations of each pass over the tiles: two passes, the second on a shifted grid, when
        there are two or more iterations, so no seam stays in one place."""
        if self.iterations < 2:
            return [self.iterations]
        return [math.ceil(self.iterations / 2), self.iterations // 2]

    def tiles(self, pass_index: int = 0) -> list[Tile]:
        """The tiles of pass ``pass_index``; odd passes shift the grid, so no seam stays in one
        place. A wrapping grid spaces its tiles evenly round the picture as if it were a torus
        (:func:`torus_starts`): tiles cross the edge into the first ones (:meth:`Tile.index`), and
        the picture's wrap keeps clear of every tile's edge."""
        assert self.tile is not None
        th, tw = min(self.tile, self.height), min(self.tile, self.width)
        shift = pass_index % 2 == 1
        if self.wrap:
            rows = torus_starts(self.height, th, self.overlap, shift)
            cols = torus_starts(self.width, tw, self.overlap, shift)
            return colour([Tile(r, c, th, tw) for r in rows for c in cols], (self.height, self.width))
        rows = tile_starts(self.height, th, th - self.overlap, shift)
        cols = tile_starts(self.width, tw, tw - self.overlap, shift)
        return colour([Tile(r, c, th, tw) for r in rows for c in cols])

    def describe(self, scales: int) -> str:
        where = f"{self.width}x{self.height}"
        if not self.tiled:
            return f"scale {self.scale}/{scales}: {where} whole, ~{self.estimate / GB:.1f} GB"
        count = len(self.tiles(0))
        return (
            f"scale {self.scale}/{scales}: {where} in {count} tiles of {self.tile} px "
            f"(overlap {self.overlap} px, {len(self.passes)} passes), ~{self.estimate / GB:.1f} GB"
        )


@dataclass(frozen=True)
class Plan:
    """Every step of a run, and the budget it was made for."""

    steps: list[Step]
    budget: int
    workers: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max(s.estimate for s in self.steps)

    @property
    def tiled(self) -> bool:
        return any(s.tiled for s in self.steps)

    def describe(self) -> list[str]:
        return [s.describe(len(self.steps)) for s in self.steps]


def make_plan(
    shapes: Sequence[tuple[int, int]],
    iterations: Sequence[int],
    model: MemoryModel,
    budget: int,
    overlap: int,
    style_scale: float = 1.0,
    workers: int = 1,
    tile: int = 0,
) -> Plan:
    """Plan scales of ``shapes`` (height, width), coarse to fine, within ``budget`` bytes.

    A scale runs whole when it fits, else in square tiles of the largest multiple of
    :data:`TILE_MULTIPLE` that fits, overlapping by ``overlap`` px. A scale that fits neither way
    raises :class:`ConfigError` naming the largest size that would. ``tile`` (px) tiles every
    scale larger than it with tiles of that side, overlapping by at most a third of it.
    """
    steps, forced = [], tile
    for scale, ((height, width), its) in enumerate(zip(shapes, iterations), 1):
        pixels = height * width
        style_pixels = int(pixels * style_scale**2)
        whole = model.whole(pixels)
        side = max(height, width)
        if forced and side > forced:
            estimate = model.tiled(min(forced, height) * min(forced, width), pixels, style_pixels, workers)
            if estimate > budget:
                raise ConfigError(
                    f"tile: {forced} px tiles of a {width}x{height} image need about {estimate / GB:.1f} GB, "
                    f"over the {budget / GB:.1f} GB budget (--max-memory); use smaller tiles"
                )
            steps.append(Step(scale, height, width, its, estimate, forced, min(overlap, forced // 3), style_pixels))
            continue
        if whole <= budget and (workers == 1 or side < PARALLEL_MIN_SIDE):
            steps.append(Step(scale, height, width, its, whole))
            continue
        smallest = max(MIN_TILE, 3 * overlap)
        tile = _largest_tile(model, budget, pixels, style_pixels, workers, side, smallest)
        if tile is None:
            if whole <= budget:  # workers asked for, but not even the smallest tile fits each: run whole here
                steps.append(Step(scale, height, width, its, whole))
                continue
            raise ConfigError(_too_big(model, budget, height, width, style_scale, workers, smallest))
        if workers > 1:  # small enough that every group has tiles for the workers to share
            tile = min(tile, max(smallest, -(-side // (workers + 1) // TILE_MULTIPLE) * TILE_MULTIPLE + overlap))
        if tile >= side and whole <= budget:
            steps.append(Step(scale, height, width, its, whole))
            continue
        estimate = model.tiled(min(tile, height) * min(tile, width), pixels, style_pixels, workers)
        steps.append(Step(scale, height, width, its, estimate, tile, min(overlap, tile // 2), style_pixels))
    return Plan(steps, budget, workers)


def _largest_tile(
    model: MemoryModel, budget: int, pixels: int, style_pixels: int, workers: int, side: int, smallest: int
) -> int | None:
    tile = None
    for candidate in range(smallest, max(side, smallest) + TILE_MULTIPLE, TILE_MULTIPLE):
        if model.tiled(candidate**2, pixels, style_pixels, workers) > budget:
            break
        tile = candidate
    return tile


def _too_big(
    model: MemoryModel, budget: int, height: int, width: int, style_scale: float, workers: int, smallest: int
) -> str:
    """The one line that refuses a size: what it needs, and the largest size that fits."""
    aspect = min(height, width) / max(height, width)
    need = model.tiled(smallest**2, height * width, int(height * width * style_scale**2), workers)
    fits = 0
    for size in range(max(height, width), 0, -64):
        pixels = int(size * size * aspect)
        if model.tiled(smallest**2, pixels, int(pixels * style_scale**2), workers) <= budget:
            fits = size
            break
    advice = f"--size {fits} fits" if fits >= MIN_TILE else "nothing fits: raise --max-memory"
    return (
        f"size: {max(height, width)} px needs about {need / GB:.1f} GB even in tiles, over the "
        f"{budget / GB:.1f} GB budget (--max-memory); {advice}"
    )


def tile_starts(length: int, tile: int, step: int, shift: bool = False) -> list[int]:
    """Start offsets of tiles of ``tile`` px every ``step`` px covering ``length`` px.

    The last tile is moved back to end at the edge (every tile has one size, so one compiled
    step serves them all); ``shift`` starts the grid half a step in, so its seams fall between
    the unshifted grid's.
    """
    if length <= tile:
        return [0]
    starts, position = [], (step // 2 - step if shift else 0)
    while True:
        start = min(max(position, 0), length - tile)
        starts.append(start)
        if start >= length - tile:
            return sorted(set(starts))
        position += step


def torus_starts(length: int, tile: int, overlap: int, shift: bool = False) -> list[int]:
    """Start offsets of tiles of ``tile`` px spaced evenly round a ``length`` px loop, neighbours
    (the last and the first too) overlapping by at least ``overlap`` px; ``shift`` moves them
    :func:`shift_offset` on. Tiles that run past ``length`` continue from 0.

    A loop has no first pixel, so the grid is turned to keep the wrap (0) as far as it can be
    from the tile edges of both passes, where the network saw padding. A loop no longer than a
    tile gets two tiles, the second rolled half round, so the wrap is inside one of them.
    """
    if length <= tile:
        return [0, length // 2]
    count = math.ceil(length / (tile - overlap))
    spacing = length / count
    moved = shift_offset(spacing, tile)
    start = -_widest_gap(spacing, [0.0, tile, moved, moved + tile]) + (moved if shift else 0.0)
    return sorted(round(start + k * spacing) % length for k in range(count))


def shift_offset(spacing: float, tile: int) -> float:
    """How far the second pass's grid moves along (px, within one ``spacing``): as far as it can be
    from the first pass's tile edges. A grid of ``tile`` px tiles every ``spacing`` px has edges
    at 0 and at ``tile`` modulo the spacing; the moved grid's edges are its offset and the offset
    plus ``tile``, so the offset keeps clear of 0, ``tile`` and ``-tile`` (modulo the spacing).
    Half the spacing, the obvious choice, lands on the first pass's edges whenever a tile is one
    and a half spacings long (tiles overlapping by a third, as ``--tile`` makes them), and then the
    same pixels are a tile's edge in both passes.
    """
    return _widest_gap(spacing, [0.0, tile, -tile])


def _widest_gap(spacing: float, points: Sequence[float]) -> float:
    """The middle of the widest gap between ``points`` on a loop of ``spacing``."""
    on_loop = sorted({p % spacing for p in points})
    gaps = [((on_loop[(i + 1) % len(on_loop)] - p) % spacing or spacing, p) for i, p in enumerate(on_loop)]
    width, start = max(gaps)
    return (start + width / 2) % spacing


def colour(tiles: list[Tile], torus: tuple[int, int] | None = None) -> list[Tile]:
    """Tiles with groups such that no two tiles of a group overlap (greedy, in reading order);
    on a ``torus`` (height, width), overlapping round the edges counts too."""
    out: list[Tile] = []
    for tile in tiles:
        taken = {other.group for other in out if any(_overlap(tile, o) for o in _images(other, torus))}
        group = next(g for g in range(len(out) + 1) if g not in taken)
        out.append(Tile(tile.top, tile.left, tile.height, tile.width, group))
    return out


def _images(tile: Tile, torus: tuple[int, int] | None) -> list[Tile]:
    """``tile`` and, on a ``torus`` (height, width), its copies one loop away in every direction."""
    if torus is None:
        return [tile]
    height, width = torus
    return [
        Tile(tile.top + dy, tile.left + dx, tile.height, tile.width, tile.group)
        for dy in (-height, 0, height)
        for dx in (-width, 0, width)
    ]


def _overlap(a: Tile, b: Tile) -> bool:
    return (
        a.top < b.top + b.height
        and b.top < a.top + a.height
        and a.left < b.left + b.width
        and b.left < a.left + a.width
    )


def window(tile: Tile, tiles: Sequence[Tile], overlap: int, torus: tuple[int, int] | None = None) -> np.ndarray:
    """The tile's share of the picture where it overlaps its neighbours in ``tiles`` (its pass),
    ``(tile.height, tile.width, 1)`` float32, before the shares are normalised (:func:`feather`).

    On each side where a tile of the same row or column overlaps it, the share rises from 0 to 1
    across ``overlap`` px (a raised cosine) in the middle of the two tiles' common strip, as far
    as it can be from both tiles' edges; the neighbour's share falls there in step. The tile's
    outermost pixels, which the network saw beside its padding, have share 0 wherever a
    neighbour covers them; a side with no neighbour (the picture's own edge) keeps 1 to the edge.
    On a ``torus`` (height, width: a wrapping grid) the tiles across the picture's edge are
    neighbours too.
    """
    rows, cols = np.ones(tile.height), np.ones(tile.width)
    for e in (image for other in tiles for image in _images(other, torus)):
        if not _overlap(tile, e):
            continue
        if e.left == tile.left and e.top != tile.top:  # above or below, same column
            common = e.top + e.height - tile.top if e.top < tile.top else tile.top + tile.height - e.top
            rows = np.minimum(rows, _ramp(tile.height, common, overlap, e.top < tile.top))
        elif e.top == tile.top and e.left != tile.left:  # left or right, same row
            common = e.left + e.width - tile.left if e.left < tile.left else tile.left + tile.width - e.left
            cols = np.minimum(cols, _ramp(tile.width, common, overlap, e.left < tile.left))
    return (rows[:, None] * cols[None, :])[..., None].astype(np.float32)


def feather(tile: Tile, tiles: Sequence[Tile], overlap: int, torus: tuple[int, int] | None = None) -> np.ndarray:
    """How much of the optimised ``tile`` to blend into the canvas, ``canvas += a * (tile - canvas)``
    (:func:`blend`), given the tiles of its pass (``tiles``) whose group comes before it.

    ``a`` is the tile's :func:`window` over the sum of its own and the earlier tiles' windows: a
    running weighted mean, so once every tile of the pass is in, each pixel is the tiles' mean
    weighted by their windows, whatever the order, and a tile's edge, whose window is 0, weighs
    nothing, at corners too, where three or four tiles meet. Where no tile has weight yet the
    canvas keeps what it had, so a later tile starts from the image before the pass there. Tiles
    of one group (no two overlap) can be blended in any order.
    """
    own = window(tile, tiles, overlap, torus)
    total = own.copy()
    for other in (t for t in tiles if t.group < tile.group):
        weight = None
        for image in (i for i in _images(other, torus) if _overlap(tile, i)):
            weight = window(other, tiles, overlap, torus) if weight is None else weight
            y0, y1 = max(tile.top, image.top), min(tile.top + tile.height, image.top + image.height)
            x0, x1 = max(tile.left, image.left), min(tile.left + tile.width, image.left + image.width)
            total[y0 - tile.top : y1 - tile.top, x0 - tile.left : x1 - tile.left] += weight[
                y0 - image.top : y1 - image.top, x0 - image.left : x1 - image.left
            ]
    return np.divide(own, total, out=np.zeros_like(own), where=total > 0)


def _ramp(length: int, common: int, overlap: int, at_start: bool) -> np.ndarray:
    """0 over the first part of a ``common`` px strip at one end, a raised cosine of ``overlap``
    px across its middle, 1 beyond; reversed for the far end."""
    width = max(1, min(overlap, common))
    begin = (common - width) // 2
    weight = np.ones(length)
    weight[:begin] = 0.0
    weight[begin : begin + width] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    return weight if at_start else weight[::-1]


def blend(canvas: np.ndarray, pixels: np.ndarray, tile: Tile, weight: np.ndarray) -> None:
    """Feather ``pixels`` (the optimised tile) into ``canvas`` in place."""
    where = tile.index(canvas.shape)
    region = canvas[where]
    canvas[where] = region + weight * (pixels - region)


def seam_mask(step: Step, pass_index: int, band: int = 2) -> np.ndarray:
    """Where seams of pass ``pass_index`` could show: its cross-fades (where two tiles' results
    mix) and ``band`` px either side of every tile edge inside the image.
    ``benchmarks/print_size.py`` compares the image's gradient there with the rest's."""
    mask = np.zeros((step.height, step.width), bool)
    tiles = step.tiles(pass_index)
    for tile in tiles:
        share = window(tile, tiles, step.overlap, step.torus)[..., 0]
        mask[tile.index(mask.shape)] |= (share > 0.02) & (share < 0.98)
        for edge in (tile.top, tile.top + tile.height):
            if 0 < edge < step.height:
                mask[max(0, edge - band) : edge + band, tile.left : tile.left + tile.width] = True
        for edge in (tile.left, tile.left + tile.width):
            if 0 < edge < step.width:
                mask[tile.top : tile.top + tile.height, max(0, edge - band) : edge + band] = True
    return mask
