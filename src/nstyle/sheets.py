"""Labelled contact sheets: the one picture format for strips, probes, grids and sweeps.

Drawn with Pillow and its built-in scalable font, so nothing is fetched or needs a
display. Each tile is an image with lines of text under it.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def contact_sheet(
    tiles: Sequence[tuple[Image.Image, str]],
    columns: int,
    tile_size: int = 256,
    title: str | None = None,
    font_size: int = 14,
) -> Image.Image:
    """Tiles in rows of ``columns``, each scaled to fit ``tile_size`` and captioned below.

    A caption may hold several lines (``\\n``); every cell is as tall as the tallest caption.
    """
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    font = ImageFont.load_default(size=font_size)
    line = font_size + 4
    pad = 8
    thumbs = [thumbnail(image, tile_size) for image, _ in tiles]
    image_h = max(t.height for t in thumbs)  # landscape tiles need less than tile_size
    caption_h = line * max(label.count("\n") + 1 for _, label in tiles)
    title_h = line + 2 * pad if title else 0
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w, cell_h = tile_size + pad, image_h + caption_h + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad + title_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=INK, font=ImageFont.load_default(size=font_size + 2))
    for index, (thumb, (_, label)) in enumerate(zip(thumbs, tiles)):
        x = pad + (index % columns) * cell_w
        y = title_h + pad + (index // columns) * cell_h
        sheet.paste(thumb, (x + (tile_size - thumb.width) // 2, y + (image_h - thumb.height) // 2))
        draw.multiline_text((x, y + image_h + 2), label, fill=INK, font=font, spacing=4)
    return sheet


def thumbnail(image: Image.Image, size: int) -> Image.Image:
    """A copy scaled (up or down) so its longer side is ``size``."""
    scale = size / max(image.size)
    return image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )
