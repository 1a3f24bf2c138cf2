"""Makes the documentation's pictures (``docs/*.png``, ``docs/video.gif``) the way a user would:
with the ``nstyle`` commands the guides show, on the bundled images, offline.

    python docs/make_pictures.py [--only quickstart grid ...] [--benchmarks]

Each picture is one command (``PICTURES``); ``--benchmarks`` also runs the benchmark scripts that
draw a picture of their figures (``BENCHMARK_PICTURES``), which takes much longer. The UI
screenshot needs headless Chromium (``/usr/bin/chromium``) and Playwright.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMAGES = ROOT / "examples" / "images"
CAT = str(IMAGES / "content" / "chelsea.jpg")
STARRY = str(IMAGES / "style" / "starry_night.jpg")
CONTENTS = [str(IMAGES / "content" / f"{n}.jpg") for n in ("chelsea", "rocket")]
STYLES = [str(IMAGES / "style" / f"{n}.jpg") for n in ("starry_night", "the_scream", "shipwreck")]
LITE0_LAYERS = (
    "stem_relu block1a_dw_relu block2a_expand_relu block2b_expand_relu block3a_expand_relu block3b_expand_relu "
    "block4a_expand_relu block5a_expand_relu block6a_expand_relu top_relu"
)


def nstyle(*args: str, options: str = "") -> None:
    """One ``nstyle`` command (``options``: flags as one would type them), quiet, failing loudly."""
    subprocess.run([sys.executable, "-m", "nstyle", *args, *options.split(), "--quiet"], check=True, cwd=ROOT)


def quickstart(tmp: Path) -> None:
    """The home page's picture and the ten-frame strip of the quick start."""
    out = tmp / "quickstart.png"
    nstyle(CAT, STARRY, "-o", str(out), options="--preset lite0 --size 256 --iterations 100 --strip")
    shutil.copy(out, DOCS / "quickstart.png")
    shutil.copy(tmp / "quickstart_strip.png", DOCS / "quickstart_strip.png")


def offline(tmp: Path) -> None:
    """The README's picture: content, style and the lite0 result side by side."""
    from nstyle.sheets import contact_sheet

    out = tmp / "offline.png"
    nstyle(CAT, STARRY, "-o", str(out), options="--preset lite0 --size 384 --iterations 200")
    shutil.copy(out, DOCS / "offline.png")
    tiles = [(Image.open(CAT), "content"), (Image.open(STARRY), "style"), (Image.open(out), "lite0, 384 px")]
    contact_sheet(tiles, columns=3, tile_size=384).save(DOCS / "offline_sheet.png")


def regions(tmp: Path) -> None:
    """The regions guide's pictures: two paintings in two masked regions, and Gram with and
    without the histogram term."""
    from nstyle.sheets import contact_sheet

    rocket, masks = (
        str(IMAGES / "content" / "rocket.jpg"),
        [str(IMAGES / "masks" / f"rocket_{n}.png") for n in ("sky", "ground")],
    )
    out = tmp / "regions.png"
    nstyle(
        rocket,
        *STYLES[:2],
        "-o",
        str(out),
        options=f"--preset lite0 --size 384 --iterations 200 --style-masks {' '.join(masks)}",
    )
    names = ["photo", "The Starry Night", "The Scream", "its mask (sky)", "its mask (ground)", "result"]
    pictures = [rocket, *STYLES[:2], *masks, str(out)]
    contact_sheet([(Image.open(p).convert("RGB"), n) for p, n in zip(pictures, names)], columns=3, tile_size=300).save(
        DOCS / "regions.png"
    )
    tiles = []
    for loss in ("gram", "gram+histogram"):
        result = tmp / f"{loss}.png"
        nstyle(
            CAT,
            STARRY,
            "-o",
            str(result),
            options=f"--preset lite0 --size 384 --iterations 200 --style-weight 1e3 --style-loss {loss}",
        )
        tiles.append((Image.open(result), loss))
    contact_sheet(tiles, columns=2, tile_size=384).save(DOCS / "histogram.png")


