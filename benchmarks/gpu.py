"""GPU speed and memory: nstyle's Adam step on each Keras backend present, beside the classic peer.

For every backend installed (each in a process of its own: Keras picks its backend once per
process), float32 and bfloat16, at 512, 1024 and 2048 px (longer side, 3:4): seconds per
iteration of nstyle's compiled step on the seed preset's ResNet50 layers (random:0 weights, so
no download) and the peak GPU memory. Beside it the peer every style-transfer user knows: Gatys
et al. on torchvision's VGG19 (random weights), plain PyTorch, Adam on the image, float32 and
bfloat16 autocast. Each figure is the median of a few iterations after a warm-up; a size that
does not fit is reported as out of memory. The whole run keeps to ``--budget`` seconds
(default 270): what is left when it is spent is marked skipped.

Runs from a copy of the working tree with no network, nstyle itself from ``src`` and what the
machine lacks arriving as wheels (this project's GPU machine has PyTorch, torchvision and JAX
with CUDA, most of nstyle's dependencies, and no TensorFlow; keras, namex, optree, platformdirs
and pypng travel, downloaded for its Python as the device tool's README says):

    pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src python benchmarks/gpu.py [--sizes 512 1024 2048] [--budget 270]

Writes ``benchmarks/results/gpu-<device>.json`` and ends with ``fastest: BACKEND PRECISION X s/iter at 1024 px``
(at the largest size asked for, when 1024 is not among them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARMUP, TIMED = 2, 5


def shape_of(side: int) -> tuple[int, int]:
    return side * 3 // 4, side


def nstyle_child(backend: str, sizes: list[int], deadline: float) -> list[dict]:
    """In a process on ``backend``: the step at every size and precision."""
    from nstyle import backends
    from nstyle.backbones import CAFFE, REGISTRY, FeatureExtractor, load_model
    from nstyle.config import resolve
    from nstyle.losses import StyleTransferLoss, Terms, WeightedLayer, tensor
    from nstyle.optimize import OptimizerSettings, optimize

    backends.select(backend)
    ops = backends.ops()
    cfg = resolve("seed")
    resnet = load_model("resnet50", "random:0")
    names = [s.name for s in (*cfg.content_layers, *cfg.style_layers)]
    rows = []
    for precision in ("float32", "bfloat16"):
        extractor = FeatureExtractor(REGISTRY["resnet50"], resnet, names, precision=precision)
        terms = Terms(
            [WeightedLayer(extractor.resolved[s.name], 1.0) for s in cfg.content_layers],
            [WeightedLayer(extractor.resolved[s.name], 1.0) for s in cfg.style_layers],
            cfg.content_weight,
            cfg.style_weight,
        )
        for side in sizes:
            row = {"method": f"nstyle on {backend}", "precision": precision, "px": side}
            if time.time() > deadline:
                rows.append({**row, "s/iter": None, "peak GB": None, "note": "skipped: budget spent"})
                continue
            rng = np.random.default_rng(0)
            content = CAFFE.forward(rng.uniform(0, 255, (1, *shape_of(side), 3)))
            try:
                ops.reset_peak_memory()
                loss = StyleTransferLoss(extractor, terms, tensor(content), [tensor(content[:, ::-1])])
                stamps = [time.perf_counter()]
                settings = OptimizerSettings("adam", WARMUP + TIMED, cfg.lr, cfg.beta1, cfg.beta2, cfg.epsilon)
                optimize(
                    loss,
                    content,
                    CAFFE.bounds(),
                    settings,
                    CAFFE.inverse,
                    [lambda p, stamps=stamps: stamps.append(time.perf_counter())],
                )
                seconds = statistics.median(np.diff(stamps)[WARMUP:])
                rows.append({**row, "s/iter": round(float(seconds), 4), "peak GB": ops.peak_memory_gb(), "note": ""})
            except Exception as e:  # out of memory, above all: say so and go on
                rows.append({**row, "s/iter": None, "peak GB": None, "note": f"failed: {type(e).__name__}"})
    return rows


def vgg19_peer(sizes: list[int], deadline: float) -> list[dict]:
    """Gatys et al. on torchvision's VGG19 (random weights), plain PyTorch: the classic peer."""
    import torch
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    vgg = torchvision.models.vgg19(weights=None).features[:30].to(device).eval().requires_grad_(False)
    style_at, content_at = {1, 6, 11, 20, 29}, 22  # conv1_1 ... conv5_1 (after ReLU), conv4_2

    def features(x):
        style, content = [], None
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in style_at:
                style.append(x)
            if i == content_at:
                content = x
        return style, content

    def gram(f):
        b, c, h, w = f.shape
        flat = f.reshape(c, h * w).float()
        return flat @ flat.T / (h * w)

    rows = []
    for precision in ("float32", "bfloat16"):
        for side in sizes:
            row = {"method": "Gatys, VGG19, plain PyTorch", "precision": precision, "px": side}
            if time.time() > deadline:
                rows.append({**row, "s/iter": None, "peak GB": None, "note": "skipped: budget spent"})
                continue
            try:
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                height, width = shape_of(side)
                photo = torch.rand(1, 3, height, width, device=device)
                with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=precision == "bfloat16"):
                    style_targets = [gram(f) for f in features(photo.flip(-1))[0]]
                    content_target = features(photo)[1].float()
                image = photo.clone().requires_grad_(True)
                adam = torch.optim.Adam([image], lr=0.02)
                times = []
                for _ in range(WARMUP + TIMED):
                    start = time.perf_counter()
                    adam.zero_grad()
                    with torch.autocast(device, torch.bfloat16, enabled=precision == "bfloat16"):
                        style, content = features(image)
                        loss = sum(((gram(f) - t) ** 2).mean() for f, t in zip(style, style_targets))
                        loss = 1e6 * loss + ((content.float() - content_target) ** 2).mean()
                    loss.backward()
                    adam.step()
                    with torch.no_grad():
                        image.clamp_(0, 1)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
                peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
                seconds = statistics.median(times[WARMUP:])
                rows.append({**row, "s/iter": round(seconds, 4), "peak GB": peak and round(peak, 2), "note": ""})
            except Exception as e:
                rows.append({**row, "s/iter": None, "peak GB": None, "note": f"failed: {type(e).__name__}"})
    return rows


