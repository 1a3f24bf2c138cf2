"""Regions: where each style applies, from greyscale masks (white: styled, black: the photo kept).

A run's masks are ``mask`` (one region for every style) and ``style_masks`` (one per style,
in order); with both, a style's region is their product. Masks are soft: grey is partly.
Each style's loss compares the style's statistics with those of its own region only (the
statistics are weighted by the mask, :mod:`nstyle.losses`), and at the end the photo's pixels
come back through the feathered union of the regions (:meth:`Regions.keep_photo`), so where
every mask is black the result is the photo.

Where masks overlap, ``style_blend`` shares each pixel between the styles that claim it: a
style's weight at a pixel is its mask times its blend weight over the sum of the claims there,
times the strongest claim. Where a style's region overlaps nobody's it is at full strength; a
style's loss is scaled by the part of its region it keeps after sharing (its *share*), so two
styles on the same region with equal weights are the unmasked 50/50 blend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .errors import ImageError
from .io import load_image

#: Feathering of the photo's blend-back, as a share of the result's longer side.
FEATHER = 0.004


@dataclass(frozen=True)
class Regions:
    """Each style's mask (HxWxS, float32 0..1) at one size, and the style blend weights."""

    masks: np.ndarray
    blend: tuple[float, ...]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL says it."""
        return self.masks.shape[1], self.masks.shape[0]

    def resized(self, size: tuple[int, int]) -> Regions:
        """The masks at ``size`` (width, height): area-averaged down, bilinear up."""
        if size == self.size:
            return self
        return Regions(np.stack([resize(m, size) for m in np.moveaxis(self.masks, -1, 0)], -1), self.blend)

    def crop(self, box: tuple[slice, slice] | tuple[np.ndarray, np.ndarray]) -> Regions:
        """The masks inside ``box`` (rows, columns, or a tile's index arrays): a tile's."""
        return Regions(np.ascontiguousarray(self.masks[box]), self.blend)

    @property
    def union(self) -> np.ndarray:
        """HxW: how much some style claims each pixel (the strongest claim)."""
        return self.masks.max(axis=-1)

    @property
    def weights(self) -> np.ndarray:
        """HxWxS: each style's weight at each pixel, overlaps shared by the blend weights."""
        claims = self.masks * np.asarray(self.blend, np.float32)
        total = claims.sum(axis=-1, keepdims=True)
        shared = np.divide(claims, total, out=np.zeros_like(claims), where=total > 0)
        return (shared * self.union[..., None]).astype(np.float32)

    @property
    def shares(self) -> list[float]:
        """Each style's part of its own region that it keeps after sharing (0 where it has none here)."""
        own, kept = self.masks.sum(axis=(0, 1)), self.weights.sum(axis=(0, 1))
        return [float(k / o) if o > 1e-6 else 0.0 for k, o in zip(kept, own)]

    def keep_photo(self, result: np.ndarray, photo: np.ndarray) -> np.ndarray:
        """``result`` (HxWx3, uint8 or uint16) where the regions are, ``photo`` (same size, 0..255
        uint8) where they are not, across the regions' edges feathered inward: black stays the photo."""
        union = self.resized((result.shape[1], result.shape[0])).union
        sigma = max(1.0, FEATHER * max(union.shape))
        alpha = np.minimum(union, gaussian_filter(union, sigma))[..., None]
        top = 65535.0 if result.dtype == np.uint16 else 255.0
        base = np.asarray(photo, np.float64) * (top / 255.0)
        mixed = alpha * result.astype(np.float64) + (1 - alpha) * base
        return np.clip(np.rint(mixed), 0, top).astype(result.dtype)

    def blend_start(self, start: np.ndarray, photo: np.ndarray) -> np.ndarray:
        """A start image (RGB float) with the photo where no style applies: what the run keeps there."""
        union = self.resized((start.shape[1], start.shape[0])).union[..., None]
        return (union * start + (1 - union) * np.asarray(photo, np.float32)).astype(np.float32)


def resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One float mask at ``size`` (width, height)."""
    shrink = size[0] < mask.shape[1] or size[1] < mask.shape[0]
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = np.asarray(Image.fromarray(mask.astype(np.float32), "F").resize(size, method), np.float32)
    return np.clip(out, 0.0, 1.0)


def load_mask(path: str, what: str) -> np.ndarray:
    """A mask file as float32 HxW in 0..1 (its luminance); not one styled pixel is an error."""
    grey = np.asarray(load_image(path, what).convert("L"), np.float32) / 255.0
    if grey.max() <= 0:
        raise ImageError(f"{what} is black everywhere, so no part would be styled: {path}")
    return grey


def load_regions(
    mask: str | None, style_masks: Sequence[str], styles: int, blend: Sequence[float], size: tuple[int, int]
) -> Regions | None:
    """The run's regions at the photo's ``size`` (width, height), or None when it has no masks."""
    if mask is None and not style_masks:
        return None
    common = resize(load_mask(mask, "mask"), size) if mask is not None else np.ones(size[::-1], np.float32)
    own = [resize(load_mask(p, f"style mask {i + 1}"), size) for i, p in enumerate(style_masks)]
    masks = [common * m for m in own] if own else [common] * styles
    for i, m in enumerate(masks):
        if m.max() <= 0:
            raise ImageError(f"style mask {i + 1} and the mask do not overlap: style {i + 1} would paint nothing")
    return Regions(np.stack(masks, -1), tuple(blend) or (1.0,) * styles)
