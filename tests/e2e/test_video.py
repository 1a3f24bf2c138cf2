"""nstyle video: flow warping, occlusion masks, the frame loop, resume, and bad clips."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nstyle.cli import main
from nstyle.video.flow import flow, reliable, temporal_error, warp

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "examples/video/pan.mp4"
STYLE = ROOT / "examples/images/style/starry_night.jpg"
FAST = ["--preset", "lite0", "--size", "64", "--iterations", "6", "--frame-iterations", "2", "--quiet"]


def texture(height=96, width=128, seed=0):
    """A smooth random texture DIS can follow (blurred noise)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return np.clip(gaussian_filter(rng.uniform(0, 255, (height, width, 3)), (2, 2, 0)) * 3 - 255, 0, 255).astype(
        np.uint8
    )


def test_warping_along_the_flow_rebuilds_the_next_frame():
    scene = texture(120, 160)
    earlier, later = scene[10:106, 10:138], scene[12:108, 14:142]  # the camera moved 4 px right, 2 px down
    backward = flow(later, earlier)
    inner = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(np.median(backward[inner].reshape(-1, 2), axis=0), [4, 2], atol=0.3)
    rebuilt = warp(earlier, backward)
    assert np.abs(rebuilt[inner] - later[inner]).mean() < 3.0  # vs ~40 for the unwarped frame
    assert np.abs(earlier[inner].astype(float) - later[inner]).mean() > 15


def test_occluded_pixels_are_not_trusted():
    """A square slides across a static texture: the background it uncovers is occluded in the
    earlier frame (not trusted); the background far from it is trusted."""
    background = texture(96, 128, seed=1)
    square = texture(32, 32, seed=2)
    earlier, later = background.copy(), background.copy()
    earlier[32:64, 40:72] = square
    later[32:64, 52:84] = square  # moved 12 px right
    mask = reliable(flow(later, earlier), flow(earlier, later))
    assert mask[:20, :].mean() > 0.9 and mask[76:, :].mean() > 0.9  # rows away from the square
    assert mask[36:60, 42:50].mean() < 0.5  # uncovered by the square's move: not seen in the earlier frame


