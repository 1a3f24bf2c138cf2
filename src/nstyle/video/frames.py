"""Clips in and out: video files through PyAV (FFmpeg's libraries), or folders of frames.

Every failure is one line (:class:`~nstyle.errors.VideoError`). A clip is read whole into
memory at the working size (1000 frames of 512 x 288 is 440 MB), which keeps the frame loop
and its chunks simple; ``--max-frames`` bounds it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import NStyleError, VideoError
from ..io import fit, load_image

VIDEO_SUFFIXES = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".gif": "gif"}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: Frames read without --max-frames: a longer clip is refused, not silently cut or run for days.
MAX_FRAMES = 1000
#: A folder of frames has no rate of its own.
FOLDER_RATE = Fraction(24)


@dataclass
class Clip:
    """A clip's frames (RGB uint8, one size) and what writing it back needs."""

    frames: list[np.ndarray]
    rate: Fraction
    source: Path
    audio: bool = False
    variable_rate: bool = False
    total: int = 0  # frames in the source, before --max-frames


def read_clip(path: str | Path, size: int, max_frames: int | None = None) -> Clip:
    """The frames of a video file or a folder of images, each fitted to ``size`` px (longer side)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"input video not found: {path}")
    limit = max_frames if max_frames is not None else MAX_FRAMES
    clip = _read_folder(path, limit) if path.is_dir() else _read_file(path, limit)
    if not clip.frames:
        raise VideoError(f"{path} has no frames")
    if clip.total > limit and max_frames is None:
        raise VideoError(
            f"{path} has {clip.total} frames, more than the {MAX_FRAMES} read without --max-frames; "
            f"pass --max-frames N to stylize the first N (or all {clip.total})"
        )
    try:
        clip.frames = [np.asarray(fit(Image.fromarray(f), size, "video frame")) for f in clip.frames]
    except NStyleError as e:
        raise VideoError(str(e)) from None
    return clip


def _read_folder(folder: Path, limit: int) -> Clip:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
    frames = []
    for file in files[:limit]:
        frame = np.asarray(load_image(file, "video frame"))
        if frames and frame.shape != frames[0].shape:
            raise VideoError(
                f"frames differ in size: {file.name} is {frame.shape[1]}x{frame.shape[0]}, "
                f"{files[0].name} {frames[0].shape[1]}x{frames[0].shape[0]}"
            )
        frames.append(frame)
    return Clip(frames, FOLDER_RATE, folder, total=len(files))


def _read_file(path: Path, limit: int) -> Clip:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path} is not a video PyAV can read ({type(e).__name__})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        stream = container.streams.video[0]
        frames, times, total = [], [], 0
        try:
            for frame in container.decode(stream):
                total += 1
                if total <= limit:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    times.append(frame.time)
                elif total > limit and stream.frames:  # the header knows the count: no need to decode on
                    total = max(total, stream.frames)
                    break
        except av.error.FFmpegError as e:
            if not frames:
                raise VideoError(f"{path} is not a video PyAV can read ({type(e).__name__})") from None
            warnings.warn(
                f"{path}: decoding stopped after {len(frames)} frames ({type(e).__name__})",
                RuntimeWarning,
                stacklevel=3,
            )
        rate = stream.average_rate or stream.guessed_rate or FOLDER_RATE
        steps = np.diff([t for t in times if t is not None])
        variable = len(steps) > 1 and float(steps.max() - steps.min()) > 0.01 * float(np.median(steps))
        return Clip(frames, Fraction(rate), path, bool(container.streams.audio), variable, total)


def write_video(frames: Iterable[np.ndarray], path: Path, rate: Fraction, audio_from: Path | None = None) -> None:
    """Encode RGB frames at ``rate`` into ``path`` (codec from its suffix), with the audio of
    ``audio_from`` copied unchanged when it has some and the container takes it."""
    import av

    codec = VIDEO_SUFFIXES[path.suffix.lower()]
    with av.open(str(path), "w") as out:
        stream = None
        source = av.open(str(audio_from)) if audio_from is not None else None
        try:
            audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
            audio_out = None
            if audio_in is not None:
                try:
                    audio_out = out.add_stream_from_template(audio_in)
                except (ValueError, av.error.FFmpegError):
                    warnings.warn(
                        f"the audio of {audio_from} does not fit a {path.suffix} file: left out",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            for frame in frames:
                if stream is None:
                    stream = _video_stream(out, codec, rate, frame)
                height, width = stream.height, stream.width
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
                for packet in stream.encode(picture):
                    out.mux(packet)
            if stream is not None:
                for packet in stream.encode():
                    out.mux(packet)
            if audio_out is not None:
                for packet in source.demux(audio_in):
                    if packet.dts is None:
                        continue
                    packet.stream = audio_out
                    out.mux(packet)
        finally:
            if source is not None:
                source.close()


def _video_stream(out, codec: str, rate: Fraction, frame: np.ndarray):
    stream = out.add_stream(codec, rate=rate)
    height, width = frame.shape[:2]
    if codec == "gif":
        stream.pix_fmt = "rgb8"
    else:  # 4:2:0 chroma needs even sides: drop a last odd row or column
        stream.pix_fmt = "yuv420p"
        height, width = height - height % 2, width - width % 2
        stream.options = {"crf": "18"} if codec == "libx264" else {"crf": "30", "b:v": "0"}
    stream.width, stream.height = width, height
    return stream


def write_frames(frames: Iterable[np.ndarray], folder: Path) -> int:
    """Write RGB frames as ``frame_00001.png``... into ``folder``; returns how many."""
    from ..io import save_image

    count = 0
    for count, frame in enumerate(frames, 1):
        save_image(Image.fromarray(frame), folder / f"frame_{count:05d}.png", force=True)
    return count
