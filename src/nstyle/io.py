"""Reading and writing images, with every failure turned into one clear line.

Input can be a path, a PIL image or a numpy array; it always leaves here as an 8-bit RGB
PIL image the right way up. Output is written to a temporary file beside the target and
renamed into place, so an interrupted or failed write never leaves half a file, and an
existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError


@dataclass(frozen=True)
class Canvas:
    """A texture's "photo": a blank grey picture of this size, there only to give the run its shape
    (``nstyle texture``: no content term, a start from noise)."""

    width: int
    height: int

    def image(self) -> Image.Image:
        return Image.new("RGB", (self.width, self.height), (128, 128, 128))

    def record(self) -> dict[str, list[int]]:
        """How a run's record names it, so that ``reproduce`` and ``resume`` can make it again."""
        return {"texture": [self.width, self.height]}

    @classmethod
    def from_record(cls, source: Any) -> Canvas | None:
        if isinstance(source, dict) and isinstance(source.get("texture"), list) and len(source["texture"]) == 2:
            return cls(*(int(n) for n in source["texture"]))
        return None


ImageSource = str | os.PathLike | Image.Image | np.ndarray | Canvas


def texture_settings(style: ImageSource, size: int) -> dict[str, Any]:
    """What makes a run a texture of ``style``: no content term, a start from noise, and the
    sample at its own resolution at the full size (``style_scale``: its longer side over ``size``,
    at most 4), so its strokes keep their size however large the texture."""
    sample = load_image(style, "style image")
    return {"content_weight": 0.0, "init": "noise", "style_scale": min(4.0, max(sample.size) / size)}


FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
MIN_SOURCE_SIDE = 8  # below this an image holds too little to stylize or be styled by
MIN_WORKING_SIDE = 16  # the shorter side after resizing; deep layers need a few positions
#: The largest input opened: a 16384 px square, the largest output (tiled). Pillow's own guard
#: against decompression bombs (89 MP) is raised this far and no further.
MAX_INPUT_PIXELS = 16384**2
#: Pillow's guard is one global: raising and restoring it is serialised, so two threads opening
#: images (the UI serves several) can never leave it raised for good.
_GUARD_LOCK = threading.Lock()


def load_image(source: ImageSource, what: str = "image") -> Image.Image:
    """Any path, PIL image or array as an upright 8-bit RGB image; ``what`` names it in errors."""
    if isinstance(source, Canvas):
        return source.image()
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _from_array(source, what)
    else:
        img = _open(Path(source), what)
    img = to_rgb(ImageOps.exif_transpose(img))
    if min(img.size) < MIN_SOURCE_SIDE:
        raise ImageError(
            f"{what} is {img.width}x{img.height} pixels: too small to stylize "
            f"(each side needs at least {MIN_SOURCE_SIDE} px)"
        )
    return img


