"""Pictures that wrap: the seam metric, the tiled preview, and the roll offsets of ``tileable = "roll"``.

A tileable picture's right edge continues into its left and its bottom into its top. The seam
metric says how well: the mean absolute difference across the wrap (last column against first,
last row against first) over the mean difference between neighbouring columns and rows inside
the picture. A picture that wraps perfectly scores about 1 (the wrap is one more neighbour);
ordinary photographs and paintings score several times that.

Two ways to make one (``--tileable METHOD``): ``wrap`` pads the network's input circularly by
about the network's effective receptive radius (:meth:`~nstyle.backbones.FeatureExtractor.__call__`),
so features at an edge see the opposite edge as their neighbourhood and the gradient flows
across it; ``roll`` rolls the image (and the loss's spatial targets) by a random offset each
Adam step, so that every seam is inside the picture some of the time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter1d

#: The share of each side over which :func:`seamless` fades a photo into its rolled copy.
BAND = 0.25


def seam_score(image: Image.Image | np.ndarray) -> float:
    """Mean |difference across the wrap| / mean |difference between neighbours|, columns and rows together."""
    a = np.asarray(image, np.float64)
    across = np.abs(a[:, 0] - a[:, -1]).mean() + np.abs(a[0] - a[-1]).mean()
    inside = np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=0)).mean()
    return float(across / max(inside, 1e-12))


def tiled(image: Image.Image, across: int, down: int | None = None) -> Image.Image:
    """``image`` repeated ``across`` x ``down`` times, as a wall or a game texture would show it."""
    down = down or across
    out = Image.new(image.mode, (image.width * across, image.height * down))
    for row in range(down):
        for col in range(across):
            out.paste(image, (col * image.width, row * image.height))
    return out


def roll_offset(rng: np.random.Generator, height: int, width: int, multiple: int) -> tuple[int, int]:
    """A random (rows, columns) offset in multiples of ``multiple`` px (the network's deepest
    stride, so spatial targets roll by whole feature positions)."""
    return (
        int(rng.integers(0, max(1, height // multiple))) * multiple,
        int(rng.integers(0, max(1, width // multiple))) * multiple,
    )


def seamless(image: np.ndarray, offsets: tuple[int, int] | None = None, band: float = BAND) -> np.ndarray:
    """``image`` (HxWxC) made to wrap by crossfading it with itself rolled by ``offsets`` (rows, columns).

    A photograph does not wrap, and a photo run's content term holds its edges, seam and all;
    so a tileable photo run starts from this instead. The offset-and-blend that image editors
    call "make seamless" (GIMP's filter), done one axis at a time: near the left and right
    edges the picture fades into its rolled copy, whose own seam lies in the middle, where the
    original shows. ``band`` is the share of each side that fades; the middle keeps the
    original untouched. Columns first, then rows, so neither pass brings back a seam. The
    picture's new wrap is the rolled copy's: by default (:func:`calm_offsets`) along the
    calmest line of the photo's middle, where a stroke crossing it is least likely to be cut.
    """
    out = np.asarray(image, np.float32)
    offsets = offsets or calm_offsets(out, band)
    for axis, offset in ((1, offsets[1]), (0, offsets[0])):
        size = out.shape[axis]
        weight = _edge_ramp(size, _band_px(size, band)).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = weight * out + (1 - weight) * np.roll(out, offset, axis=axis)
    return out


def calm_offsets(image: np.ndarray, band: float = BAND) -> tuple[int, int]:
    """The (rows, columns) roll for :func:`seamless`: for each axis, among the offsets whose
    rolled seam stays in the untouched middle, the one whose new wrap falls where neighbouring
    lines of ``image`` differ least (averaged over a few lines)."""
    a = np.asarray(image, np.float32)
    return _calm_offset(a, 0, band), _calm_offset(a, 1, band)


def _calm_offset(image: np.ndarray, axis: int, band: float) -> int:
    size = image.shape[axis]
    margin = _band_px(size, band)
    offsets = np.arange(margin + 1, size - margin)
    if offsets.size == 0:
        return size // 2
    others = tuple(a for a in range(image.ndim) if a != axis)
    steps = np.abs(np.diff(image, axis=axis)).mean(axis=others)  # steps[k]: line k against line k + 1
    activity = uniform_filter1d(steps, max(1, margin // 4), mode="nearest")
    return int(
        offsets[np.argmin(activity[size - 1 - offsets])]
    )  # rolled by o, the wrap joins lines size-1-o and size-o


def _band_px(size: int, band: float) -> int:
    return max(1, round(band * size))


def _edge_ramp(size: int, band: int) -> np.ndarray:
    """0 at both ends, rising smoothly (smoothstep) to 1 ``band`` px in."""
    distance = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size))
    t = np.clip(distance / band, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)
