"""The run configuration: one validated object, built from preset < config file < flags.

Presets are TOML files shipped in ``nstyle/presets``; a user's ``--config FILE.toml`` uses the
same keys, and so do the CLI flags and the keyword arguments of :func:`nstyle.stylize`.
Every value passes through :func:`Config.from_dict`, the one place where values are checked,
so a bad value anywhere gives the same one-line error naming its key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from .backbones.precision import PRECISIONS
from .errors import ConfigError

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "recolored", "style", "noise")
STYLE_LOSSES = ("gram", "wasserstein", "meanstd", "histogram")
COLOR_MODES = ("none", "luminance", "histogram")
#: How a --tileable picture wraps (nstyle.wrap): the input padded circularly, or rolled each step.
WRAP_MODES = ("off", "wrap", "roll")
WRAP_DEFAULT = "wrap"  # benchmarks/tileable.py: the lower seam metric with Adam, and L-BFGS can follow it
MAX_SCALES = 8
MIN_TILE = 32  # a forced tile's smallest side
MIN_SIZE, MAX_SIZE = 32, 16384  # above what fits whole, scales run in tiles (nstyle.plan)
MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class LayerSpec:
    """A feature layer and its relative weight inside its loss term."""

    name: str
    weight: float = 1.0

    def __str__(self) -> str:
        return self.name if self.weight == 1.0 else f"{self.name}:{self.weight:g}"


Check = Callable[[Mapping[str, Any], str], Any]  # (values, key) -> the checked value, or ConfigError


def setting(default: Any, check: Check, help: str, **flag: Any) -> Any:
    """A :class:`Config` field with everything said once: its default, its check, and its CLI flag.

    ``help`` and ``flag`` (argparse's ``type``, ``nargs``, ``metavar``, ``choices``, ``const``)
    build ``--the-key`` in :func:`nstyle.cli.add_settings` (``{backbones}`` in ``help`` names
    the registered backbones); ``check`` is what
    :meth:`Config.from_dict` runs on the value, from a preset, a TOML file, a flag or Python alike.
    """
    return field(default=default, metadata={"check": check, "help": help, "flag": flag})


def _optional(check: Check) -> Check:
    return lambda v, key: None if v[key] is None else check(v, key)


def _each(check: Check) -> Check:
    return lambda v, key: tuple(check({key: item}, key) for item in _list(v, key))


def _at_least(minimum: float, strict: bool = False, below: float | None = None) -> Check:
    return lambda v, key: _number(v, key, minimum, strict, below)


def _between(minimum: int, maximum: int) -> Check:
    return lambda v, key: _integer(v, key, minimum, maximum)


def _one_of(choices: tuple[str, ...] | Callable[[], tuple[str, ...]]) -> Check:
    return lambda v, key: _choice(v, key, choices() if callable(choices) else choices)


def _tile(v: Mapping[str, Any], key: str) -> int:
    return 0 if v[key] in (0, None) else _integer(v, key, MIN_TILE, MAX_SIZE)


def _backend(v: Mapping[str, Any], key: str) -> str:
    """'' (KERAS_BACKEND, else TensorFlow) or an installed backend's name."""
    from .backends import NAMES, is_installed

    if v[key] in ("", None):
        return ""
    name = _choice(v, key, NAMES)
    if not is_installed(name):
        raise ConfigError(f"{key}: {name} is not installed (pip install -e '.[{name}]')")
    return name


WEIGHT = {"type": float, "metavar": "W"}
LAYERS = {"nargs": "+", "metavar": "LAYER[:W]"}


@dataclass(frozen=True)
class Config:
    """Everything that decides a stylization, so a run can be recorded and repeated."""

    backbone: str = setting("resnet50", _one_of(lambda: _backbone_names()), "feature network: {backbones}")
    weights: str = setting(
        "imagenet",
        lambda v, key: _weights(v[key]),
        "'imagenet', 'hed' (vgg16 only: HED's, offline), 'random[:SEED]' (untrained, offline) or a Keras weights file",
    )
    content_layers: tuple[LayerSpec, ...] = setting(
        (), lambda v, key: _layers(v, key), "layers whose activations to keep", **LAYERS
    )
    style_layers: tuple[LayerSpec, ...] = setting(
        (), lambda v, key: _layers(v, key), "layers whose Gram matrices to match", **LAYERS
    )
    content_weight: float = setting(1.0, _at_least(0.0), "weight of the content term", **WEIGHT)
    style_weight: float = setting(1.0, _at_least(0.0), "weight of the style term", **WEIGHT)
    tv_weight: float = setting(0.0, _at_least(0.0), "weight of total variation (smoothness)", **WEIGHT)
    optimizer: str = setting(
        "adam", _one_of(OPTIMIZERS), "adam (the notebook's) or lbfgs (projected L-BFGS)", choices=OPTIMIZERS
    )
    lr: float = setting(
        1.0, _at_least(0.0, strict=True), "Adam learning rate, in pixel units (the notebook used 20)", type=float
    )
    beta1: float = setting(0.9, _at_least(0.0, below=1.0), "Adam beta1", type=float)
    beta2: float = setting(0.999, _at_least(0.0, below=1.0), "Adam beta2", type=float)
    epsilon: float = setting(1e-7, _at_least(0.0, strict=True), "Adam epsilon", type=float)
    iterations: int = setting(100, _between(1, MAX_ITERATIONS), "optimisation steps", type=int, metavar="N")
    size: int = setting(
        512, _between(MIN_SIZE, MAX_SIZE), "longer side of the output in pixels", type=int, metavar="PX"
    )
    init: str = setting(
        "content",
        _one_of(INITS),
        "starting image; recolored (lite0's and hed's): the photo in the painting's colour mean and covariance",
        choices=INITS,
    )
    seed: int | None = setting(
        None, _optional(_between(0, 2**32 - 1)), "seed for noise initialisation (recorded in the output)", type=int
    )
    style_loss: str = setting(
        "gram",
        lambda v, key: _style_loss(v, key),
        "style statistic: gram (Gram matrices, the notebook's), wasserstein (2-Wasserstein between "
        "Gaussian fits), meanstd (per-channel mean and std) or histogram (Risser et al. 2017: each "
        "channel's histogram); several joined by '+', e.g. gram+histogram",
        metavar="LOSS",
    )
    histogram_weight: float = setting(
        1.0,
        _at_least(0.0),
        "weight of the histogram term beside the style statistic it is added to (gram+histogram; 1: alike for a blank image)",
        **WEIGHT,
    )
    mask: str | None = setting(
        None,
        _optional(lambda v, key: _file(v, key)),
        "greyscale image: where the style applies (white), where the photo is kept (black); grey is partly",
        metavar="MASK",
    )
    style_masks: tuple[str, ...] = setting(
        (),
        _each(lambda v, key: _file(v, key)),
        "one greyscale mask per STYLE, in order: where each style paints (overlaps mixed by --style-blend)",
        nargs="+",
        metavar="MASK",
    )
    swag: float = setting(
        0.0,
        _at_least(0.0),
        "SWAG (Wang et al. 2021): one softmax over each layer's activations "
        "before the losses, temperature T (default 1; 0 = off); each layer's term becomes relative "
        "to its target",
        type=float,
        nargs="?",
        const=1.0,
        metavar="T",
    )
    scales: int = setting(1, _between(1, MAX_SCALES), "coarse-to-fine: N sizes ending at --size", type=int, metavar="N")
    scale_factor: float = setting(
        math.sqrt(2), _at_least(1.0, strict=True), "size ratio between scales (default 1.414)", type=float, metavar="F"
    )
    scale_iterations: tuple[int, ...] = setting(
        (),
        _each(_between(1, MAX_ITERATIONS)),
        "iterations at each scale, coarse to fine (default: --iterations each)",
        type=int,
        nargs="+",
        metavar="N",
    )
    preserve_color: str = setting(
        "none",
        _one_of(COLOR_MODES),
        "keep the content's colours: style on luminance only, or recolour the style first",
        choices=COLOR_MODES,
    )
    style_blend: tuple[float, ...] = setting(
        (),
        _each(_at_least(0.0, strict=True)),
        "weights of several STYLE images (normalised; default equal)",
        type=float,
        nargs="+",
        metavar="W",
    )
    style_scale: float = setting(
        1.0, _at_least(0.0, strict=True), "style image size relative to the output (default 1)", type=float, metavar="F"
    )
    ema: float = setting(
        0.0,
        _at_least(0.0, below=1.0),
        "output the moving average of the iterates (e.g. 0.9), less noisy than the best one",
        type=float,
        metavar="DECAY",
    )
    precision: str = setting(
        "auto",
        _one_of(PRECISIONS),
        "the network's arithmetic: auto (default: Adam in "
        "bfloat16 where the CPU or GPU has fast bf16, else float32; L-BFGS in float32), "
        "float32, bfloat16 or float16",
        metavar="P",
    )
    backend: str = setting(
        "",
        _backend,
        "the Keras backend: tensorflow, jax or torch (default: KERAS_BACKEND, else tensorflow)",
        metavar="NAME",
    )
    max_memory: float | None = setting(
        None,
        _optional(_at_least(0.0, strict=True)),
        "memory the run may use "
        "(default: 80%% of what is free now); scales that do not fit run in "
        "overlapping tiles, and a size that cannot fit is refused before any work",
        type=float,
        metavar="GB",
    )
    tile: int = setting(0, _tile, "tile every scale larger than PX with PX-sized tiles", type=int, metavar="PX")
    tileable: str = setting(
        "off",
        _one_of(WRAP_MODES),
        "a picture that wraps (its right edge continues into its left, its bottom into its top), to tile "
        "without a seam; 'wrap' (the default method) pads the network's input circularly, 'roll' rolls the "
        "image by a random offset each step",
        nargs="?",
        const=WRAP_DEFAULT,
        choices=WRAP_MODES,
        metavar="METHOD",
    )
    look_size: int = setting(
        0,
        lambda v, key: 0 if v[key] in (0, None) else _integer(v, key, MIN_SIZE, MAX_SIZE),
        "the size whose look a larger picture keeps: above it the run goes coarse to fine from this "
        "size, so strokes keep their proportion while detail is added (0: off)",
        type=int,
        metavar="PX",
    )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Check every key and value; raise :class:`ConfigError` naming the first bad one."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown config key '{key}' (known keys: {', '.join(sorted(known))})")
        v = {**asdict(cls()), **values}
        config = cls(**{f.name: f.metadata["check"](v, f.name) for f in fields(cls)})
        if config.weights == "hed" and config.backbone != "vgg16":
            raise ConfigError(
                f"weights: 'hed' is the HED edge detector's VGG16 body; it fits --backbone vgg16, not {config.backbone}"
            )
        if config.scale_iterations and len(config.scale_iterations) != config.scale_count:
            raise ConfigError(
                f"scale_iterations: {len(config.scale_iterations)} values for {config.scale_count} scales "
                "(give one per scale)"
            )
        config.scale_sizes  # noqa: B018 (checks the coarsest size)
        if config.style_scale > 4:
            raise ConfigError(f"style_scale: {config.style_scale:g} must be <= 4")
        if config.content_weight > 0 and not config.content_layers:
            raise ConfigError("content_layers: empty, but content_weight > 0 (give a layer or set content_weight 0)")
        if config.style_weight > 0 and not config.style_layers:
            raise ConfigError("style_layers: empty, but style_weight > 0 (give a layer or set style_weight 0)")
        if config.tileable == "roll" and config.optimizer != "adam":
            raise ConfigError(
                "tileable: roll changes the loss every step, which L-BFGS's line search cannot follow; use wrap"
            )
        if "histogram" in config.style_loss.split("+") and config.swag > 0:
            raise ConfigError("style_loss: histogram matches raw activations; it does not combine with swag")
        if config.content_weight == 0 and config.style_weight == 0 and config.tv_weight == 0:
            raise ConfigError("content_weight, style_weight and tv_weight are all 0: nothing to optimise")
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON-ready values that :meth:`from_dict` reads back to an equal Config."""
        d = asdict(self)
        d["content_layers"] = [str(s) for s in self.content_layers]
        d["style_layers"] = [str(s) for s in self.style_layers]
        d["scale_iterations"] = list(self.scale_iterations)
        d["style_blend"] = list(self.style_blend)
        d["style_masks"] = list(self.style_masks)
        if self.mask is None:  # TOML has no null
            del d["mask"]
        return d

    def task_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the mask files: a worker process or Ray task gets its regions
        as arrays, and may run where the files are not."""
        d = self.to_dict()
        d.pop("mask", None)
        d["style_masks"] = []
        return d

    def check_styles(self, count: int) -> None:
        """``style_blend``, when given, needs one weight per style image."""
        if self.style_blend and len(self.style_blend) != count:
            raise ConfigError(f"style_blend: {len(self.style_blend)} weights for {count} style images")
        if self.style_masks and len(self.style_masks) != count:
            raise ConfigError(f"style_masks: {len(self.style_masks)} masks for {count} style images (one per style)")

    @property
    def masked(self) -> bool:
        """Whether the style applies to regions (``mask`` or ``style_masks``) rather than everywhere."""
        return self.mask is not None or bool(self.style_masks)

    @property
    def total_iterations(self) -> int:
        """Iterations over all scales."""
        return sum(self.scale_iterations) if self.scale_iterations else self.iterations * self.scale_count

    @property
    def look_scales(self) -> int:
        """Scales from ``look_size`` up to ``size`` (1: no look size, or not above it)."""
        if not self.look_size or self.size <= self.look_size:
            return 1
        return 1 + math.ceil(math.log(self.size / self.look_size) / math.log(self.scale_factor) - 1e-9)

    @property
    def scale_count(self) -> int:
        """How many sizes the run optimises: ``scales``, or more where the look size needs more."""
        return max(self.scales, self.look_scales)

    @property
    def scale_sizes(self) -> list[int]:
        """Longer sides, coarse to fine, ending at ``size``.

        Without a look size, ``scales`` sizes each ``scale_factor`` times the last. Above a look
        size, the climb from ``look_size`` to ``size`` goes in even ratios of at most
        ``scale_factor``; scales that ``scales`` asks for beyond those go below the look size,
        ``scale_factor`` apart.
        """
        n = self.look_scales
        start = self.look_size if n > 1 else self.size
        top = [round(start * (self.size / start) ** (i / (n - 1))) for i in range(n)] if n > 1 else [self.size]
        extra = self.scale_count - n
        below = [round(start / self.scale_factor ** (extra - i)) for i in range(extra)]
        sizes = below + top
        if sizes[0] < MIN_SIZE:
            raise ConfigError(
                f"scales: {self.scales} scales of factor {self.scale_factor:.3g} below size {start} start at "
                f"{sizes[0]} px, under the {MIN_SIZE} px minimum (fewer scales or a larger size)"
            )
        return sizes


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("nstyle.presets").iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """Raw values of a shipped preset, with its ``description`` removed."""
    if name not in preset_names():
        raise ConfigError(f"preset: unknown preset '{name}' (choose from {', '.join(preset_names())})")
    values = tomllib.loads(resources.files("nstyle.presets").joinpath(f"{name}.toml").read_text())
    values.pop("description", None)
    return values


