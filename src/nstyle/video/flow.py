"""Optical flow between content frames, warping along it, and where it cannot be trusted.

Flow comes from OpenCV's DIS (Kroeger et al., ECCV 2016): dense, fast on a CPU, and a
maintained implementation. The occlusion test is Ruder et al.'s (``consistencyChecker`` in
manuelruder/artistic-videos): a pixel is trusted when following the backward flow and then
the forward flow brings it back to where it started, and it is not on a motion boundary.
"""

from __future__ import annotations

import numpy as np


def flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` (x, y) from RGB frame ``source`` to ``target``: ``source`` at
    pixel p shows what ``target`` shows at ``p + flow[p]``."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (source, target)]
    return dis.calc(grey[0], grey[1], None)


def warp(image: np.ndarray, field: np.ndarray, sharp: bool = False) -> np.ndarray:
    """``image`` sampled at ``p + field[p]`` for every pixel p, edges repeated.

    Bilinear, or with ``sharp`` bicubic (clipped to 0..255): a stylized frame is warped again
    at every frame, and bilinear sampling at fractional offsets blurs it a little each time.
    """
    import cv2

    height, width = field.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    out = cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        xs + field[..., 0],
        ys + field[..., 1],
        cv2.INTER_CUBIC if sharp else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.clip(out, 0, 255) if sharp else out


def reliable(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where the warp into the later frame can be trusted: ``(H, W)`` float32, 1 or 0.

    ``backward`` is the flow from the later frame to the earlier one, ``forward`` from the
    earlier to the later. Following ``backward`` then ``forward`` must return to the start
    (else the pixel was occluded in the earlier frame), and the backward flow must not change
    sharply there (a motion boundary): Ruder et al.'s thresholds.
    """
    forward_back = warp(forward, backward)
    total = forward_back + backward
    inconsistent = (total**2).sum(-1) > 0.01 * ((forward_back**2).sum(-1) + (backward**2).sum(-1)) + 0.5
    dy, dx = np.gradient(backward, axis=(0, 1))
    boundary = (dx**2).sum(-1) + (dy**2).sum(-1) > 0.01 * (backward**2).sum(-1) + 0.002
    return (~(inconsistent | boundary)).astype(np.float32)


def temporal_error(stylized: list[np.ndarray], content: list[np.ndarray]) -> float:
    """Mean absolute difference (0..255) between each stylized frame and the previous stylized
    frame warped into it by the content's flow, over the pixels that flow can be trusted at."""
    errors, weights = 0.0, 0.0
    for t in range(1, len(stylized)):
        backward, forward = flow(content[t], content[t - 1]), flow(content[t - 1], content[t])
        mask = reliable(backward, forward)[..., None]
        warped = warp(stylized[t - 1], backward)
        errors += float((np.abs(stylized[t].astype(np.float32) - warped) * mask).sum())
        weights += float(mask.sum()) * 3
    return errors / max(weights, 1.0)