def textures(tmp: Path) -> None:
    """The textures guide's pictures: a texture tiled 3x3 and a --tileable photo tiled 2x2."""
    from nstyle.wrap import tiled

    texture = tmp / "texture.png"
    nstyle("texture", STARRY, "-o", str(texture), options="--preset lite0 --size 384 --iterations 200 --tileable")
    tiled(Image.open(texture), 3).save(DOCS / "texture_3x3.png")
    photo = tmp / "tileable.png"
    nstyle(CAT, STARRY, "-o", str(photo), options="--preset lite0 --size 384 --iterations 200 --tileable")
    tiled(Image.open(photo), 2).save(DOCS / "tileable_2x2.png")


def probe_blocks(tmp: Path) -> None:
    nstyle(
        "probe",
        CAT,
        STARRY,
        "--blocks",
        "-o",
        str(tmp / "probe"),
        options="--weights random --size 128 --iterations 50",
    )
    shutil.copy(tmp / "probe" / "sheet.png", DOCS / "probe_sheet.png")


def probe_lite0(tmp: Path) -> None:
    options = "--backbone efficientnet_lite0 --weights imagenet --content-layers block4a_expand_relu"
    options += f" --style-weight 1e3 --size 192 --iterations 80 --layers {LITE0_LAYERS}"
    nstyle("probe", CAT, STARRY, "-o", str(tmp / "probe-lite0"), options=options)
    shutil.copy(tmp / "probe-lite0" / "sheet.png", DOCS / "probe_lite0.png")


def sweeps(tmp: Path) -> None:
    """lite0's style and TV weights, and every option of the presets guide, on trained features."""
    for toml, picture in (("lite0_sweep.toml", "sweep_lite0.png"), ("options_sweep.toml", "options_lite0.png")):
        folder = tmp / toml.removesuffix(".toml")
        nstyle("sweep", str(ROOT / "examples" / toml), "-o", str(folder))
        shutil.copy(folder / "sheet.png", DOCS / picture)


def grids(tmp: Path) -> None:
    nstyle(
        "grid",
        "--content",
        *CONTENTS,
        "--style",
        *STYLES,
        "-o",
        str(tmp / "grid"),
        options="--preset lite0 --size 256 --iterations 150",
    )
    shutil.copy(tmp / "grid" / "grid.png", DOCS / "grid.png")
    nstyle(
        "grid",
        "--content",
        *CONTENTS,
        "--style",
        *STYLES[:2],
        "-o",
        str(tmp / "grid2x2"),
        options="--preset hed --size 256 --iterations 150",
    )
    shutil.copy(tmp / "grid2x2" / "grid.png", DOCS / "grid2x2.png")


def ui(tmp: Path) -> None:
    """The browser app after a lite0 run on the bundled pair, as headless Chromium shows it."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "nstyle", "ui", "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#run", timeout=60000)
            page.set_input_files("#content input[type=file]", CAT)
            page.set_input_files("#style input[type=file]", STARRY)
            for selector, value in (("#size input[type=number]", "256"), ("#iterations input[type=number]", "60")):
                page.fill(selector, value)
                page.press(selector, "Enter")
            page.click("#run")
            page.wait_for_selector("#download a", timeout=600000)
            page.screenshot(path=str(DOCS / "ui.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


PICTURES: dict[str, Callable[[Path], None]] = {
    "quickstart": quickstart,
    "offline": offline,
    "regions": regions,
    "textures": textures,
    "probe": probe_blocks,
    "probe-lite0": probe_lite0,
    "sweeps": sweeps,
    "grids": grids,
    "ui": ui,
}
#: benchmark scripts that draw their own picture into docs/ (they also write their results)
BENCHMARK_PICTURES = {
    "presets.py": "--iterations 150",
    "precision_parity.py": "--precision bfloat16 --iterations 150",
    "video.py": "",
    "quality.py": "-o quality-out",
    "print_size.py": "",
    "regions.py": "-o regions-out",
    "tileable.py": "",
    "look_size.py": "",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(PICTURES), default=list(PICTURES))
    parser.add_argument("--benchmarks", action="store_true", help="also run the benchmarks that draw pictures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nstyle-pictures-") as tmp:
        for name in args.only:
            started = time.perf_counter()
            PICTURES[name](Path(tmp))
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    if args.benchmarks:
        for script, options in BENCHMARK_PICTURES.items():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *options.split()], check=True, cwd=ROOT)
        shutil.copy(ROOT / "quality-out" / "sheet.png", DOCS / "quality.png")


if __name__ == "__main__":
    main()