def preset_description(name: str) -> str:
    """The one-line description a preset file carries."""
    text = resources.files("nstyle.presets").joinpath(f"{name}.toml").read_text()
    return str(tomllib.loads(text).get("description", ""))


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's table, or a one-line error that starts with ``what`` (config, sweep)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what}: no such file '{path}'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: cannot read '{path}': {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what}: '{path}' is not valid TOML: {e}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Raw values of a user's TOML config file."""
    return read_toml(path, "config")


def resolve(
    preset: str = "default",
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge preset < config file < overrides and validate the result once.

    A backbone other than the preset's brings its own default layers (see
    :data:`nstyle.backbones.REGISTRY`), unless layers are given beside it: the preset's layer
    names belong to the preset's network.
    """
    values = load_preset(preset)
    given: dict[str, Any] = {}
    if config_file is not None:
        given.update(load_config_file(config_file))
        given.pop("description", None)
    given.update({k: v for k, v in (overrides or {}).items() if v is not None})
    backbone = given.get("backbone", values.get("backbone"))
    if backbone != values.get("backbone") and backbone in _backbone_names():
        from .backbones import get_backbone

        entry = get_backbone(backbone)
        values.update(content_layers=list(entry.content_layers), style_layers=list(entry.style_layers))
    values.update(given)
    return Config.from_dict(values)


