"""``nstyle tune``: the notebook's trial and error, done by the tool and judged by a network it did not optimise.

Given a photo and a painting, tune searches a space of settings (:class:`Space`: style layers
and their weights, the style/content weight ratio, the style loss, the optimiser, the start
image) by successive halving (Jamieson & Talwalkar, 2016): every candidate runs small and short,
the best third runs again larger and longer, and so on for :data:`RUNGS`, the last at the final
size; the preset itself is a candidate at every rung, the baseline the others are measured
against. A rung the budget has no room for is not run: the pick comes from the last one run.

Each result is scored by judges (:mod:`nstyle.judges`) other than the network it was optimised
with, so the pick is not the optimiser grading its own homework: a style distance and a
content distance, each relative to the preset's at the same rung and averaged over the judges.
The pick (:func:`merit`): the candidate at the last rung reached whose better axis beats the
preset's by the most while its other axis is at most :data:`TOLERANCE` worse; the preset
itself unless some candidate beats it by :data:`TOLERANCE` on one axis that way. The Pareto front
of the last rung (no other result closer to both the painting and the photo) goes on a sheet.

``budget`` seconds cover the search: each rung runs as many of its candidates as the time left
allows, estimated from the rungs before it. The pick is then rendered at full size (its time
printed apart). Every scored trial is appended to ``trials.jsonl`` at once: Ctrl-C or SIGTERM
keeps what was scored, and the same command again continues, the time already spent counted.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import random
import statistics
import sys
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

import tomlkit
from PIL import Image

from ..checkpoints import Checkpoint
from ..config import Config, read_toml, resolve
from ..errors import ConfigError, NStyleError
from ..io import fit, load_image, save_image
from ..judges import JUDGES, judge, judges_for
from ..pool import check_workers
from ..sheets import contact_sheet
from ..signals import stop_on_signals
from .batch import prepare_folder, run_batch
from .runner import Trial, TrialResult

#: (share of the final size, share of the preset's iterations) of each rung, coarse to fine. The
#: last is the final size itself: a lead at half the size can vanish at the full one (strokes and
#: the judges' receptive fields do not scale together), so the pick is judged as it will be used.
RUNGS = ((0.25, 0.25), (0.375, 0.5), (0.5, 1.0), (1.0, 1.0))
KEEP = 1 / 3  # the share of a rung's candidates promoted to the next
MIN_SIZE = 96  # px: no rung smaller (the judges' deeper layers need room)
TOLERANCE = 0.05  # how much worse the pick may be on its weaker axis, and how much better on its stronger
PRESET = "preset"
SPACE_KEYS = {"description", "style_weight_scale", "axes"}


@dataclass(frozen=True)
class Space:
    """Axes of options (each a table of Config settings; {} keeps the preset's) and the style weight's multiples."""

    axes: dict[str, list[dict[str, Any]]]
    style_weight_scale: tuple[float, ...] = (1.0,)
    description: str = ""

    @property
    def size(self) -> int:
        return math.prod(len(options) for options in self.axes.values()) * len(self.style_weight_scale)

    def draws(self, count: int, seed: int) -> list[dict[str, Any]]:
        """Up to ``count`` distinct candidates (their settings over the preset's), none the preset itself."""
        combos = list(product(*self.axes.values(), self.style_weight_scale))
        random.Random(seed).shuffle(combos)
        out: list[dict[str, Any]] = []
        for *options, scale in combos:
            settings: dict[str, Any] = {}
            for option in options:
                settings.update(option)
            if scale != 1.0:
                settings["style_weight_scale"] = scale
            if settings and settings not in out:
                out.append(settings)
            if len(out) == count:
                break
        return out


def load_space(path: str | Path | None, backbone: str) -> Space:
    """A space file, or the built-in one for ``backbone`` (``presets/spaces/BACKBONE.toml``, else ``default``)."""
    if path is not None:
        data = read_toml(path, "space")
    else:
        folder = resources.files("nstyle.presets").joinpath("spaces")
        name = f"{backbone}.toml" if folder.joinpath(f"{backbone}.toml").is_file() else "default.toml"
        data = tomllib.loads(folder.joinpath(name).read_text())
    unknown = set(data) - SPACE_KEYS
    if unknown:
        raise ConfigError(f"space: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SPACE_KEYS))})")
    axes = data.get("axes", {})
    if not isinstance(axes, dict) or not all(
        isinstance(v, list) and v and all(isinstance(o, dict) for o in v) for v in axes.values()
    ):
        raise ConfigError("space: every axis must be a non-empty list of option tables, e.g. [{}, {init = 'content'}]")
    scales = data.get("style_weight_scale", [1.0])
    if not isinstance(scales, list) or not scales or not all(_positive(s) for s in scales):
        raise ConfigError("space: style_weight_scale must be a list of positive numbers")
    return Space(axes, tuple(float(s) for s in scales), str(data.get("description", "")))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def config_of(base: Config, settings: dict[str, Any], size: int, iterations: int) -> Config:
    """The candidate's full config at one rung: ``settings`` over the preset's, its style weight scaled."""
    values = {**base.to_dict(), **{k: v for k, v in settings.items() if k != "style_weight_scale"}}
    values["style_weight"] = float(values["style_weight"]) * float(settings.get("style_weight_scale", 1.0))
    return Config.from_dict({**values, "size": size, "iterations": iterations, "look_size": 0})


@dataclass
class Scored:
    """A trial's judgement: per judge (style, content), and how long it took (optimising and judging)."""

    candidate: str
    rung: int
    key: str
    scores: dict[str, tuple[float, float]]
    seconds: float
    image: str
    settings: dict[str, Any] = field(default_factory=dict)

    def relative_to(self, preset: Scored) -> tuple[float, float]:
        """(style, content) over the preset's at the same rung, averaged over the judges: below 1 is better."""
        style = [self.scores[j][0] / max(preset.scores[j][0], 1e-12) for j in self.scores]
        content = [self.scores[j][1] / max(preset.scores[j][1], 1e-12) for j in self.scores]
        return sum(style) / len(style), sum(content) / len(content)


def merit(style: float, content: float) -> float:
    """One number to rank by (lower is better; the preset is 1): the better of the two relative
    distances, with the other one's excess over 1 + :data:`TOLERANCE` counted ten times against it."""

    def penalty(x: float) -> float:
        return 10 * max(0.0, x - 1 - TOLERANCE)

    return min(style + penalty(content), content + penalty(style))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point is at least as good as on both axes and better on one (lower is better)."""
    return [
        i
        for i, (a, b) in enumerate(points)
        if not any(c <= a and d <= b and (c < a or d < b) for j, (c, d) in enumerate(points) if j != i)
    ]


@dataclass
class TuneResult:
    """Where tune wrote (``out_dir``: best.toml, best.png, report.json/.csv, front.png), its pick and its times."""

    out_dir: Path
    pick: str
    config: Config
    search_seconds: float
    render_seconds: float
    rungs_run: int


@dataclass
class _Search:
    """One tune: its inputs, its judges, the candidates and everything scored so far (the context of each step)."""

    content: Path
    style: Path
    base: Config
    size: int
    budget: float
    out_dir: Path
    judges: list[str]
    space: Space
    workers: int
    ray: str | None
    progress: bool
    arguments: dict[str, Any]
    scored: dict[str, Scored] = field(default_factory=dict)  # by trial key
    spent: float = 0.0  # seconds of search, this call's and earlier ones'

    @property
    def log(self) -> Path:
        return self.out_dir / "trials.jsonl"

    def rung_shape(self, rung: int) -> tuple[int, int]:
        """(size, iterations) of a rung."""
        share, its = RUNGS[rung]
        return max(MIN_SIZE, round(self.size * share)), max(2, round(self.base.iterations * its))

    def key(self, name: str, config: Config) -> str:
        identity = json.dumps([str(self.content), str(self.style), config.to_dict()], sort_keys=True, default=str)
        return f"{name}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"

    def say(self, line: str) -> None:
        if self.progress:
            print(f"nstyle tune: {line}", file=sys.stderr, flush=True)


@stop_on_signals()
def tune(
    content: str | Path,
    style: str | Path,
    out_dir: str | Path,
    *,
    preset: str = "default",
    config: str | Path | None = None,
    space: str | Path | None = None,
    budget: float = 600.0,
    size: int | None = None,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = True,
    seed: int = 0,
) -> TuneResult:
    """Search settings for ``content`` in the manner of ``style`` within ``budget`` seconds, then
    render the pick at ``size`` (default the preset's); see the module docstring. ``config`` (a
    TOML file) is layered on ``preset`` as everywhere: the search starts from both."""
    absolute = {"content": content, "style": style, "out_dir": out_dir, "config": config, "space": space}
    arguments = {
        **{k: str(Path(v).resolve()) if v else None for k, v in absolute.items()},
        **{"preset": preset, "budget": budget, "size": size, "workers": workers, "ray": ray, "seed": seed},
    }
    search = _start(arguments, progress)
    started, earlier = time.perf_counter(), search.spent
    candidates = {PRESET: {}, **{f"c{i:02d}": s for i, s in enumerate(search.space.draws(search.space.size, seed))}}
    alive, rungs = list(candidates), 0

    def elapsed() -> float:
        return earlier + time.perf_counter() - started

    _time_the_preset(search, candidates, elapsed)
    for rung in range(len(RUNGS)):
        ran = _run_rung(search, rung, alive, candidates, elapsed)
        if len(ran) < 2:
            break
        rungs = rung + 1
        alive = _promote(search, rung, ran)
    search.spent = earlier + time.perf_counter() - started
    return _finish(search, rungs, candidates)


def _start(arguments: dict[str, Any], progress: bool) -> _Search:
    """The search's context from its ``arguments`` (:func:`tune`'s, paths absolute), its inputs
    checked, and what an earlier call of the same tune scored."""
    a = arguments
    check_workers(a["workers"])
    if not _positive(a["budget"]):
        raise ConfigError(f"budget: {a['budget']} must be a positive number of seconds")
    load_image(a["content"], "content image")
    load_image(a["style"], "style image")
    base = resolve(a["preset"], a["config"], {"seed": a["seed"], **({"size": a["size"]} if a["size"] else {})})
    chosen = judges_for(base.backbone) or list(JUDGES)
    folder = prepare_folder(a["out_dir"])
    space = load_space(a["space"], base.backbone)
    search = _Search(
        Path(a["content"]), Path(a["style"]), base, base.size, a["budget"], folder, chosen, space,
        a["workers"], a["ray"], progress, arguments,
    )  # fmt: skip
    _check_space(search)
    _load_earlier(search)
    return search


def _check_space(search: _Search) -> None:
    """Every option of every axis valid over the preset: a bad one would fail its trials, so say so now."""
    for axis, options in search.space.axes.items():
        for option in options:
            try:
                config_of(search.base, option, search.size, search.base.iterations)
            except NStyleError as e:
                raise ConfigError(f"space: axis {axis}, option {option}: {e}") from None


def _load_earlier(search: _Search) -> None:
    """What an earlier call of this same tune scored (``tune.json`` says which tune the folder holds)."""
    header = search.out_dir / "tune.json"
    identity = {k: v for k, v in search.arguments.items() if k not in ("workers", "ray", "out_dir")}
    if header.exists():
        saved = json.loads(header.read_text())
        if saved.get("identity") != identity:
            raise NStyleError(f"{search.out_dir} holds another tune (other inputs or settings); use another -o")
        search.spent = float(saved.get("spent", 0.0))
    else:
        header.write_text(json.dumps({"identity": identity, "spent": 0.0}, indent=1))
    if search.log.exists():
        for line in search.log.read_text().splitlines():
            try:
                entry = Scored(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut short by a crash: that trial runs again
            if (search.out_dir / entry.image).is_file():
                search.scored[entry.key] = entry
    if search.scored:
        search.say(f"continuing: {len(search.scored)} trials already scored, {search.spent:.0f} s of the budget spent")


def _configs(search: _Search, rung: int, names: list[str], candidates: dict[str, dict[str, Any]]) -> dict:
    """Each named candidate's config at ``rung``, and its trial key."""
    size, iterations = search.rung_shape(rung)
    configs = {name: config_of(search.base, candidates[name], size, iterations) for name in names}
    return {"configs": configs, "keys": {name: search.key(name, cfg) for name, cfg in configs.items()}}


def _time_the_preset(search: _Search, candidates: dict[str, dict[str, Any]], elapsed: Any) -> None:
    """The preset at every rung first (it runs at each anyway): what a trial costs at each rung,
    measured, is what the budget is shared out by."""
    for rung in range(len(RUNGS)):
        trial = _configs(search, rung, [PRESET], candidates)
        if trial["keys"][PRESET] not in search.scored and elapsed() < search.budget:
            _trials(search, rung, [PRESET], trial["configs"], trial["keys"], candidates, elapsed)


def _run_rung(
    search: _Search, rung: int, alive: list[str], candidates: dict[str, dict[str, Any]], elapsed: Any
) -> list[Scored]:
    """Judge a rung's candidates, ``workers`` at a time, as long as the budget left has room for
    them and for their share of the later rungs; the preset's result (run first) beside them."""
    trial = _configs(search, rung, alive, candidates)
    configs, keys = trial["configs"], trial["keys"]
    if keys[PRESET] not in search.scored:
        return []
    size, iterations = search.rung_shape(rung)
    search.say(
        f"rung {rung + 1}/{len(RUNGS)}: up to {len(alive) - 1} candidates at {size} px, {iterations} iterations "
        f"({elapsed():.0f} of {search.budget:.0f} s spent)"
    )
    others = [n for n in alive if n != PRESET]
    done = [n for n in others if keys[n] in search.scored]
    todo = [n for n in others if keys[n] not in search.scored]
    while todo:
        room = _room(search, rung, elapsed(), len(done))
        if room < 1:
            break
        chunk, todo = todo[: min(room, search.workers)], todo[min(room, search.workers) :]
        _trials(search, rung, chunk, configs, keys, candidates, elapsed)
        done += [n for n in chunk if keys[n] in search.scored]
    return [search.scored[keys[n]] for n in [PRESET, *others] if keys[n] in search.scored]


def _typical(search: _Search, rung: int) -> float:
    """A trial's seconds at ``rung`` (optimising and judging): the median of its last three, so that
    the first trial's one-off costs (building the networks) fade from the estimate."""
    times = [s.seconds for s in search.scored.values() if s.rung == rung][-3:]
    return statistics.median(times) if times else math.inf


def _room(search: _Search, rung: int, elapsed: float, ran: int) -> int:
    """How many more candidates this rung has time for: each costs its own trial and its share of
    the later rungs (a third as many at each, at the preset's measured cost there), and the budget
    keeps the later rungs' share of the ``ran`` already run here. At rung 0 one candidate runs
    whatever the budget: a search needs the preset and one other."""
    if rung == 0 and ran == 0:
        return 1
    workers = max(1, search.workers)
    share = sum(KEEP ** (r - rung) * _typical(search, r) for r in range(rung + 1, len(RUNGS)))
    left = search.budget - elapsed - ran * share / workers
    return max(0, math.floor(left / ((_typical(search, rung) + share) / workers)))


def _trials(
    search: _Search,
    rung: int,
    names: list[str],
    configs: dict[str, Config],
    keys: dict[str, str],
    candidates: dict[str, dict[str, Any]],
    elapsed: Any,
) -> None:
    """Run ``names`` at this rung (``workers`` at once, or on Ray) and judge each as it comes back."""
    if not names:
        return
    folder = search.out_dir / "trials"
    folder.mkdir(exist_ok=True)
    name_of = {keys[n]: n for n in names}
    trials = [Trial(keys[n], str(search.content), str(search.style), configs[n].to_dict()) for n in names]

    def judged(result: TrialResult) -> None:
        if result.status != "ok":
            search.say(f"{name_of[result.key]} failed: {result.error}")
            return
        scored = _judge(search, rung, name_of[result.key], result, candidates)
        scored.seconds += result.seconds
        search.scored[result.key] = scored
        with search.log.open("a") as f:
            f.write(json.dumps(scored.__dict__) + "\n")
        _save_spent(search, elapsed())
        search.say(f"  {scored.candidate}: {_describe(scored.settings)} -> {_scores_text(scored.scores)}")

    job = Checkpoint.of_job("batch", "tune", search.arguments, {}, [search.content, search.style])
    run_batch(
        trials, folder, job=job, workers=search.workers, ray=search.ray, progress=search.progress, on_result=judged
    )


def _judge(search: _Search, rung: int, name: str, result: TrialResult, candidates: dict[str, dict[str, Any]]) -> Scored:
    """The trial's scores by each of the search's judges, at its own size."""
    start = time.perf_counter()
    image = Image.open(search.out_dir / "trials" / f"{result.key}.png").convert("RGB")
    content, style = _inputs_at(search.content, search.style, max(image.size))
    scores = {j: tuple(judge(j).scores(image, content, style)) for j in search.judges}
    seconds = time.perf_counter() - start
    return Scored(name, rung, result.key, scores, seconds, f"trials/{result.key}.png", candidates[name])  # type: ignore[arg-type]


@functools.lru_cache(maxsize=8)
def _inputs_at(content: Path, style: Path, size: int) -> tuple[Image.Image, Image.Image]:
    """The photo and the painting at a rung's size, read and fitted once for all its trials' judging."""
    return fit(load_image(content, "content image"), size), fit(load_image(style, "style image"), size)


def _save_spent(search: _Search, spent: float) -> None:
    header = search.out_dir / "tune.json"
    saved = json.loads(header.read_text())
    saved["spent"] = round(spent, 3)
    header.write_text(json.dumps(saved, indent=1))


def _promote(search: _Search, rung: int, ran: list[Scored]) -> list[str]:
    """The preset and the best third of the rest (by :func:`merit`), for the next rung."""
    preset = ran[0]
    ranked = sorted(ran[1:], key=lambda s: merit(*s.relative_to(preset)))
    return [PRESET, *[s.candidate for s in ranked[: max(1, math.ceil(len(ranked) * KEEP))]]]


def pick_of(ran: list[Scored]) -> Scored:
    """The rung's pick: the lowest :func:`merit` if it beats the preset by :data:`TOLERANCE`, else the preset."""
    preset = next(s for s in ran if s.candidate == PRESET)
    best = min(ran, key=lambda s: merit(*s.relative_to(preset)))
    return best if merit(*best.relative_to(preset)) <= 1 - TOLERANCE else preset


def _finish(search: _Search, rungs: int, candidates: dict[str, dict[str, Any]]) -> TuneResult:
    """The report, the front's sheet, best.toml, and the pick rendered at full size."""
    if rungs == 0:
        raise NStyleError(
            f"budget: {search.budget:g} s is not enough for the preset and one candidate at the first rung"
        )
    last = _last_rung(search, rungs - 1)
    pick = pick_of(last)
    search.say(
        f"search: {search.spent:.0f} s of {search.budget:.0f} s; pick: {pick.candidate} {_describe(pick.settings)}"
    )
    _write_report(search, last, pick)
    config = config_of(search.base, candidates[pick.candidate], search.size, search.base.iterations)
    config = Config.from_dict({**config.to_dict(), "look_size": search.base.look_size})
    _write_toml(config, search.out_dir / "best.toml")
    start = time.perf_counter()
    from ..api import stylize

    result = stylize(search.content, search.style, config=config, progress=search.progress)
    save_image(result.image, search.out_dir / "best.png", metadata=result.metadata(), force=True)
    render = time.perf_counter() - start
    search.say(f"render: {render:.0f} s at {search.size} px -> {search.out_dir / 'best.png'}")
    return TuneResult(search.out_dir, pick.candidate, config, search.spent, render, rungs)


def _last_rung(search: _Search, rung: int) -> list[Scored]:
    ran = [s for s in search.scored.values() if s.rung == rung]
    return sorted(ran, key=lambda s: (s.candidate != PRESET, s.candidate))


def _write_report(search: _Search, last: list[Scored], pick: Scored) -> None:
    """report.json and report.csv (every scored trial, ranked: later rungs first, then by merit), front.png."""
    presets = {s.rung: s for s in search.scored.values() if s.candidate == PRESET}
    rows = []
    for s in search.scored.values():
        style, content = s.relative_to(presets[s.rung])
        row = {"candidate": s.candidate, "rung": s.rung + 1, "settings": _describe(s.settings)}
        for j, (js, jc) in s.scores.items():
            row[f"{j} style"], row[f"{j} content"] = round(js, 4), round(jc, 4)
        row.update(
            relative_style=round(style, 4), relative_content=round(content, 4), merit=round(merit(style, content), 4)
        )
        row.update(seconds=round(s.seconds, 1), image=s.image, pick=s is pick)
        rows.append(row)
    rows.sort(key=lambda r: (-r["rung"], r["merit"]))
    summary = {
        "pick": pick.candidate,
        "judges": search.judges,
        "budget": search.budget,
        "spent": round(search.spent, 1),
    }
    (search.out_dir / "report.json").write_text(json.dumps({**summary, "trials": rows}, indent=1))
    with (search.out_dir / "report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _front_sheet(search, last, pick)


def _front_sheet(search: _Search, last: list[Scored], pick: Scored) -> None:
    """The last rung's Pareto front (mean distances over the judges), with the preset, each captioned with its scores."""
    points = [
        (sum(v[0] for v in s.scores.values()) / len(s.scores), sum(v[1] for v in s.scores.values()) / len(s.scores))
        for s in last
    ]
    shown = sorted(set(pareto_front(points)) | {0})
    tiles = []
    for i in shown:
        s = last[i]
        mark = " (pick)" if s is pick else ""
        settings = textwrap.fill(_describe(s.settings), 40)
        caption = f"{s.candidate}{mark}:\n{settings}\n{_scores_text(s.scores, chr(10))}"
        tiles.append((Image.open(search.out_dir / s.image).convert("RGB"), caption))
    title = f"nstyle tune: the front at rung {last[0].rung + 1} (lower is closer: style to the painting, content to the photo)"
    sheet = contact_sheet(tiles, columns=min(4, len(tiles)), tile_size=256, title=title, font_size=12)
    save_image(sheet, search.out_dir / "front.png", force=True)


def _write_toml(config: Config, path: Path) -> None:
    """The config as TOML that ``--config`` reads back (None values left out: TOML has none)."""
    values = {k: v for k, v in config.to_dict().items() if v is not None}
    path.write_text("# nstyle tune's pick: nstyle CONTENT STYLE --config best.toml\n" + tomlkit.dumps(values))


def _describe(settings: dict[str, Any]) -> str:
    """A candidate's settings in a line: ``style_loss=gram style_weight=1000 layers=2,2,1,0.5,0.5``."""
    if not settings:
        return "(the preset)"
    parts = []
    for key, value in settings.items():
        if key == "style_layers":
            key, value = "layers", ",".join(str(v).partition(":")[2] or "1" for v in value)
        parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def _scores_text(scores: dict[str, tuple[float, float]], sep: str = "; ") -> str:
    return sep.join(f"{j}: style {s:.3f} content {c:.3f}" for j, (s, c) in scores.items())
