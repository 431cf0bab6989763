"""Pictures for people: contact sheets of images side by side, with captions (opencv only)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str] | None = None,
                  tile_width: int = 384, gap: int = 4) -> np.ndarray:
    """One RGB picture of ``rows`` x columns of RGB tiles, each scaled to ``tile_width``, with column captions."""
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    cols = max(len(r) for r in rows)
    first = rows[0][0]
    tile_h = int(round(first.shape[0] * tile_width / first.shape[1]))
    caption_h = 22 if captions else 0
    sheet = np.full((caption_h + len(rows) * (tile_h + gap), cols * (tile_width + gap), 3), 255, np.uint8)
    for c, text in enumerate(captions or []):
        cv2.putText(sheet, text, (c * (tile_width + gap) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile.ndim == 2:
                tile = np.repeat(tile[..., None], 3, axis=2)
            tile = cv2.resize(tile, (tile_width, tile_h), interpolation=cv2.INTER_NEAREST)
            y = caption_h + r * (tile_h + gap)
            x = c * (tile_width + gap)
            sheet[y:y + tile_h, x:x + tile_width] = tile
    return sheet


def write_rgb(path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (opencv wants BGR)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
