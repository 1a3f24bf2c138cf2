import csv
import json

import pytest
from PIL import Image

from nstyle.cli import main
from nstyle.config import resolve
from nstyle.errors import NStyleError
from nstyle.workflows import grid, load_sweep, probe, sweep

from ..conftest import CONTENT, SAMPLES, STYLE

FAST = {"weights": "random:0", "size": 64, "iterations": 3}
ROCKET = SAMPLES / "content" / "rocket.jpg"
SCREAM = SAMPLES / "style" / "the_scream.jpg"


def test_probe_style_layers(tmp_path):
    cfg = resolve("seed", overrides=FAST)
    sheet = probe(CONTENT, STYLE, cfg, tmp_path, layers=["bn2b_branch2a", "conv1_relu"], progress=False)
    assert sheet == tmp_path / "sheet.png" and Image.open(sheet).width > 2 * 200
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["layer"], r["alias"], r["status"]) for r in rows] == [
        ("conv2_block2_1_bn", "bn2b_branch2a", "ok"),
        ("conv1_relu", "", "ok"),
    ]
    assert all(float(r["style_loss"]) > 0 and float(r["content_loss"]) >= 0 for r in rows)
    record = json.loads(Image.open(tmp_path / "conv1_relu.png").info["nstyle"])
    assert record["config"]["style_layers"] == ["conv1_relu"]
    assert record["config"]["content_layers"] == ["conv1"]  # the base's content layer stays


@pytest.mark.slow
def test_probe_content_layers_and_blocks(tmp_path):
    cfg = resolve("tutorial-vgg19", overrides={**FAST, "backbone": "vgg16", "iterations": 2})
    probe(CONTENT, STYLE, cfg, tmp_path, blocks=True, kind="content", progress=False)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["layer"] for r in rows] == [
        *"block1_conv2 block2_conv2 block3_conv3 block4_conv3 block5_conv3".split(),
    ]
    record = json.loads(Image.open(tmp_path / "block3_conv3.png").info["nstyle"])
    assert record["config"]["content_layers"] == ["block3_conv3"]


def test_probe_rejects_unknown_layer_before_any_work(tmp_path):
    with pytest.raises(NStyleError, match="did you mean conv1_relu"):
        probe(CONTENT, STYLE, resolve("seed", overrides=FAST), tmp_path / "p", layers=["conv1_relux"], progress=False)
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_grid_every_pair(tmp_path):
    path = grid([CONTENT, ROCKET], [STYLE, SCREAM], resolve("default", overrides=FAST), tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        *"chelsea__starry_night.png chelsea__the_scream.png grid.png rocket__starry_night.png rocket__the_scream.png".split(),
    ]
    sheet = Image.open(path)
    assert sheet.width >= 3 * 224 and sheet.height > 3 * 100  # header row + 2 rows, 3 columns


def test_grid_never_overwrites(tmp_path):
    existing = tmp_path / "chelsea__starry_night.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(NStyleError, match="exists"):
        grid([CONTENT], [STYLE], resolve("default", overrides=FAST), tmp_path, progress=False)
    assert existing.read_bytes() == b"keep me" and not (tmp_path / "grid.png").exists()


def write_sweep(tmp_path, body):
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'content = "{CONTENT}"\nstyle = "{STYLE}"\npreset = "default"\n'
        f'[base]\nweights = "random:0"\nsize = 64\niterations = 3\n{body}'
    )
    return path


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sweep_cartesian_resumes(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, '[axes]\noptimizer = ["adam", "lbfgs"]\nstyle_weight = [1e3, 1e6]\n'))
    assert len(spec.trials) == 4
    out = tmp_path / "out"
    sweep(spec, out, progress=False)
    first = manifest(out)
    assert [e["status"] for e in first] == ["ok"] * 4
    assert {(e["params"]["optimizer"], e["params"]["style_weight"]) for e in first} == {
        ("adam", 1e3),
        ("adam", 1e6),
        ("lbfgs", 1e3),
        ("lbfgs", 1e6),
    }
    assert all((out / e["image"]).is_file() and e["losses"]["total"] > 0 for e in first)
    assert Image.open(out / "sheet.png").size[0] > 2 * 224
    sweep(spec, out, progress=False)  # everything finished: nothing runs again
    assert manifest(out) == first


def test_sweep_records_failures_and_goes_on(tmp_path):
    body = '[[trials]]\nlr = 2.0\noptimizer = "adam"\n[[trials]]\nstyle_layers = ["bogus_layer"]\n[[trials]]\nlr = 0\n'
    out = tmp_path / "out"
    sweep(load_sweep(write_sweep(tmp_path, body)), out, progress=False)
    entries = {e["key"][:9]: e for e in manifest(out)}
    assert entries["trial-000"]["status"] == "ok"
    assert entries["trial-001"]["status"] == "error" and "unknown layer 'bogus_layer'" in entries["trial-001"]["error"]
    assert entries["trial-002"]["status"] == "error" and "lr" in entries["trial-002"]["error"]
    assert (out / "sheet.png").exists()


