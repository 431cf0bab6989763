"""The vehicle's own body in the camera image (hood, mirrors): a mask whose pixels become void in every output.

A mask is a PNG, non-zero = body, drawn for the camera's image size; an image of another size (binning, a
resized stream) gets the mask resized with nearest neighbour, so it stays a clean 0 / 1 map. Void (id 0,
train id 255) is what the bird's-eye projection treats as unseen: masked pixels never make a cell free or
occupied, and an obstacle standing on the masked area has no visible ground contact.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .panoptic import PanopticResult, segments_from_ids
from .taxonomy import VOID_TRAIN_ID, Taxonomy


def load_ego_mask(path: str | Path) -> np.ndarray:
    """(H, W) bool mask from a PNG (any bit depth, grey or colour): True where any channel is non-zero."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ego_mask {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"ego_mask {path} is not an image OpenCV can read")
    mask = image.reshape(*image.shape[:2], -1).any(axis=2)
    if mask.all():
        raise ValueError(f"ego_mask {path} covers the whole image: nothing would be left to see")
    return mask


def mask_at(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` at ``height`` x ``width`` (nearest neighbour if it has another size)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def apply_ego_mask(result: PanopticResult, mask: np.ndarray, taxonomy: Taxonomy) -> PanopticResult:
    """``result`` with the ``mask`` pixels void: id 0, train id 255, segment areas and boxes recounted (a segment
    wholly under the mask is gone); scores, detections and timings are kept."""
    if mask.shape != result.panoptic.shape:
        raise ValueError(f"ego mask of shape {mask.shape} does not match the result's {result.panoptic.shape}")
    ids = result.panoptic.copy()
    ids[mask] = 0
    semantic = result.semantic.copy()
    semantic[mask] = VOID_TRAIN_ID
    segments = segments_from_ids(ids, taxonomy, scores={s.id: s.score for s in result.segments})
    return PanopticResult(ids, semantic, segments, dict(result.timings_ms), result.detections)