def _open(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{what} not found: {path}")
    if path.is_dir():
        raise ImageError(f"{what} is a directory, not an image: {path}")
    with _GUARD_LOCK:
        return _open_guarded(path, what)


def _open_guarded(path: Path, what: str) -> Image.Image:
    guard = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow's decompression-bomb guard, at nstyle's limit, with its warning zone an error
            # too: the header's size is checked before any pixel is decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS // 2
            img = Image.open(path)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{what} is too large to open safely ({path}; the limit is {MAX_INPUT_PIXELS:,} pixels, a 16384 px square)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not an image file Pillow can read: {path}") from None
    except PermissionError:
        raise ImageError(f"{what} cannot be read (permission denied): {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{what} is corrupt or truncated ({e}): {path}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    return img


def _from_array(a: np.ndarray, what: str) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ImageError(f"{what}: array of shape {a.shape} is not HxW, HxWx3 or HxWx4")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise ImageError(f"{what}: array dtype {a.dtype} is neither uint8 nor float in [0, 1]")
        if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise ImageError(f"{what}: float arrays must hold finite values in [0, 1]")
        a = np.rint(a * 255).astype(np.uint8)
    return Image.fromarray(a)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, 16-bit and float grey scaled (not clipped)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own convert("L") clips these to 0..255, turning most 16-bit images white.
        a = np.asarray(img, dtype=np.float64)
        peak = a.max(initial=0)
        top = 65535.0 if peak > 255 else (1.0 if img.mode == "F" and peak <= 1 else 255.0)
        img = Image.fromarray(np.clip(np.rint(a / top * 255), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def fitted(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is ``size`` px."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit(img: Image.Image, size: int, what: str = "image") -> Image.Image:
    """Scale so the longer side is ``size`` px (up or down, as the notebook did)."""
    w, h = fitted(img.width, img.height, size)
    if min(w, h) < MIN_WORKING_SIDE:
        raise ImageError(
            f"{what} is too thin: {img.width}x{img.height} becomes {w}x{h} at size {size}; "
            f"the shorter side needs at least {MIN_WORKING_SIDE} px (raise --size or crop it)"
        )
    return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.LANCZOS)


def check_output(path: str | os.PathLike, force: bool = False, what: str = "output") -> Path:
    """Fail now, before minutes of work, if ``path`` cannot or must not be written."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{what} is a directory: {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"{what} folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise ImageError(f"{what} folder is not writable: {parent}")
    if path.exists() and not force:
        raise ImageError(f"{what} exists, not overwriting without --force: {path}")
    return path


def check_image_output(path: str | os.PathLike, force: bool = False, what: str = "output") -> Path:
    """:func:`check_output`, and the extension must name an image format nstyle writes."""
    path = check_output(path, force, what)
    if path.suffix.lower() not in FORMATS:
        raise ImageError(f"{what}: unsupported file type '{path.suffix or path.name}' (use .png, .jpg or .tif)")
    return path


def file_sha256(path: str | os.PathLike) -> str | None:
    """The hex SHA-256 of a file's bytes (None when it cannot be read): how runs record their inputs."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the JSON record of an output image goes: ``out.png`` -> ``out.json``."""
    return Path(path).with_suffix(".json")


def save_image(
    img: Image.Image,
    path: str | os.PathLike,
    force: bool = False,
    metadata: dict[str, Any] | None = None,
    dpi: float | None = None,
    quality: int = 95,
    high: np.ndarray | None = None,
) -> Path:
    """Write ``img`` atomically; PNGs carry ``metadata`` as text, every format gets a JSON sidecar.

    ``dpi`` is written into the file (PNG pHYs, JPEG JFIF, TIFF resolution), so print software
    sizes it; ``quality`` is JPEG's. ``high`` is the same image as 16-bit RGB (uint16), written
    instead of ``img`` to PNG (by pypng) or TIFF (by tifffile): Pillow writes 8-bit colour only.
    """
    path = check_image_output(path, force)
    sidecar = check_output(sidecar_path(path), force, what="sidecar") if metadata is not None else None
    fmt = FORMATS[path.suffix.lower()]
    if high is not None:
        if fmt == "JPEG":
            raise ImageError(f"{path}: JPEG holds 8 bits per channel; write .png or .tif for 16 bits")
        _atomic_write(path, lambda f: (_png16 if fmt == "PNG" else _tiff16)(f, high, metadata, dpi))
    else:
        kwargs: dict[str, Any] = {"quality": quality} if fmt == "JPEG" else {}
        if dpi is not None:
            kwargs["dpi"] = (dpi, dpi)
        if fmt == "PNG" and metadata is not None:
            kwargs["pnginfo"] = _png_info(metadata)
        _atomic_write(path, lambda f: img.save(f, format=fmt, **kwargs))
    if sidecar is not None:
        _atomic_write(sidecar, lambda f: f.write(json.dumps(metadata, indent=2).encode() + b"\n"))
    return path


def _png16(f: Any, pixels: np.ndarray, metadata: dict[str, Any] | None, dpi: float | None) -> None:
    """A 16-bit RGB PNG with the nstyle record as a text chunk and the resolution in pHYs."""
    import png

    height, width = pixels.shape[:2]
    per_metre = None if dpi is None else round(dpi / 0.0254)
    writer = png.Writer(
        width,
        height,
        greyscale=False,
        bitdepth=16,
        compression=6,
        x_pixels_per_unit=per_metre,
        y_pixels_per_unit=per_metre,
        unit_is_meter=per_metre is not None,
    )
    buffer = BytesIO()
    writer.write(buffer, pixels.reshape(height, width * 3))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    if metadata is not None:
        chunks.insert(1, (b"tEXt", b"nstyle\x00" + json.dumps(metadata).encode("latin-1", "replace")))
    png.write_chunks(f, chunks)


def _tiff16(f: Any, pixels: np.ndarray, metadata: dict[str, Any] | None, dpi: float | None) -> None:
    """A 16-bit RGB TIFF, deflate-compressed, with the record as its description."""
    import tifffile

    buffer = BytesIO()  # tifffile wants a seekable file with a name; the atomic write's has only a descriptor
    tifffile.imwrite(
        buffer,
        pixels,
        photometric="rgb",
        compression="zlib",
        resolution=None if dpi is None else (dpi, dpi),
        resolutionunit="INCH" if dpi else None,
        description=json.dumps(metadata) if metadata is not None else None,
        metadata=None,
    )
    f.write(buffer.getvalue())


def png_bytes(img: Image.Image, metadata: dict[str, Any] | None = None) -> bytes:
    """``img`` encoded as PNG, with ``metadata`` as its nstyle text record (for results sent between processes)."""
    buffer = BytesIO()
    img.save(buffer, format="PNG", pnginfo=_png_info(metadata) if metadata is not None else None)
    return buffer.getvalue()


def save_bytes(data: bytes, path: str | os.PathLike, force: bool = False) -> Path:
    """Write already-encoded file ``data`` atomically, with the same overwrite rule as :func:`save_image`."""
    path = check_output(path, force, what="file")
    _atomic_write(path, lambda f: f.write(data))
    return path


def _png_info(metadata: dict[str, Any]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("nstyle", json.dumps(metadata))
    return info


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The run record of an nstyle output: the PNG's text chunk, else its JSON sidecar."""
    path = Path(path)
    if path.suffix.lower() == ".png" and path.is_file():
        try:
            with Image.open(path) as img:
                text = img.info.get("nstyle")
        except (OSError, UnidentifiedImageError):
            text = None
        if text:
            return json.loads(text)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ImageError(f"cannot read run record {sidecar}: {e}") from None
    raise ImageError(f"no nstyle run record in {path} (nor a sidecar {sidecar.name})")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ImageError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def claim(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``path`` for this process while it runs: a second nstyle run writing there refuses.

    Two runs started at once both pass the existence check; without this the later rename
    would silently replace the earlier result. The claim is a lock file beside the output,
    created exclusively and holding the owner's process id; one left by a killed run (its
    process gone) is taken over.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise ImageError(
                    f"another nstyle run (process {owner}) is writing {path}; wait for it or choose another output"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its run was killed
        except OSError as e:
            raise ImageError(f"cannot write beside {path}: {e.strerror or e}") from None
    else:
        raise ImageError(f"cannot claim {path}: another run keeps claiming it")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def check_space(folder: str | os.PathLike, needed: int, what: str = "output") -> None:
    """Fail before the work when ``folder``'s file system has less than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ImageError(
            f"{what} folder {folder} has {free / 2**20:.1f} MB free; this run writes up to {needed / 2**20:.1f} MB"
        )


@contextmanager
def preflight(target: str | os.PathLike, *, needed: int = 2**20, folder: bool = False) -> Iterator[Path]:
    """What every command does before its work: room on the disk for it, and the claim on ``target``.

    ``target`` is the file or folder the command writes; whether files in it may be replaced is
    each command's own check, made before this. The folder itself is the command's to create,
    after its own checks; only a missing parent is made here, for the claim to sit in. While
    the block runs, another nstyle run writing ``target`` refuses (:func:`claim`).
    """
    target = Path(target)
    if folder and target.exists() and not target.is_dir():
        raise ImageError(f"output folder is a file: {target}")
    parent = target.parent if str(target.parent) else Path(".")
    if folder:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ImageError(f"cannot create output folder {target}: {e.strerror or e}") from None
    check_space(target if target.is_dir() else parent, needed)
    with claim(target):
        yield target


def save_with_fallback(
    img: Image.Image, path: Path, force: bool, metadata: dict[str, Any] | None, **options: Any
) -> Path:
    """:func:`save_image`, and when that fails (disk full, file appeared, folder gone), the same
    image to a fallback path: beside it with the time in its name, else in the temp folder.

    The image exists only in memory after hours of work: it is never silently dropped. Raises
    only when every place failed, naming them.
    """
    try:
        return save_image(img, path, force=force, metadata=metadata, **options)
    except ImageError as first:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for folder in (path.parent, Path(tempfile.gettempdir())):
            fallback = folder / f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}"
            try:
                saved = save_image(img, fallback, metadata=metadata, **options)
            except ImageError:
                continue
            warnings.warn(
                f"could not write {path} ({first}); wrote the result to {saved} instead", RuntimeWarning, stacklevel=2
            )
            return saved
        raise ImageError(f"{first}; nor could the result be written beside it or in {tempfile.gettempdir()}") from None
