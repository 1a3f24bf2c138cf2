"""nstyle tune's parts: the Pareto front, the merit and pick rule, the space and its candidates."""

import itertools

import numpy as np
import pytest

from nstyle.config import resolve
from nstyle.errors import ConfigError
from nstyle.workflows.tune import PRESET, Scored, Space, config_of, load_space, merit, pareto_front, pick_of

rng = np.random.default_rng(7)


def test_the_pareto_front_is_what_nothing_dominates():
    points = [tuple(p) for p in rng.uniform(size=(40, 2)).round(2)]
    a = np.array(points)
    dominated = ((a[None] <= a[:, None]).all(-1) & (a[None] < a[:, None]).any(-1)).any(1)  # [i]: some j beats i
    assert pareto_front(points) == [i for i in range(len(points)) if not dominated[i]]
    assert pareto_front([(1, 1), (1, 1)]) == [0, 1]  # equals do not dominate each other


@pytest.mark.parametrize(
    "style, content, expected",
    [
        (1.0, 1.0, 1.0),  # the preset
        (0.9, 1.04, 0.9),  # better style, content within the tolerance
        (0.9, 1.2, 1.2),  # better style bought with 20% of the photo: its content side counts, 1.2
        (1.03, 0.8, 0.8),  # better content, style within the tolerance
        (0.5, 1.15, 1.15),  # min(0.5 + 10 x 0.10, 1.15 + 0)
    ],
)
def test_merit_rewards_one_axis_only_while_the_other_holds(style, content, expected):
    assert merit(style, content) == pytest.approx(expected)


def _scored(name, style, content):
    return Scored(name, 0, name, {"judge": (style, content)}, 1.0, f"{name}.png")


def test_the_pick_beats_the_preset_by_five_percent_or_is_the_preset():
    preset = _scored(PRESET, 0.2, 0.5)
    assert pick_of([preset, _scored("a", 0.195, 0.5)]).candidate == PRESET  # 2.5% better: not enough
    assert pick_of([preset, _scored("a", 0.18, 0.51), _scored("b", 0.17, 0.6)]).candidate == "a"  # b loses the photo
    assert pick_of([preset, _scored("a", 0.205, 0.4)]).candidate == "a"  # 20% closer to the photo, style holds
    assert _scored("a", 0.18, 0.51).relative_to(preset) == pytest.approx((0.9, 1.02))


def test_draws_are_distinct_candidates_none_the_preset_and_repeatable():
    space = Space({"a": [{}, {"init": "content"}], "b": [{}, {"optimizer": "adam"}]}, (0.5, 1.0))
    draws = space.draws(100, seed=3)
    assert len(draws) == space.size - 1  # every combination but the preset's own
    assert {} not in draws and all(a != b for a, b in itertools.combinations(draws, 2))
    assert draws == space.draws(100, seed=3) and draws[:3] == space.draws(3, seed=3)
    assert draws != space.draws(100, seed=4)


def test_a_candidates_config_scales_its_style_weight_and_runs_at_the_rung():
    base = resolve("lite0")
    cfg = config_of(base, {"style_loss": "gram", "style_weight": 1e3, "style_weight_scale": 3.0}, 128, 20)
    assert (cfg.style_loss, cfg.style_weight, cfg.size, cfg.iterations) == ("gram", 3e3, 128, 20)
    assert config_of(base, {}, 128, 20).style_weight == base.style_weight


@pytest.mark.parametrize(
    "backbone, preset", [("efficientnet_lite0", "lite0"), ("vgg16", "hed"), ("resnet50", "default")]
)
def test_each_built_in_space_is_valid_over_its_preset(backbone, preset):
    space, base = load_space(None, backbone), resolve(preset)
    assert space.size >= 12 and space.description
    for option in (o for options in space.axes.values() for o in options):
        config_of(base, option, 128, 10)  # raises ConfigError on a bad option


def test_a_backbone_without_a_space_gets_the_general_one():
    assert set(load_space(None, "mobilenet_v2").axes) == {"optimizer", "init"}


@pytest.mark.parametrize(
    "text, words",
    [
        ("colour = 1\n[axes]\na = [{}]", "unknown key 'colour'"),
        ("[axes]\na = []", "non-empty list of option tables"),
        ('[axes]\na = ["gram"]', "non-empty list of option tables"),
        ("style_weight_scale = [1, -2]\n[axes]\na = [{}]", "positive numbers"),
    ],
)
def test_a_bad_space_file_is_one_clear_error(tmp_path, text, words):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_space(path, "vgg16")