@pytest.mark.parametrize(
    "body, words",
    [
        ("[axes]\nlr = [1.0]\n[[trials]]\nlr = 2.0\n", "either"),
        ("", "either"),
        ("colour = 1\n[axes]\nlr = [1.0]\n", "unknown config key 'colour'"),
        ("[axes]\nlr = []\n", "non-empty"),
    ],
)
def test_bad_sweep_files(tmp_path, body, words):
    with pytest.raises(NStyleError, match=words):
        load_sweep(write_sweep(tmp_path, body))


def test_unknown_top_level_sweep_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('content = "a.jpg"\nstyle = "b.jpg"\nstyles = 3\n[axes]\nlr = [1.0]\n')
    with pytest.raises(NStyleError, match="unknown key 'styles'"):
        load_sweep(path)


@pytest.mark.slow
def test_sweep_in_two_worker_processes(tmp_path):
    spec = load_sweep(write_sweep(tmp_path, "[axes]\nstyle_weight = [1e3, 1e6]\n"))
    out = tmp_path / "out"
    sweep(spec, out, workers=2, progress=False)
    assert [e["status"] for e in manifest(out)] == ["ok", "ok"]


@pytest.mark.slow
def test_sweep_on_local_ray(tmp_path):
    pytest.importorskip("ray")
    spec = load_sweep(write_sweep(tmp_path, "[axes]\nstyle_weight = [1e3, 1e6]\n"))
    out = tmp_path / "out"
    sweep(spec, out, ray="local", progress=False)
    entries = manifest(out)
    assert sorted(e["status"] for e in entries) == ["ok", "ok"]
    assert all((out / e["image"]).is_file() for e in entries)


@pytest.mark.slow
def test_cli_probe_grid_sweep(tmp_path, capsys):
    flags = ["--weights", "random:0", "--size", "64", "--iterations", "2", "--quiet"]
    assert main(["probe", str(CONTENT), str(STYLE), "--layers", "conv1", "-o", str(tmp_path / "p"), *flags]) == 0
    assert (tmp_path / "p" / "sheet.png").exists()
    assert main(["grid", "--content", str(CONTENT), "--style", str(STYLE), "-o", str(tmp_path / "g"), *flags]) == 0
    assert (tmp_path / "g" / "grid.png").exists()
    sweep_file = write_sweep(tmp_path, "[axes]\niterations = [1, 2]\n")
    assert main(["sweep", str(sweep_file), "-o", str(tmp_path / "s"), "--quiet"]) == 0
    assert len(manifest(tmp_path / "s")) == 2
    capsys.readouterr()
    code = main(["grid", "--content", str(tmp_path / "nope.jpg"), "--style", str(STYLE), "-o", str(tmp_path / "g2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "content image not found" in err
    assert main(["sweep", str(sweep_file), "-o", str(tmp_path / "s"), "--workers", "0", "--quiet"]) == 2


# --- the one preflight every command shares ----------------------------------------------------


@pytest.mark.parametrize("command", ["grid", "sweep", "video", "stylize"])
def test_every_command_refuses_an_output_another_run_is_writing(tmp_path, capsys, command):
    import subprocess
    import sys

    out = {
        "grid": tmp_path / "grid",
        "sweep": tmp_path / "sweep",
        "video": tmp_path / "out.mp4",
        "stylize": tmp_path / "out.png",
    }[command]
    spec = write_sweep(tmp_path, "[axes]\nseed = [1, 2]")
    argv = {
        "grid": ["grid", "--content", str(CONTENT), "--style", str(STYLE), "--weights", "random:0", "-o", str(out)],
        "sweep": ["sweep", str(spec), "-o", str(out)],
        "video": ["video", str(SAMPLES.parent / "video" / "pan.mp4"), str(STYLE), "-o", str(out)],
        "stylize": [str(CONTENT), str(STYLE), "-o", str(out), "--weights", "random:0"],
    }[command]
    if command == "video":
        pytest.importorskip("av")
        pytest.importorskip("cv2")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out.parent / f".{out.name}.lock").write_text(str(sleeper.pid))
        capsys.readouterr()
        assert main([*argv, "--quiet"] if command != "sweep" else argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another nstyle run (process {sleeper.pid}) is writing {out}" in err
        assert not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_grid_too_large_for_the_disk_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    out = tmp_path / "grid"
    code = main(
        [
            "grid",
            "--content",
            str(CONTENT),
            str(ROCKET),
            "--style",
            str(STYLE),
            *"--weights random:0 --size 512 -o".split(),
            str(out),
        ]
    )
    assert code == 2 and "MB free; this run writes up to" in capsys.readouterr().err
    assert not out.exists()