def device_name() -> str:
    """The GPU's name (nvidia-smi), or this CPU's where there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    from nstyle.backbones import precision

    return f"CPU {precision.host_cpu().describe()}"


def run_backend(backend: str, sizes: list[int], deadline: float) -> list[dict]:
    """:func:`nstyle_child` in a process of its own."""
    script = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); from gpu import nstyle_child; "
        f"print(json.dumps(nstyle_child({backend!r}, {sizes!r}, {deadline!r})))"
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [
            {
                "method": f"nstyle on {backend}",
                "precision": "-",
                "px": None,
                "s/iter": None,
                "peak GB": None,
                "note": f"failed: {reason[:120]}",
            }
        ]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--budget", type=float, default=270.0, help="seconds the whole run may take")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from nstyle.backends import NAMES, is_installed

    deadline = time.time() + args.budget
    device = device_name()
    print(f"device: {device}")
    rows = []
    for backend in [name for name in NAMES if is_installed(name)]:
        rows += run_backend(backend, args.sizes, deadline)
        print(*(json.dumps(r) for r in rows if r["method"] == f"nstyle on {backend}"), sep="\n")
    if is_installed("torch") and is_installed("torchvision"):
        rows += vgg19_peer(args.sizes, deadline)
        print(*(json.dumps(r) for r in rows if r["method"].startswith("Gatys")), sep="\n")
    side = 1024 if 1024 in args.sizes else max(args.sizes)
    timed = [r for r in rows if r["s/iter"] and r["px"] == side and r["method"].startswith("nstyle")]
    best = min(timed, key=lambda r: r["s/iter"], default=None)
    summary = f"fastest: none at {side} px"
    if best:
        summary = f"fastest: {best['method'].removeprefix('nstyle on ')} {best['precision']} {best['s/iter']} s/iter at {side} px"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    os.environ.setdefault("KERAS_BACKEND", next(name for name in NAMES if is_installed(name)))  # for the versions
    from common import save_results

    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    save_results("gpu", f"GPU: s/iteration and peak memory, {device}", rows, summary, name=f"gpu-{slug}", device=device)
    print(summary)


if __name__ == "__main__":
    main()