def test_temporal_error_is_zero_for_a_steady_warp_and_counts_flicker():
    scene = texture(120, 160)
    content = [scene[10 + t : 106 + t, 10 + 2 * t : 138 + 2 * t] for t in range(4)]
    assert temporal_error(content, content) < 3.0
    rng = np.random.default_rng(0)
    flicker = [np.clip(c + rng.normal(0, 20, c.shape), 0, 255).astype(np.uint8) for c in content]
    assert temporal_error(flicker, content) > 10


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.slow
def test_video_holds_steadier_than_frames_stylized_apart_and_resumes(tmp_path, capsys, monkeypatch):
    """A stop after two frames keeps them; the same command then stylizes only the rest, and the
    clip flickers less than stylizing each frame on its own."""
    from nstyle.api import stylize
    from nstyle.engine import Engine
    from nstyle.video.frames import read_clip

    out = tmp_path / "out.mp4"
    calls = []
    real = Engine.frame

    def stop_at_third(self, frame):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(Engine, "frame", stop_at_third)
    code, err = run(capsys, "video", CLIP, STYLE, "-o", out, *FAST, "--max-frames", "6")
    work = tmp_path / "out.mp4.frames"
    assert code == 130 and f"`nstyle resume {work / 'run.ckpt.npz'}`, or the same command again, continues it" in err, (
        err
    )
    assert sorted(p.name for p in work.glob("chunk*/frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    assert not out.exists()

    done = []
    monkeypatch.setattr(Engine, "frame", lambda self, frame: done.append(1) or real(self, frame))
    code, err = run(
        capsys, "resume", work / "run.ckpt.npz", "--quiet"
    )  # the one resume path (the terminal test: the same command)
    assert code == 0, err
    assert len(done) == 4  # frames 3 to 6 only
    assert not work.exists()
    frames = _frames(out)
    assert len(frames) == 6
    content = [c[: frames[0].shape[0], : frames[0].shape[1]] for c in read_clip(CLIP, 64, 4).frames]
    alone = [
        np.asarray(stylize(Image.fromarray(c), STYLE, preset="lite0", size=64, iterations=6, seed=0).image)[
            : c.shape[0], : c.shape[1]
        ]
        for c in content
    ]
    assert temporal_error(frames[:4], content) < 0.8 * temporal_error(alone, content)


@pytest.mark.slow
def test_chunks_cross_fade(tmp_path, capsys, monkeypatch):
    """With two workers the clip is two chunks; the second starts early and its first frames are
    cross-faded with the first chunk's. (The chunks run in this process here: the process pool
    itself is the one trials use, tested there.)"""
    from nstyle.pool import TaskPool
    from nstyle.video import run as video_run
    from nstyle.video.run import CHUNK_OVERLAP, plan_chunks

    chunks = plan_chunks(16, 2)
    assert chunks == [(0, 8), (8 - CHUNK_OVERLAP, 16)]
    monkeypatch.setattr(video_run, "TaskPool", lambda workers, ray, on_event=None: TaskPool(1, ray, on_event))
    out = tmp_path / "frames"
    code, err = run(capsys, "video", CLIP, STYLE, "-o", out, *FAST, "--max-frames", "16", "--workers", "2")
    assert code == 0, err
    assert len(list(out.glob("frame_*.png"))) == 16
    work = tmp_path / "frames.frames"
    assert not work.exists()  # removed once the frames are out


def _clip_with_audio(path: Path, frames: int = 3) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(8))
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        for i in range(frames):
            for packet in video.encode(av.VideoFrame.from_ndarray(texture(48, 64, seed=i), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for i in range(8):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 22050, i * 1024
            for packet in audio.encode(samples):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def test_audio_is_copied_and_the_rate_kept(tmp_path, capsys):
    import av

    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    _clip_with_audio(clip)
    code, err = run(capsys, "video", clip, STYLE, "-o", out, *FAST)
    assert code == 0, err
    with av.open(str(out)) as container:
        assert container.streams.audio and container.streams.video[0].average_rate == 8
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_one_frame_is_an_image_with_a_notice(tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(texture()).save(folder / "a.png")
    with pytest.warns(RuntimeWarning, match="has one frame: stylized as an image"):
        code, err = run(capsys, "video", folder, STYLE, "-o", tmp_path / "out.gif", *FAST)
    assert code == 0, err
    assert Image.open(tmp_path / "out.gif").n_frames == 1


def _not_a_video(t):
    path = t / "clip.mp4"
    path.write_text("not a video")
    return path


def _empty(t):
    (t / "empty").mkdir()
    return t / "empty"


def _mixed(t):
    (t / "mixed").mkdir()
    Image.new("RGB", (64, 48)).save(t / "mixed" / "a.png")
    Image.new("RGB", (48, 64)).save(t / "mixed" / "b.png")
    return t / "mixed"


BAD = [
    (lambda t: [t / "missing.mp4"], "input video not found"),
    (lambda t: [_not_a_video(t)], "is not a video PyAV can read"),
    (lambda t: [_empty(t)], "has no frames"),
    (lambda t: [_mixed(t)], "frames differ in size: b.png is 48x64"),
    (lambda t: [CLIP, "--temporal-weight", "-1"], "--temporal-weight: -1"),
    (lambda t: [CLIP, "--max-frames", "0"], "--max-frames: 0 must be >= 1"),
]


@pytest.mark.parametrize("make_args, words", BAD)
def test_bad_clips_are_one_line(tmp_path, capsys, make_args, words):
    args = make_args(tmp_path)
    code, err = run(capsys, "video", args[0], STYLE, "-o", tmp_path / "out.mp4", *FAST, *args[1:])
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "out.mp4").exists()


def test_long_clips_need_max_frames_and_outputs_are_kept(tmp_path, capsys, monkeypatch):
    from nstyle.video import frames

    monkeypatch.setattr(frames, "MAX_FRAMES", 5)
    code, err = run(capsys, "video", CLIP, STYLE, "-o", tmp_path / "out.mp4", *FAST)
    assert code == 2 and "24 frames, more than the 5 read without --max-frames" in err
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"an earlier result")
    code, err = run(capsys, "video", CLIP, STYLE, "-o", existing, *FAST, "--max-frames", "2")
    assert code == 2 and "exists, not overwriting without --force" in err
    assert existing.read_bytes() == b"an earlier result"


def test_ui_video_tab_streams_frames_then_the_clip(tmp_path):
    from types import SimpleNamespace

    pytest.importorskip("gradio")
    from nstyle import ui

    events = list(
        ui._video_events(str(CLIP), str(STYLE), "lite0", 64, 12, 8, 0.3, 3, None, SimpleNamespace(session_hash="v"))
    )
    latest, video, status, files = events[-1]
    assert status.startswith("Done") and video.endswith(".mp4") and files == [video]
    assert any(e[0] and e[0].endswith(".png") for e in events[:-1])  # frames shown as they finished
    assert len(_frames(Path(video))) == 3


def test_ui_video_stop_keeps_the_finished_frames(tmp_path):
    """Stop in the Video tab ends the run at the next iteration; the frames finished so far stay, and
    the frame in progress is not among them."""
    from types import SimpleNamespace

    pytest.importorskip("gradio")
    from nstyle import ui

    request = SimpleNamespace(session_hash="stop")
    events = ui._video_events(str(CLIP), str(STYLE), "lite0", 64, 12, 30, 0.3, 8, None, request)
    seen = []
    for latest, video, status, files in events:  # noqa: B007 (the last ones are checked below)
        seen.append(status)
        if latest and not seen[-1].startswith("Stopped"):  # the first frame is done: press Stop
            ui._video_stop(request)
    assert seen[-1].startswith("Stopped: 1 frame kept in "), seen
    work = Path(seen[-1].split(" kept in ")[1].rstrip("."))
    assert len(list(work.glob("chunk*/frame_*.png"))) == 1
    assert video is None and files is None and latest.endswith("frame_00001.png")  # the last frame stays shown
