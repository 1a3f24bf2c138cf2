"""Labelled contact sheets: the one picture format for strips, probes, grids and sweeps.

Drawn with Pillow and its built-in scalable font, so nothing is fetched or needs a
display. Each tile is an image with lines of text under it.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    caption_h = line * max(label.count("\n") + 1 for _, label in tiles)
    title_h = line + 2 * pad if title else 0
    columns = max(1, min(columns, len(tiles)))
    rows = [range(start, min(start + columns, len(tiles))) for start in range(0, len(tiles), columns)]
    image_h = [max(thumbs[i].height for i in row) for row in rows]  # landscape rows need less than tile_size
    cell_w = tile_size + pad
    sheet_h = title_h + pad + sum(h + caption_h + pad for h in image_h)
    title_font = ImageFont.load_default(size=font_size + 2)
    title_w = int(title_font.getlength(title)) + 2 * pad if title else 0
    sheet = Image.new("RGB", (max(columns * cell_w + pad, title_w), sheet_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=INK, font=title_font)
    y = title_h + pad
    for row, row_h in zip(rows, image_h):
        for column, index in enumerate(row):
            x = pad + column * cell_w
            thumb = thumbs[index]
            sheet.paste(thumb, (x + (tile_size - thumb.width) // 2, y + (row_h - thumb.height) // 2))
            caption = "\n".join(_fit(line, font, tile_size) for line in tiles[index][1].split("\n"))
            draw.multiline_text((x, y + row_h + 2), caption, fill=INK, font=font, spacing=4)
        y += row_h + caption_h + pad
    return sheet


def thumbnail(image: Image.Image, size: int) -> Image.Image:
    """A copy scaled (up or down) so its longer side is ``size``."""
    scale = size / max(image.size)
    return image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` shortened with an ellipsis so it does not run into the next tile."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."
