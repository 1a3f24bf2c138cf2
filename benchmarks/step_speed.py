"""Step speed: the notebook's eager loop against nstyle's compiled step, in one run.

All do the same work per iteration: ResNet50 (random weights, seed 0) truncated at the
notebook's five layers, a 384x512 image, its content + Gram style loss, Adam (lr 20,
beta1 0.99, epsilon 0.1) and clipping to valid pixels. The baseline is the notebook's code
ported to TF2: the model called eagerly inside a GradientTape, and the best image copied
to numpy and deprocessed whenever the loss improves. nstyle runs in float32 (BatchNorm
folded; also unfolded, to show what folding gives) and in ``--precision auto`` (what this
machine's hardware picks). Rounds alternate between them so that machine noise hits all
alike; medians are reported. TensorFlow's intra-op threads are set to the usable cores.
Every other installed Keras backend (JAX, PyTorch) then times nstyle's float32 and ``auto``
steps in a process of its own (Keras picks its backend once per process), a line each.

    python benchmarks/step_speed.py [--iterations 6] [--rounds 3] [--memory]

Ends with ``speedup: X.XX`` (baseline s/iter divided by nstyle ``auto`` s/iter, on TensorFlow,
the default backend). ``--memory`` also runs a 512 px stylization in a child process and
prints its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from common import save_results

from nstyle import backends

HEIGHT, WIDTH = 384, 512


def notebook_loop(model, content, style, iterations: int) -> list[float]:
    """The notebook's training loop, eager, TF2; returns seconds per iteration."""
    import keras
    import tensorflow as tf

    from nstyle.backbones import CAFFE

    def gram_matrix(input_tensor):
        channels = int(input_tensor.shape[-1])
        a = tf.reshape(input_tensor, [-1, channels])
        n = tf.shape(a)[0]
        return tf.matmul(a, a, transpose_a=True) / tf.cast(n, tf.float32)

    def get_content_loss(base_content, target):
        return tf.reduce_mean(tf.square(base_content - target))

    def get_style_loss(base_style, gram_target):
        return tf.reduce_mean(tf.square(gram_matrix(base_style) - gram_target))

    def deprocess_img(processed_img):
        x = processed_img.copy()[0]
        x[:, :, 0] += 103.939
        x[:, :, 1] += 116.779
        x[:, :, 2] += 123.68
        return np.clip(x[:, :, ::-1], 0, 255).astype("uint8")

    num_content = 1
    content_features = [layer[0] for layer in model(content)[:num_content]]
    style_features = [layer[0] for layer in model(style)[num_content:]]
    gram_style_features = [gram_matrix(f) for f in style_features]

    def compute_loss(init_image):
        outputs = model(init_image)
        style_score = tf.add_n(
            [get_style_loss(o[0], g) for o, g in zip(outputs[num_content:], gram_style_features)]
        ) / len(gram_style_features)
        content_score = (
            tf.add_n([get_content_loss(o[0], c) for o, c in zip(outputs[:num_content], content_features)]) / num_content
        )
        return 1e6 * style_score + 1.0 * content_score

    init_image = tf.Variable(content)
    opt = keras.optimizers.Adam(learning_rate=20.0, beta_1=0.99, epsilon=1e-1)
    low, high = CAFFE.bounds()
    best_loss, times = float("inf"), []
    for _ in range(iterations):
        start = time.perf_counter()
        with tf.GradientTape() as tape:
            loss = compute_loss(init_image)
        grads = tape.gradient(loss, init_image)
        opt.apply_gradients([(grads, init_image)])
        init_image.assign(tf.clip_by_value(init_image, low, high))
        if loss < best_loss:
            best_loss = loss
            deprocess_img(init_image.numpy())
        times.append(time.perf_counter() - start)
    return times


def nstyle_loop(extractor, content, style, iterations: int, native_gram: bool = True) -> list[float]:
    """nstyle's own optimiser on the same loss; returns seconds per iteration (first one is the trace)."""
    from nstyle.backbones import CAFFE
    from nstyle.config import resolve
    from nstyle.losses import StyleTransferLoss, Terms, WeightedLayer, tensor
    from nstyle.optimize import OptimizerSettings, optimize

    cfg = resolve("seed")
    terms = Terms(
        [WeightedLayer(extractor.resolved[s.name], 1.0) for s in cfg.content_layers],
        [WeightedLayer(extractor.resolved[s.name], 1.0) for s in cfg.style_layers],
        cfg.content_weight,
        cfg.style_weight,
        native_gram=native_gram,
    )
    loss = StyleTransferLoss(extractor, terms, tensor(content), [tensor(style)])
    stamps = [time.perf_counter()]
    settings = OptimizerSettings(
        "adam", iterations, cfg.lr, cfg.beta1, cfg.beta2, cfg.epsilon, loss_scaling=extractor.precision == "float16"
    )
    optimize(loss, content, CAFFE.bounds(), settings, CAFFE.inverse, [lambda p: stamps.append(time.perf_counter())])
    return list(np.diff(stamps))


