import numpy as np
import pytest
from PIL import Image

from nstyle.errors import ImageError
from nstyle.io import check_image_output, check_output, fit, load_image, read_metadata, save_image


def saved(tmp_path, img, name):
    path = tmp_path / name
    img.save(path)
    return path


def test_grayscale_palette_cmyk_become_rgb(tmp_path, rgb_file):
    base = Image.open(rgb_file)
    for img, name in [
        (base.convert("L"), "grey.png"),
        (base.convert("P"), "palette.png"),
        (base.convert("CMYK"), "cmyk.jpg"),
        (base.convert("1"), "bw.png"),
    ]:
        out = load_image(saved(tmp_path, img, name))
        assert out.mode == "RGB" and out.size == (48, 40), name


def test_alpha_is_composited_on_white(tmp_path):
    a = np.zeros((20, 20, 4), np.uint8)
    a[..., 0] = 255  # red ...
    a[:10, :, 3] = 255  # ... opaque on top, transparent below
    out = np.asarray(load_image(saved(tmp_path, Image.fromarray(a, "RGBA"), "rgba.png")))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[-1, -1]) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    out = np.asarray(load_image(saved(tmp_path, Image.fromarray(a), "deep.png")))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert 100 < out[16, 0, 0] < 155  # mid-grey stays mid-grey


def test_exif_orientation_is_respected(tmp_path, rgb_file):
    img = Image.open(rgb_file)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (40, 48)


def test_arrays_and_pil_images_are_accepted():
    assert load_image(np.zeros((16, 20, 3), np.uint8)).size == (20, 16)
    assert load_image(np.ones((16, 20), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((16, 16, 3), 7.0))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 16, 16, 3), np.uint8))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b"this is not an image"), "not an image"),
        (lambda p: p.write_bytes(b""), "not an image"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_unreadable_inputs(tmp_path, make, words):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(ImageError, match=words) as info:
        load_image(path, "content image")
    assert str(info.value).startswith("content image") and "\n" not in str(info.value)


def test_truncated_file(tmp_path, rgb_file):
    path = tmp_path / "cut.jpg"
    Image.open(rgb_file).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageError, match="corrupt or truncated|not an image"):
        load_image(path)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (its data is a few zero bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_print_size_inputs_open_and_bombs_do_not(tmp_path):
    """An 8192 px photo opens (Pillow's 89 MP guard raised to a 16384 px square); a 30000 x
    30000 bomb is refused from its header, before any pixel is decoded; Pillow's own setting
    is left as it was."""
    before = Image.MAX_IMAGE_PIXELS
    big = tmp_path / "big.png"
    Image.new("RGB", (8192, 8192), (20, 120, 200)).save(big, compress_level=1)
    assert load_image(big).size == (8192, 8192)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))
    with pytest.raises(ImageError, match="too large to open safely .* a 16384 px square"):
        load_image(bomb)
    assert before == Image.MAX_IMAGE_PIXELS


def test_images_opened_from_many_threads_leave_pillows_guard_as_it_was(tmp_path, monkeypatch):
    """The UI opens images from several threads; raising and restoring Pillow's one global guard
    must not interleave, or a thread restores another's raised value and the guard stays off."""
    import threading
    import time

    import PIL.Image

    opened = PIL.Image.open

    def slow_open(*args, **kwargs):  # widen the window between raising the guard and restoring it
        time.sleep(0.005)
        return opened(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", slow_open)
    path = tmp_path / "small.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)
    before = Image.MAX_IMAGE_PIXELS
    threads = [threading.Thread(target=lambda: [load_image(path) for _ in range(10)]) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert before == Image.MAX_IMAGE_PIXELS


def test_tiny_and_thin_images(tmp_path):
    one = saved(tmp_path, Image.new("RGB", (1, 1)), "one.png")
    with pytest.raises(ImageError, match="1x1 pixels: too small"):
        load_image(one)
    thin = load_image(saved(tmp_path, Image.new("RGB", (400, 8)), "thin.png"))
    with pytest.raises(ImageError, match="too thin"):
        fit(thin, 128)
    assert fit(load_image(np.zeros((30, 40, 3), np.uint8)), 64).size == (64, 48)  # small images are upscaled


def test_save_is_atomic_and_never_overwrites(tmp_path):
    img = Image.new("RGB", (16, 16), "red")
    path = tmp_path / "out.png"
    save_image(img, path, metadata={"a": 1})
    assert read_metadata(path) == {"a": 1}
    assert (tmp_path / "out.json").exists()
    with pytest.raises(ImageError, match="exists"):
        save_image(Image.new("RGB", (16, 16), "blue"), path)
    assert Image.open(path).getpixel((0, 0)) == (255, 0, 0)
    save_image(Image.new("RGB", (16, 16), "blue"), path, force=True, metadata={"a": 2})
    assert Image.open(path).getpixel((0, 0)) == (0, 0, 255)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.png"]  # no temp files left


@pytest.mark.parametrize("name", ["out.jpg", "out.jpeg", "out.tif", "out.tiff"])
def test_other_formats_with_sidecar(tmp_path, name):
    path = save_image(Image.new("RGB", (16, 16), "red"), tmp_path / name, metadata={"b": 1})
    assert Image.open(path).size == (16, 16)
    assert read_metadata(path) == {"b": 1}


def test_bad_output_paths(tmp_path):
    with pytest.raises(ImageError, match="unsupported file type"):
        check_image_output(tmp_path / "out.gif")
    check_output(tmp_path / "summary.csv")  # any file may be checked; only images need a known type
    with pytest.raises(ImageError, match="folder does not exist"):
        check_output(tmp_path / "nope" / "out.png")
    with pytest.raises(ImageError, match="is a directory"):
        check_output(tmp_path)
