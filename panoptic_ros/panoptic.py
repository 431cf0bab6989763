"""The panoptic label convention, defined once and used by the world, the head, the evaluator and the node.

A panoptic id map is an ``(H, W) int32`` image:

- ``0`` is void / unknown (no category);
- a stuff segment has id ``category_id * OFFSET`` (one segment per stuff category and image);
- a thing instance has id ``category_id * OFFSET + k`` with ``k`` in ``1 .. OFFSET-1``.

``category_id`` is the taxonomy's dataset id (:attr:`Category.id`, e.g. Cityscapes ``labelId``), so ids
read the same in every tool (``26003`` is the third car). The segment table (:class:`Segment`) carries
the per-segment facts that are not in the pixels (score, crowd flag).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .taxonomy import VOID_TRAIN_ID, Taxonomy

OFFSET = 1000
VOID_ID = 0


def encode_id(category_id, instance=0):
    """Panoptic id of instance ``instance`` (0 for stuff) of ``category_id``; works on arrays."""
    return np.asarray(category_id, dtype=np.int64) * OFFSET + np.asarray(instance, dtype=np.int64)


def category_of(ids):
    """Category id of each panoptic id (0 for void)."""
    return np.asarray(ids) // OFFSET


def instance_of(ids):
    return np.asarray(ids) % OFFSET


@dataclass
class Segment:
    """One segment of a panoptic result, as in COCO-panoptic ``segments_info`` plus a score."""

    id: int
    category_id: int
    is_thing: bool
    area: int
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels (COCO convention)
    score: float = 1.0
    iscrowd: int = 0

    def to_coco(self) -> dict:
        return {"id": int(self.id), "category_id": int(self.category_id), "area": int(self.area),
                "bbox": [int(v) for v in self.bbox], "iscrowd": int(self.iscrowd)}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PanopticResult:
    """What the predictor returns for one image, at the input image's resolution."""

    panoptic: np.ndarray  # (H, W) int32 panoptic ids
    semantic: np.ndarray  # (H, W) uint8 train ids, VOID_TRAIN_ID for void / unknown
    segments: list[Segment] = field(default_factory=list)
    timings_ms: dict = field(default_factory=dict)
    # The detection branch's boxes above the score threshold, for its own metrics (box AP):
    # {"boxes": (N, 4) float xyxy in input-image pixels, "scores": (N,), "category_ids": (N,)}
    detections: dict | None = None


def segments_from_ids(ids: np.ndarray, taxonomy: Taxonomy, scores: dict | None = None,
                      crowd_ids=()) -> list[Segment]:
    """The segment table of an id map: area and bbox of every non-void id, vectorised.

    ``scores`` maps segment id -> score (default 1.0); ``crowd_ids`` are flagged ``iscrowd``.
    """
    flat = ids.reshape(-1)
    uniq, inverse, areas = np.unique(flat, return_inverse=True, return_counts=True)
    h, w = ids.shape
    rows = np.repeat(np.arange(h), w)
    cols = np.tile(np.arange(w), h)
    n = len(uniq)
    x0 = np.full(n, w); y0 = np.full(n, h); x1 = np.full(n, -1); y1 = np.full(n, -1)
    np.minimum.at(x0, inverse, cols); np.minimum.at(y0, inverse, rows)
    np.maximum.at(x1, inverse, cols); np.maximum.at(y1, inverse, rows)
    scores = scores or {}
    crowd = set(int(c) for c in crowd_ids)
    out = []
    for k, seg_id in enumerate(uniq.tolist()):
        if seg_id == VOID_ID:
            continue
        cat = taxonomy.by_id.get(seg_id // OFFSET)
        if cat is None:
            raise ValueError(f"panoptic id {seg_id} has unknown category {seg_id // OFFSET}")
        out.append(Segment(seg_id, cat.id, cat.is_thing, int(areas[k]),
                           (int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)),
                           float(scores.get(seg_id, 1.0)), int(seg_id in crowd)))
    return out


def semantic_from_ids(ids: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """(H, W) train ids of a panoptic id map (void -> VOID_TRAIN_ID)."""
    cat = (ids // OFFSET).astype(np.int64)
    cat = np.where((cat > 0) & (cat < 256), cat, 0)
    out = taxonomy.id_to_train[cat]
    out[ids == VOID_ID] = VOID_TRAIN_ID
    return out


def colorize(ids: np.ndarray, taxonomy: Taxonomy, image: np.ndarray | None = None, alpha: float = 0.5,
             outline: bool = True) -> np.ndarray:
    """RGB picture of a panoptic map: category colour, things shaded per instance, white outlines.

    Blended over ``image`` (RGB uint8, same size) when given.
    """
    sem = semantic_from_ids(ids, taxonomy)
    rgb = taxonomy.colorize(sem).astype(np.int16)
    inst = (ids % OFFSET).astype(np.int16)
    # Shade instances so neighbours of one class differ; stuff (instance 0) keeps its colour.
    shade = np.where(inst > 0, ((inst * 37) % 61) - 30, 0)
    rgb = np.clip(rgb + shade[..., None], 0, 255).astype(np.uint8)
    if image is not None:
        rgb = (alpha * rgb + (1 - alpha) * image).astype(np.uint8)
    if outline:
        edge = np.zeros(ids.shape, dtype=bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        thing_edge = edge & (inst > 0)
        rgb[thing_edge] = 255
    return rgb

