"""``nstyle grid``: every content image against every style image, in one figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..checkpoints import Checkpoint
from ..config import Config
from ..io import load_image, save_image
from ..pool import check_workers
from ..sheets import contact_sheet
from ..signals import stop_on_signals
from .batch import finished_cells, loss_caption, prepare_folder, result_tile, run_batch
from .runner import Trial


@stop_on_signals()
def grid(
    contents: Sequence[str | Path],
    styles: Sequence[str | Path],
    config: Config,
    out_dir: str | Path,
    *,
    workers: int = 1,
    ray: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Stylize each content with each style; write ``CONTENT__STYLE.png`` for each pair and
    ``grid.png``: style thumbnails across the top, content thumbnails down the side, results in
    the cells. Cells finished by an earlier, interrupted run into ``out_dir`` are reused (see
    :func:`~nstyle.workflows.batch.finished_cells`). Returns the grid's path."""
    check_workers(workers)
    contents, styles = [Path(c) for c in contents], [Path(s) for s in styles]
    for path in contents:
        load_image(path, "content image")
    for path in styles:
        load_image(path, "style image")
    content_names, style_names = _unique_stems(contents), _unique_stems(styles)
    out_dir = prepare_folder(out_dir)
    grid_path = out_dir / "grid.png"
    pairs = [(c, s, f"{cn}__{sn}") for c, cn in zip(contents, content_names) for s, sn in zip(styles, style_names)]
    cfg = config.to_dict()
    trials = [Trial(key, str(c), str(s), cfg) for c, s, key in pairs]
    results = finished_cells(trials, out_dir, [grid_path], force, progress)
    to_run = [t for t in trials if t.key not in results]
    arguments = {
        "contents": [str(c.resolve()) for c in contents],
        "styles": [str(s.resolve()) for s in styles],
        "out_dir": str(out_dir.resolve()),
        "workers": workers,
        "ray": ray,
    }
    job = Checkpoint.of_job("batch", "grid", arguments, cfg, [*contents, *styles])
    results.update(run_batch(to_run, out_dir, job=job, workers=workers, ray=ray, force=force, progress=progress))

    style_images = [load_image(s) for s in styles]
    blank = Image.new("RGB", style_images[0].size, (255, 255, 255))  # the empty corner cell
    tiles = [(blank, "")] + [(img, f"style: {n}") for img, n in zip(style_images, style_names)]
    for c, cn in zip(contents, content_names):
        tiles.append((load_image(c), f"content: {cn}"))
        for sn in style_names:
            result = results[f"{cn}__{sn}"]
            tiles.append((result_tile(result), loss_caption(result)))
    title = f"{config.backbone}, {config.optimizer}, {config.iterations} iterations, {config.size} px"
    sheet = contact_sheet(tiles, columns=len(styles) + 1, tile_size=224, title=title)
    save_image(sheet, grid_path, force=True)  # refused above unless forced or rebuilt from this run's cells
    return grid_path


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, numbered where two inputs share one (a/cat.jpg, b/cat.jpg -> cat, cat-2)."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return names
