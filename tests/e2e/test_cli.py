import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nstyle.cli import main

from ..conftest import CONTENT, STYLE, backend_name

FAST = ["--weights", "random:0", "--size", "64", "--iterations", "3", "--quiet"]


def run(capsys, *argv):
    """``nstyle ARGV``'s exit status and stderr, as the console script gives them (argparse's
    refusals leave by SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_writes_a_stylized_image_with_its_record(tmp_path, capsys):
    out = tmp_path / "out.png"
    code, err = run(capsys, CONTENT, STYLE, "-o", out, "--preset", "seed", *FAST, "--strip", "--snapshot-every", "2")
    assert code == 0, err
    img = Image.open(out)
    assert img.size == (64, 43) and img.mode == "RGB"
    record = json.loads(img.info["nstyle"])
    assert record == json.loads((tmp_path / "out.json").read_text())
    assert record["config"]["style_layers"] == ["bn2b_branch2a", "bn3a_branch2c", "res3a_branch1", "bn4e_branch2b"]
    assert record["config"]["weights"] == "random:0" and isinstance(record["config"]["seed"], int)
    assert record["content"]["path"] == str(CONTENT) and len(record["content"]["sha256"]) == 64
    assert {backend_name(), "keras", "numpy", "pillow", "python"} <= set(record["versions"])
    assert record["result"]["backend"] == backend_name() and record["result"]["random_weights"] == "numpy-pcg64"
    assert (tmp_path / "out_0002.png").exists() and not (tmp_path / "out_0003.png").exists()
    assert Image.open(tmp_path / "out_strip.png").width > 64 * 2
    # the stylized image differs from the content it started from
    content = np.asarray(Image.open(CONTENT).convert("RGB").resize((64, 43)), np.float32)
    assert np.abs(np.asarray(img, np.float32) - content).mean() > 1.0

    code, err = run(capsys, "reproduce", out)
    assert code == 0, err
    assert "cannot match" not in err
    again = np.asarray(Image.open(tmp_path / "out-reproduced.png"), np.float32)
    assert np.abs(again - np.asarray(img, np.float32)).mean() < 1.0

    # A record from before random weights were NumPy draws names no generator: reproduce says so.
    older = tmp_path / "older.jpg"
    img.save(older)
    del record["result"]["random_weights"]
    (tmp_path / "older.json").write_text(json.dumps(record))
    code, err = run(capsys, "reproduce", older)
    assert code == 0, err
    assert "random weights were drawn by its backend" in err and "cannot match it exactly" in err


@pytest.mark.slow
def test_sixteen_bit_print_output_with_dpi(tmp_path, capsys):
    """16-bit PNG (pypng) and TIFF (tifffile) carry the unrounded result, the resolution and the record."""
    import png
    import tifffile

    from nstyle.io import read_metadata

    for name in ("print.png", "print16.tif"):
        out = tmp_path / name
        code, err = run(capsys, CONTENT, STYLE, "-o", out, *FAST, "--bit-depth", "16", "--dpi", "300")
        assert code == 0, err
        if name.endswith(".png"):
            width, height, rows, info = png.Reader(filename=str(out)).read()
            pixels = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, 3)
            assert info["bitdepth"] == 16 and round(info["physical"].x * 0.0254) == 300
            assert read_metadata(out)["config"]["size"] == 64
        else:
            with tifffile.TiffFile(out) as tif:
                pixels = tif.pages[0].asarray()
                assert tif.pages[0].tags["XResolution"].value == (300, 1)
                assert json.loads(tif.pages[0].description)["config"]["size"] == 64
        assert pixels.dtype == np.uint16 and pixels.shape == (43, 64, 3)
        # Finer than 8 bits: values that are not multiples of 257 (what 8-bit values scale to).
        assert (pixels % 257 != 0).mean() > 0.5
    eight = tmp_path / "print8.jpg"
    code, err = run(capsys, CONTENT, STYLE, "-o", eight, *FAST, "--bit-depth", "16")
    assert code == 2 and "JPEG holds 8 bits" in err and not eight.exists()


@pytest.mark.parametrize("fmt", ["jpg", "tif"])
def test_other_output_formats(tmp_path, capsys, fmt):
    out = tmp_path / f"out.{fmt}"
    code, err = run(capsys, CONTENT, STYLE, "-o", out, *FAST, "--optimizer", "lbfgs")
    assert code == 0, err
    assert Image.open(out).size == (64, 43)
    assert json.loads((tmp_path / "out.json").read_text())["config"]["optimizer"] == "lbfgs"


def test_ctrl_c_writes_best_so_far(tmp_path, capsys, monkeypatch):
    from nstyle import callbacks

    def interrupt(self, p):
        if p.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Strip, "__call__", interrupt)
    out = tmp_path / "out.png"
    code, err = run(capsys, CONTENT, STYLE, "-o", out, *FAST, "--iterations", "50", "--strip")
    assert code == 130
    assert "stopped by SIGINT at iteration 2/50" in err and "best image so far" in err
    assert Image.open(out).size == (64, 43)


def corrupt(tmp_path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


def black(tmp_path):
    path = tmp_path / "black.png"
    Image.new("L", (40, 30)).save(path)
    return path


def one_pixel(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(path)
    return path


BAD = [
    (lambda t: [t / "missing.jpg", STYLE], "content image not found"),
    (lambda t: [CONTENT, corrupt(t)], "style image is corrupt"),
    (lambda t: [one_pixel(t), STYLE], "too small"),
    (lambda t: [CONTENT, STYLE, "--style-layers", "conv2_blok1_out"], "did you mean conv2_block1_out"),
    (lambda t: [CONTENT, STYLE, "--backbone", "resnet51"], "backbone: 'resnet51' is not one of resnet50"),
    (lambda t: [CONTENT, STYLE, "--style-weight", "nan"], "style_weight"),
    (lambda t: [CONTENT, STYLE, "--content-weight", "-1"], "content_weight"),
    (lambda t: [CONTENT, STYLE, "--lr", "0"], "lr"),
    (lambda t: [CONTENT, STYLE, "--style-layers", "conv1_relu:-1"], "style_layers"),
    (lambda t: [CONTENT, STYLE, "--preset", "nope"], "unknown preset"),
    (lambda t: [CONTENT, STYLE, "--size", "5"], "size"),
    (lambda t: [CONTENT, STYLE, "--snapshot-every", "0"], "snapshot-every"),
    (lambda t: [CONTENT, STYLE, "--weights", t / "nope.h5"], "no such file"),
    (lambda t: [CONTENT, STYLE, "--weights", "hed"], "'hed' is the HED edge detector's VGG16 body"),
    (lambda t: [CONTENT, STYLE, "--swag", "-1"], "swag: -1 must be >= 0"),
    (lambda t: [CONTENT, STYLE, "--swag", "nan"], "swag: nan is not a finite number"),
    (lambda t: [CONTENT, STYLE, "--swag", "inf"], "swag: inf is not a finite number"),
    (lambda t: [CONTENT, STYLE, "--max-memory", "0"], "max_memory: 0 must be > 0"),
    (lambda t: [CONTENT, STYLE, "--max-memory", "-2"], "max_memory: -2 must be > 0"),
    (lambda t: [CONTENT, STYLE, "--max-memory", "nan"], "max_memory: nan is not a finite number"),
    (lambda t: [CONTENT, STYLE, "--max-memory", "100000"], "more than this machine's"),
    (lambda t: [CONTENT, STYLE, "--size", "20000"], "size: 20000 must be between 32 and 16384"),
    (lambda t: [CONTENT, STYLE, "--size", "16384", "--max-memory", "1.5"], "even in tiles, over the 1.5 GB budget"),
    (lambda t: [CONTENT, STYLE, "--tile", "8"], "tile: 8 must be between 32 and 16384"),
    (lambda t: [CONTENT, STYLE, "--mask", t / "nope.png"], "mask: no such file"),
    (lambda t: [CONTENT, STYLE, "--mask", corrupt(t)], "mask is corrupt"),
    (lambda t: [CONTENT, STYLE, "--mask", black(t)], "mask is black everywhere"),
    (lambda t: [CONTENT, STYLE, "--style-masks", black(t), black(t)], "style_masks: 2 masks for 1 style images"),
    (lambda t: [CONTENT, STYLE, "--style-loss", "gram+colour"], "style_loss: 'colour' is not one of"),
    (lambda t: [CONTENT, STYLE, "--style-loss", "histogram", "--swag"], "does not combine with swag"),
    (lambda t: [CONTENT, STYLE, "--histogram-weight", "-1"], "histogram_weight: -1 must be >= 0"),
    (lambda t: [CONTENT, STYLE, "--dpi", "-300"], "--dpi: -300"),
    (lambda t: [CONTENT, STYLE, "--quality", "0"], "--quality: 0 must be between 1 and 100"),
    (lambda t: [CONTENT, STYLE, "--workers", "0"], "--workers: 0 must be >= 1"),
    # argparse's own refusals: one line too, without its usage lines before it
    (lambda t: [CONTENT, STYLE, "--iterations", "nan"], "argument --iterations: invalid int value: 'nan'"),
    (lambda t: [CONTENT, STYLE, "--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
]


@pytest.mark.parametrize("make_args, words", BAD)
def test_bad_input_is_one_line_and_touches_nothing(tmp_path, capsys, make_args, words):
    out = tmp_path / "out.png"
    Image.new("RGB", (8, 8), "green").save(out)  # an earlier result that must survive
    before = out.read_bytes()
    code, err = run(capsys, *FAST, *make_args(tmp_path), "-o", out, "--force")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nstyle: error:") and words in err, err
    assert out.read_bytes() == before


def test_a_subcommand_refusal_is_one_line(tmp_path, capsys):
    code, err = run(capsys, "grid", "--content", CONTENT, "--style", STYLE, "-o", tmp_path / "g", "--size", "big")
    assert code == 2 and err == "nstyle grid: error: argument --size: invalid int value: 'big'\n", err
    assert not (tmp_path / "g").exists()


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, err = run(capsys, CONTENT, STYLE, "-o", out, *FAST)
    assert code == 2 and "exists" in err and "--force" in err
    assert out.read_bytes() == b"precious"


def test_bad_output_paths(tmp_path, capsys):
    for target, words in [(tmp_path / "out.gif", "unsupported"), (tmp_path / "no" / "o.png", "does not exist")]:
        code, err = run(capsys, CONTENT, STYLE, "-o", target, *FAST)
        assert code == 2 and words in err


def test_offline_imagenet_is_one_line_naming_the_way_out(tmp_path, capsys):
    code, err = run(capsys, CONTENT, STYLE, "-o", tmp_path / "o.png", "--size", "64", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "--weights PATH" in err and "--weights random" in err and "--preset lite0" in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_real_process_prints_one_clean_line(tmp_path):
    """No TensorFlow start-up chatter or traceback reaches the user."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nstyle.cli",
            str(CONTENT),
            str(STYLE),
            "-o",
            str(tmp_path / "o.png"),
            *"--weights random --style-layers bogus_layer".split(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown layer 'bogus_layer'" in proc.stderr, proc.stderr


def test_layers_listing_rows(capsys):
    assert main(["layers", "resnet50", "--size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("conv1_conv "))
    assert row.split() == ["conv1_conv", "conv1", "32x32x64", "9,472", "content"]  # the default content layer
    assert any(line.split()[:2] == ["conv4_block5_2_bn", "bn4e_branch2b"] for line in lines)


def test_presets_and_help(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "seed" in out and "tutorial-vgg19" in out and "default" in out
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "nstyle layers BACKBONE" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--backbone", "efficientnet_lite0"], ["--backbone", "vgg16", "--weights", "hed"]])
def test_trained_offline_backbones_run_without_layer_flags(tmp_path, flags):
    out = tmp_path / "out.png"
    assert main([str(CONTENT), str(STYLE), "-o", str(out), "--size", "64", "--iterations", "3", "--quiet", *flags]) == 0
    from nstyle.io import read_metadata

    config = read_metadata(out)["config"]
    assert config["backbone"] == flags[1] and config["content_layers"]
