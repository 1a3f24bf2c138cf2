"""Colour control for style transfer (Gatys, Ecker, Bethge, Hertzmann & Shechtman, 2016).

Two ways to keep the photo's colours while taking the painting's strokes:

- ``luminance``: transfer style on luminance only (both images turned grey, the style's
  luminance matched to the content's mean and spread), then put the content's chroma back.
- ``histogram``: first recolour the style image so its pixel colours have the content's mean
  and covariance, then transfer as usual.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), np.float64)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def luminance(img: Image.Image) -> np.ndarray:
    """The Y channel (0..255) of an RGB image."""
    return _pixels(img) @ RGB_TO_YIQ[0]


def grey(y: np.ndarray) -> Image.Image:
    """A luminance map as a grey RGB image (what the network sees in luminance mode)."""
    return _image(np.repeat(y[..., None], 3, axis=-1))


def matched_luminance(style: Image.Image, content: Image.Image) -> Image.Image:
    """The style's luminance with the content's mean and standard deviation, as grey RGB."""
    s, c = luminance(style), luminance(content)
    return grey((s - s.mean()) / (s.std() + 1e-8) * c.std() + c.mean())


def restore_chroma(result: Image.Image, content: Image.Image) -> Image.Image:
    """``result``'s luminance with ``content``'s colour (I and Q of YIQ)."""
    return _image(restore_chroma_array(_pixels(result), content))


def restore_chroma_array(result: np.ndarray, content: Image.Image) -> np.ndarray:
    """:func:`restore_chroma` on float RGB pixels in 0..255 (a 16-bit result's, unrounded)."""
    size = (result.shape[1], result.shape[0])
    content = content.resize(size, Image.Resampling.LANCZOS) if content.size != size else content
    yiq = _pixels(content) @ RGB_TO_YIQ.T
    yiq[..., 0] = result @ RGB_TO_YIQ[0]
    return yiq @ YIQ_TO_RGB.T


def match_histogram(style: Image.Image, content: Image.Image) -> Image.Image:
    """``style`` recoloured by the affine map that gives its pixels the content's mean and covariance.

    ``x' = A (x - mu_s) + mu_c`` with ``A = C_c^1/2 C_s^-1/2`` (symmetric square roots), the
    'colour histogram matching' of Gatys et al. 2016.
    """
    s = _pixels(style).reshape(-1, 3)
    c = _pixels(content).reshape(-1, 3)
    mu_s, mu_c = s.mean(0), c.mean(0)
    cov_s = np.cov(s, rowvar=False) + 1e-3 * np.eye(3)
    cov_c = np.cov(c, rowvar=False) + 1e-3 * np.eye(3)
    a = _sqrtm(cov_c) @ np.linalg.inv(_sqrtm(cov_s))
    return _image(((s - mu_s) @ a.T + mu_c).reshape(style.height, style.width, 3))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(m)
    return (vectors * np.sqrt(np.maximum(values, 0))) @ vectors.T