def configure(preset: str, config: Config | str | Path | None, options: Mapping[str, Any]) -> Config:
    """The settings of an API call: a :class:`Config` with ``options`` over it, or ``preset`` < TOML file < ``options``."""
    if isinstance(config, Config):
        return Config.from_dict({**config.to_dict(), **{k: v for k, v in options.items() if v is not None}})
    return resolve(preset, config, options)


def _backbone_names() -> tuple[str, ...]:
    from .backbones import REGISTRY

    return tuple(REGISTRY)


def _choice(v: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = v[key]
    if value not in choices:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(choices)}")
    return value


def _number(v: Mapping[str, Any], key: str, minimum: float, strict: bool = False, below: float | None = None) -> float:
    value = v[key]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key}: '{value}' is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"{key}: {value:g} must be {'>' if strict else '>='} {minimum:g}")
    if below is not None and value >= below:
        raise ConfigError(f"{key}: {value:g} must be < {below:g}")
    return value


def _integer(v: Mapping[str, Any], key: str, minimum: int, maximum: int) -> int:
    value = v[key]
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"{key}: '{value}' is not a whole number") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: {value!r} is not a whole number")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{key}: {value} must be between {minimum} and {maximum}")
    return value


def _list(v: Mapping[str, Any], key: str) -> list[Any]:
    value = v[key]
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: {value!r} is not a list")
    return list(value)