def peak_rss_of_512px_run() -> float:
    """Peak resident memory (MiB) of a child process stylizing at 512 px for a few iterations."""
    code = (
        "import nstyle;"
        "nstyle.stylize('examples/images/content/chelsea.jpg','examples/images/style/starry_night.jpg',"
        "weights='random:0', size=512, iterations=5)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def inputs():
    """The seed's ResNet50 (random:0) and its layers, and a random content and style image."""
    from nstyle.backbones import CAFFE, REGISTRY, load_model
    from nstyle.config import resolve

    cfg = resolve("seed")
    rng = np.random.default_rng(0)
    content = CAFFE.forward(rng.uniform(0, 255, (1, HEIGHT, WIDTH, 3)))
    style = CAFFE.forward(rng.uniform(0, 255, (1, HEIGHT, WIDTH, 3)))
    names = [s.name for s in (*cfg.content_layers, *cfg.style_layers)]
    return REGISTRY["resnet50"], load_model("resnet50", "random:0"), names, content, style


def time_backend(iterations: int, rounds: int) -> dict[str, float]:
    """In a process on another backend: nstyle's float32 and auto steps, median s/iter of each."""
    from nstyle.backbones import FeatureExtractor, precision

    backends.use_all_cores()
    backbone, resnet, names, content, style = inputs()
    auto = precision.resolve("auto")
    variants = {
        "float32": FeatureExtractor(backbone, resnet, names),
        f"auto ({auto.name})": FeatureExtractor(backbone, resnet, names, precision=auto.name),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, extractor in variants.items():  # skip trace + warm-up
            times[name] += nstyle_loop(extractor, content, style, iterations + 2)[2:]
    return {name: statistics.median(v) for name, v in times.items()}


def other_backends(iterations: int, rounds: int) -> dict[str, float]:
    """Each installed backend but TensorFlow, timed in a child process of this script."""
    found = {}
    for name in backends.NAMES[1:]:
        if not backends.is_installed(name):
            print(f"{name}: not installed")
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--iterations", str(iterations), "--rounds", str(rounds), "--child"],
            capture_output=True,
            text=True,
            env={**os.environ, "KERAS_BACKEND": name},
        )
        if proc.returncode != 0:
            print(f"{name}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        for variant, seconds in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            found[f"nstyle {variant} on {name}"] = seconds
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also report peak RSS of a 512 px run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one backend's line, as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_backend(args.iterations, args.rounds)))
        return
    backends.select("tensorflow")
    import keras

    from nstyle.backbones import FeatureExtractor, precision

    threads = backends.use_all_cores()
    backbone, resnet, names, content, style = inputs()
    auto = precision.resolve("auto")
    low = FeatureExtractor(backbone, resnet, names, precision=auto.name)
    variants = {  # name: (network, Gram matrices in the network's precision)
        "float32, unfolded": (FeatureExtractor(backbone, resnet, names, fold=False), True),
        "float32": (FeatureExtractor(backbone, resnet, names), True),
        f"auto ({auto.name})": (low, True),
    }
    if auto.name == "bfloat16":  # the same step with its Gram matrices in float32: what bf16 Gram gives
        variants["auto (bfloat16), float32 Gram"] = (low, False)
    notebook_model = keras.Model(resnet.input, [resnet.get_layer(n).output for n in variants["float32"][0].layers])

    print(f"CPU: {precision.host_cpu().describe()}; GPUs: {[g.name for g in precision.gpus()] or 'none'}")
    print(
        f"tensorflow {backends.backend_version()}, keras {keras.__version__}, intra-op threads {threads}; "
        f"auto precision: {auto.name} ({auto.reason})"
    )
    print(f"{HEIGHT}x{WIDTH}, resnet50 random weights, the seed's layers, Adam")
    times: dict[str, list[float]] = {"notebook eager loop": [], **{f"nstyle {k}": [] for k in variants}}
    for r in range(args.rounds):
        times["notebook eager loop"] += notebook_loop(notebook_model, content, style, args.iterations + 1)[1:]
        for name, (extractor, native_gram) in variants.items():  # skip trace + warm-up
            times[f"nstyle {name}"] += nstyle_loop(extractor, content, style, args.iterations + 2, native_gram)[2:]
        print(f"round {r + 1}: " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in times.items()) + " s/iter")
    medians = {k: statistics.median(v) for k, v in times.items()}
    medians.update(other_backends(args.iterations, args.rounds))
    baseline = medians["notebook eager loop"]
    for name, seconds in medians.items():
        print(f"{name:36} {seconds:.3f} s/iter  ({baseline / seconds:.2f}x the notebook)")
    peak = peak_rss_of_512px_run() if args.memory else None
    if peak is not None:
        print(f"peak RSS, 512 px stylize (5 iterations): {peak:.0f} MiB")
    rows = [
        {"loop": name, "s/iter": round(seconds, 4), "x the notebook": round(baseline / seconds, 2)}
        for name, seconds in medians.items()
    ]
    speedup = baseline / medians[f"nstyle auto ({auto.name})"]
    save_results(
        "step_speed",
        f"Step speed, {HEIGHT}x{WIDTH}, ResNet50 (random weights), the seed's layers, Adam",
        rows,
        f"speedup: {speedup:.2f}",
        auto_precision=auto.name,
        threads=threads,
        peak_rss_mib=peak,
    )
    print(f"float32 speedup: {baseline / medians['nstyle float32']:.2f}")
    print(f"speedup: {speedup:.2f}")


if __name__ == "__main__":
    main()
