"""``nstyle probe``: one stylization per candidate layer, as the notebook's author did by hand."""

from __future__ import annotations

import csv
import dataclasses
import io as _io
from collections.abc import Sequence
from pathlib import Path

from ..backbones import describe_layers, get_backbone, resolve_layer
from ..checkpoints import Checkpoint
from ..config import Config, LayerSpec
from ..errors import NStyleError
from ..io import load_image, save_bytes, save_image
from ..pool import check_workers
from ..sheets import contact_sheet
from ..signals import stop_on_signals
from .batch import finished_cells, loss_caption, prepare_folder, result_tile, run_batch
from .runner import Trial


@stop_on_signals()
def probe(
    content: str | Path,
    style: str | Path,
    config: Config,
    out_dir: str | Path,
    *,
    layers: Sequence[str] = (),
    blocks: bool = False,
    kind: str = "style",
    workers: int = 1,
    ray: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Stylize once per layer in ``layers`` (or every block output), that layer alone as the
    ``kind`` ('style' or 'content') layer; write the images, ``summary.csv`` and ``sheet.png``.
    Returns the sheet's path."""
    check_workers(workers)
    if kind not in ("style", "content"):
        raise NStyleError(f"--probe: '{kind}' is not style or content")
    if bool(layers) == blocks:
        raise NStyleError("probe: give either --layers L1 L2 ... or --blocks")
    backbone = get_backbone(config.backbone)
    rows = describe_layers(config.backbone)
    names = [r.name for r in rows]
    aliases = {r.name: r.alias for r in rows}
    candidates = backbone.blocks(names) if blocks else [resolve_layer(backbone, names, n) for n in layers]
    candidates = list(dict.fromkeys(candidates))
    for path, what in ((content, "content image"), (style, "style image")):
        load_image(path, what)

    out_dir = prepare_folder(out_dir)
    sheet_path, csv_path = out_dir / "sheet.png", out_dir / "summary.csv"
    field = "style_layers" if kind == "style" else "content_layers"
    trials = [
        Trial(name, str(content), str(style), dataclasses.replace(config, **{field: (LayerSpec(name),)}).to_dict())
        for name in candidates
    ]
    results = finished_cells(trials, out_dir, [sheet_path, csv_path], force, progress)
    to_run = [t for t in trials if t.key not in results]
    arguments = {
        "content": str(Path(content).resolve()),
        "style": str(Path(style).resolve()),
        "out_dir": str(out_dir.resolve()),
        "layers": list(layers),
        "blocks": blocks,
        "kind": kind,
        "workers": workers,
        "ray": ray,
    }
    job = Checkpoint.of_job("batch", "probe", arguments, config.to_dict(), [content, style])
    results.update(run_batch(to_run, out_dir, job=job, workers=workers, ray=ray, force=force, progress=progress))

    text = _io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["layer", "alias", "status", "style_loss", "content_loss", "total_loss", "seconds", "error"])
    for name in candidates:
        r = results[name]
        writer.writerow(
            [
                name,
                aliases.get(name, ""),
                r.status,
                r.losses.get("style", ""),
                r.losses.get("content", ""),
                r.losses.get("total", ""),
                f"{r.seconds:.2f}",
                r.error or "",
            ]
        )
    save_bytes(text.getvalue().encode(), csv_path, force=True)  # refused above unless forced or resuming

    tiles = [(result_tile(results[n]), f"{n}\n{aliases.get(n) or '-'}\n{loss_caption(results[n])}") for n in candidates]
    title = (
        f"{kind} layers of {config.backbone} alone - {Path(content).name} x {Path(style).name} - "
        f"{config.iterations} iterations, {config.optimizer}, {config.size} px"
    )
    save_image(contact_sheet(tiles, columns=min(5, len(tiles)), tile_size=224, title=title), sheet_path, force=True)
    return sheet_path
