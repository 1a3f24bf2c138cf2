"""The run configuration: one validated object, built from preset < config file < flags.

Presets are TOML files shipped in ``nstyle/presets``; a user's ``--config FILE.toml`` uses the
same keys, and so do the CLI flags and the keyword arguments of :func:`nstyle.stylize`.
Every value passes through :func:`Config.from_dict`, the one place where values are checked,
so a bad value anywhere gives the same one-line error naming its key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .backbones.precision import PRECISIONS
from .errors import ConfigError

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "recolored", "style", "noise")
STYLE_LOSSES = ("gram", "wasserstein", "meanstd")
COLOR_MODES = ("none", "luminance", "histogram")
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


@dataclass(frozen=True)
class Config:
    """Everything that decides a stylization, so a run can be recorded and repeated."""

    backbone: str = "resnet50"
    weights: str = "imagenet"
    content_layers: tuple[LayerSpec, ...] = ()
    style_layers: tuple[LayerSpec, ...] = ()
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    optimizer: str = "adam"
    lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    iterations: int = 100
    size: int = 512
    init: str = "content"
    seed: int | None = None
    style_loss: str = "gram"
    swag: float = 0.0  # SWAG's temperature: one softmax over each layer's activations / swag; 0 = off
    scales: int = 1
    scale_factor: float = math.sqrt(2)
    scale_iterations: tuple[int, ...] = ()  # per scale, coarse to fine; empty = `iterations` each
    preserve_color: str = "none"
    style_blend: tuple[float, ...] = ()  # one weight per style image; empty = equal
    style_scale: float = 1.0  # style image's longer side relative to the output's
    ema: float = 0.0  # decay of the moving average of iterates; 0 = off
    precision: str = "auto"  # the network's arithmetic; see nstyle.backbones.precision
    max_memory: float | None = None  # GB the run may use (None: a safe share of what is free); see nstyle.plan
    tile: int = 0  # tile side in px for every scale larger than it; 0: tiles only where the budget needs them

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Config":
        """Check every key and value; raise :class:`ConfigError` naming the first bad one."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown config key '{key}' (known keys: {', '.join(sorted(known))})")
        v = {**asdict(cls()), **values}
        config = cls(
            backbone=_choice(v, "backbone", _backbone_names()),
            weights=_weights(v["weights"]),
            content_layers=_layers(v, "content_layers"),
            style_layers=_layers(v, "style_layers"),
            content_weight=_number(v, "content_weight", minimum=0.0),
            style_weight=_number(v, "style_weight", minimum=0.0),
            tv_weight=_number(v, "tv_weight", minimum=0.0),
            optimizer=_choice(v, "optimizer", OPTIMIZERS),
            lr=_number(v, "lr", minimum=0.0, strict=True),
            beta1=_number(v, "beta1", minimum=0.0, below=1.0),
            beta2=_number(v, "beta2", minimum=0.0, below=1.0),
            epsilon=_number(v, "epsilon", minimum=0.0, strict=True),
            iterations=_integer(v, "iterations", 1, MAX_ITERATIONS),
            size=_integer(v, "size", MIN_SIZE, MAX_SIZE),
            init=_choice(v, "init", INITS),
            seed=None if v["seed"] is None else _integer(v, "seed", 0, 2**32 - 1),
            style_loss=_choice(v, "style_loss", STYLE_LOSSES),
            swag=_number(v, "swag", minimum=0.0),
            scales=_integer(v, "scales", 1, MAX_SCALES),
            scale_factor=_number(v, "scale_factor", minimum=1.0, strict=True),
            scale_iterations=tuple(_integer({"scale_iterations": i}, "scale_iterations", 1, MAX_ITERATIONS)
                                   for i in _list(v, "scale_iterations")),  # fmt: skip
            preserve_color=_choice(v, "preserve_color", COLOR_MODES),
            style_blend=tuple(_number({"style_blend": w}, "style_blend", minimum=0.0, strict=True)
                              for w in _list(v, "style_blend")),  # fmt: skip
            style_scale=_number(v, "style_scale", minimum=0.0, strict=True),
            ema=_number(v, "ema", minimum=0.0, below=1.0),
            precision=_choice(v, "precision", PRECISIONS),
            max_memory=None if v["max_memory"] is None else _number(v, "max_memory", minimum=0.0, strict=True),
            tile=0 if v["tile"] in (0, None) else _integer(v, "tile", MIN_TILE, MAX_SIZE),
        )
        if config.weights == "hed" and config.backbone != "vgg16":
            raise ConfigError(
                f"weights: 'hed' is the HED edge detector's VGG16 body; it fits --backbone vgg16, not {config.backbone}"
            )
        if config.scale_iterations and len(config.scale_iterations) != config.scales:
            raise ConfigError(
                f"scale_iterations: {len(config.scale_iterations)} values for {config.scales} scales (give one per scale)"
            )
        if config.style_scale > 4:
            raise ConfigError(f"style_scale: {config.style_scale:g} must be <= 4")
        if config.content_weight > 0 and not config.content_layers:
            raise ConfigError("content_layers: empty, but content_weight > 0 (give a layer or set content_weight 0)")
        if config.style_weight > 0 and not config.style_layers:
            raise ConfigError("style_layers: empty, but style_weight > 0 (give a layer or set style_weight 0)")
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
        return d

    def check_styles(self, count: int) -> None:
        """``style_blend``, when given, needs one weight per style image."""
        if self.style_blend and len(self.style_blend) != count:
            raise ConfigError(f"style_blend: {len(self.style_blend)} weights for {count} style images")

    @property
    def total_iterations(self) -> int:
        """Iterations over all scales."""
        return sum(self.scale_iterations) if self.scale_iterations else self.iterations * self.scales


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


def _backbone_names() -> tuple[str, ...]:
    from .backbones import REGISTRY

    return tuple(REGISTRY)


def _choice(v: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = v[key]
    if value not in choices:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(choices)}")
    return value


def _number(
    v: Mapping[str, Any], key: str, minimum: float, strict: bool = False, below: float | None = None
) -> float:
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