def _style_loss(v: Mapping[str, Any], key: str) -> str:
    """One of :data:`STYLE_LOSSES`, or several joined by '+' (each once)."""
    value = v[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(STYLE_LOSSES)} (or several joined by '+')")
    parts = value.split("+")
    for part in parts:
        if part not in STYLE_LOSSES:
            raise ConfigError(f"{key}: '{part}' is not one of {', '.join(STYLE_LOSSES)} (or several joined by '+')")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"{key}: '{value}' names a statistic twice")
    return value


def _file(v: Mapping[str, Any], key: str) -> str:
    """A path to an existing file (read, and checked as an image, when the run starts)."""
    value = v[key]
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{key}: {value!r} is not a file path")
    if not Path(value).is_file():
        raise ConfigError(f"{key}: no such file '{value}'")
    return str(Path(value).resolve())  # the record's path works from any directory


def _weights(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"weights: {value!r} is not 'imagenet', 'hed', 'random[:SEED]' or a file path")
    if value == "hed":
        return value
    if value.startswith("random"):
        seed = value.partition(":")[2]
        if value != "random" and not (value.startswith("random:") and seed.isdigit()):
            raise ConfigError(f"weights: '{value}' should be 'random' or 'random:SEED' with a whole-number seed")
        return value
    if value != "imagenet" and not Path(value).is_file():
        raise ConfigError(f"weights: no such file '{value}' (use 'imagenet', 'hed', 'random[:SEED]' or a weights file)")
    return value


def _layers(v: Mapping[str, Any], key: str) -> tuple[LayerSpec, ...]:
    value = v[key]
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, Mapping):
        items = [(str(name), weight) for name, weight in value.items()]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, LayerSpec):
                items.append((item.name, item.weight))
            elif isinstance(item, str):
                name, sep, weight = item.rpartition(":") if ":" in item else (item, "", 1.0)
                items.append((name, weight))
            else:
                raise ConfigError(f"{key}: {item!r} is not a layer name or 'name:weight'")
    else:
        raise ConfigError(f"{key}: {value!r} is not a list of layer names")
    specs = []
    for name, weight in items:
        if not name:
            raise ConfigError(f"{key}: empty layer name")
        w = _number({key: weight}, key, minimum=0.0, strict=True)
        specs.append(LayerSpec(name, w))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: a layer is listed twice ({', '.join(names)})")
    return tuple(specs)
