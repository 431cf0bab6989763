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
from functools import lru_cache

import cv2
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

    Blended over ``image`` (RGB uint8, same size) when given: ``uint8(alpha * colour + (1 - alpha) * pixel)``
    (float64, truncated). The node draws one per frame, so both steps go through tables built once and give
    the same bytes as that per-pixel formula (:func:`_instance_colours`, :func:`_blend_table`).
    """
    ids = np.asarray(ids)
    table = _colour_table(taxonomy)
    if np.issubdtype(ids.dtype, np.integer) and ids.size and ids.min() >= 0 and ids.max() < len(table):
        # One 4-byte item per pixel, then the pad byte dropped by OpenCV: ~4x faster than np.take of the
        # (L, 3) rows, which copies 3 bytes at a time.
        rgba = np.take(table, ids).view(np.uint8).reshape(*ids.shape, 4)
        rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB) if ids.ndim == 2 else np.ascontiguousarray(rgba[..., :3])
    else:  # ids beyond every category of the taxonomy (or a float map): per pixel
        rgb = _instance_colours(ids, taxonomy)
    if image is not None:
        rgb = _blend(rgb, image, alpha)
    if outline:
        edge = np.zeros(ids.shape, dtype=bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        # Only edge pixels (a few % of a frame) need the instance test and the white: listed by index, both
        # cost ~50x less than boolean masks over the whole (H, W, 3) picture.
        pixels = np.flatnonzero(edge)
        pixels = pixels[(ids.reshape(-1)[pixels] % OFFSET).astype(np.int16) > 0]
        rgb = np.ascontiguousarray(rgb)  # a no-op here but for strided inputs: reshape must be a view
        rgb.reshape(-1, 3)[pixels] = 255
    return rgb


def _instance_colours(ids: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """(H, W, 3) uint8 colour of each id: its category's colour, thing instances shaded so neighbours of one
    class differ (stuff, instance 0, keeps its colour). A pure function of the id."""
    sem = semantic_from_ids(ids, taxonomy)
    rgb = taxonomy.colorize(sem).astype(np.int16)
    inst = (ids % OFFSET).astype(np.int16)
    shade = np.where(inst > 0, ((inst * 37) % 61) - 30, 0)
    return np.clip(rgb + shade[..., None], 0, 255).astype(np.uint8)


_COLOUR_TABLES: dict[bytes, np.ndarray] = {}


def _colour_table(taxonomy: Taxonomy) -> np.ndarray:
    """(L,) uint32: item i holds the bytes R, G, B, 0 of :func:`_instance_colours` of id i, for every id up to
    the last category's.

    Kept per content of the taxonomy's id table and colours (an edited taxonomy gets its own table).
    """
    key = taxonomy.id_to_train.tobytes() + taxonomy.colors.tobytes()
    table = _COLOUR_TABLES.get(key)
    if table is None:
        known = np.flatnonzero(taxonomy.id_to_train != VOID_TRAIN_ID)
        size = (int(known.max()) + 1 if len(known) else 1) * OFFSET
        rgba = np.zeros((size, 4), dtype=np.uint8)
        rgba[:, :3] = _instance_colours(np.arange(size, dtype=np.int64).reshape(1, size), taxonomy)[0]
        table = rgba.view(np.uint32).reshape(size)
        table.flags.writeable = False  # shared by every call
        if len(_COLOUR_TABLES) >= 8:
            _COLOUR_TABLES.clear()
        _COLOUR_TABLES[key] = table
    return table


def _blend(rgb: np.ndarray, image: np.ndarray, alpha) -> np.ndarray:
    """``uint8(alpha * rgb + (1 - alpha) * image)`` in float64, computed without floats where that is exact."""
    if image.dtype != np.uint8 or image.shape != rgb.shape or type(alpha) is not float or not 0.0 <= alpha <= 1.0:
        return (alpha * rgb + (1 - alpha) * image).astype(np.uint8)
    if alpha == 0.5:  # 0.5 * a + 0.5 * b = (a + b) / 2 exactly in float64, truncated: (a & b) + ((a ^ b) >> 1)
        out = np.bitwise_xor(rgb, image)  # in uint8, without widening to uint16 and back
        out >>= 1
        out += rgb & image
        return out
    return np.take(_blend_table(alpha), (rgb.astype(np.uint16) << 8) | image)


@lru_cache(maxsize=8)
def _blend_table(alpha: float) -> np.ndarray:
    """(65536,) uint8: entry ``a << 8 | b`` = ``uint8(alpha * a + (1 - alpha) * b)``, the float64 formula itself."""
    a = np.arange(256, dtype=np.uint8)
    table = (alpha * a[:, None] + (1 - alpha) * a[None, :]).astype(np.uint8).reshape(-1)
    table.flags.writeable = False
    return table
