"""Video: a clip stylized frame by frame, each frame held to the last (Ruder, Dosovitskiy & Brox 2016).

- :mod:`.frames`: reading clips and frame folders, writing them back (PyAV, which bundles FFmpeg).
- :mod:`.flow`: dense optical flow (OpenCV's DIS), warping, occlusion, the temporal error.
- :mod:`.run`: the frame loop with its temporal loss, chunks in parallel, and resume.
"""

from .run import VideoResult, stylize_video

__all__ = ["VideoResult", "stylize_video"]
