"""The label taxonomy used everywhere: categories, colours, is-thing flags, ids.

Two ids per category, as in Cityscapes:
- ``id``: the dataset's category id (Cityscapes ``labelId``; COCO panoptic ``category_id``). It is what
  panoptic segment ids and written data sets use.
- ``train_id``: the contiguous network channel index 0..C-1. Semantic maps (``mono8``) carry train ids,
  with :data:`VOID_TRAIN_ID` for void / unknown pixels.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

VOID_TRAIN_ID = 255


@dataclass(frozen=True)
class Category:
    id: int
    train_id: int
    name: str
    color: tuple[int, int, int]
    is_thing: bool


# Cityscapes' 19 evaluation classes with their official labelIds and colours (cityscapesscripts labels.py).
_CITYSCAPES = [
    (7, "road", (128, 64, 128), False),
    (8, "sidewalk", (244, 35, 232), False),
    (11, "building", (70, 70, 70), False),
    (12, "wall", (102, 102, 156), False),
    (13, "fence", (190, 153, 153), False),
    (17, "pole", (153, 153, 153), False),
    (19, "traffic light", (250, 170, 30), False),
    (20, "traffic sign", (220, 220, 0), False),
    (21, "vegetation", (107, 142, 35), False),
    (22, "terrain", (152, 251, 152), False),
    (23, "sky", (70, 130, 180), False),
    (24, "person", (220, 20, 60), True),
    (25, "rider", (255, 0, 0), True),
    (26, "car", (0, 0, 142), True),
    (27, "truck", (0, 0, 70), True),
    (28, "bus", (0, 60, 100), True),
    (31, "train", (0, 80, 100), True),
    (32, "motorcycle", (0, 0, 230), True),
    (33, "bicycle", (119, 11, 32), True),
]
# cityscapesscripts' label.category of each, which createPanopticImgs writes as the supercategory.
_CITYSCAPES_GROUPS = {
    7: "flat", 8: "flat", 11: "construction", 12: "construction", 13: "construction", 17: "object", 19: "object",
    20: "object", 21: "nature", 22: "nature", 23: "sky", 24: "human", 25: "human", 26: "vehicle", 27: "vehicle",
    28: "vehicle", 31: "vehicle", 32: "vehicle", 33: "vehicle"}


class Taxonomy:
    """An ordered list of categories (order = train id) with lookups both ways."""

    def __init__(self, categories: Sequence[Category], name: str = "custom"):
        cats = tuple(categories)
        if [c.train_id for c in cats] != list(range(len(cats))):
            raise ValueError("categories must be ordered by train_id 0..C-1")
        ids = [c.id for c in cats]
        if len(set(ids)) != len(ids) or min(ids) < 1 or max(ids) >= VOID_TRAIN_ID:
            raise ValueError(f"category ids must be unique and in 1..254, got {ids}")
        if len(cats) >= VOID_TRAIN_ID:
            raise ValueError("at most 254 categories fit a mono8 semantic map")
        self.name = name
        self.categories = cats
        self.by_id = {c.id: c for c in cats}
        self.by_name = {c.name: c for c in cats}
        self.num_classes = len(cats)
        self.is_thing = np.array([c.is_thing for c in cats], dtype=bool)
        self.thing_train_ids = np.flatnonzero(self.is_thing)
        self.stuff_train_ids = np.flatnonzero(~self.is_thing)
        self.ids = np.array(ids, dtype=np.int64)
        self.colors = np.array([c.color for c in cats], dtype=np.uint8)
        # Lookup tables so conversions are one gather, never a Python loop over pixels.
        self.id_to_train = np.full(256, VOID_TRAIN_ID, dtype=np.uint8)
        self.id_to_train[self.ids] = np.arange(self.num_classes)
        self.train_to_id = np.zeros(256, dtype=np.int64)
        self.train_to_id[: self.num_classes] = self.ids

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def cityscapes(cls) -> "Taxonomy":
        return cls([Category(i, t, n, c, th) for t, (i, n, c, th) in enumerate(_CITYSCAPES)], "cityscapes")

    @classmethod
    def coco_panoptic(cls) -> "Taxonomy":
        """COCO-panoptic's 133 categories with their ids (1..200) and panopticapi's colours."""
        from .coco_categories import coco_panoptic_categories

        return cls.from_coco_categories(coco_panoptic_categories(with_color=True), "coco_panoptic")

    @classmethod
    def from_coco_categories(cls, categories: Iterable[dict], name: str = "coco") -> "Taxonomy":
        """From a COCO-panoptic ``categories`` list (``id``, ``name``, ``isthing``, optional ``color``).

        COCO's own ``panoptic_{split}.json`` has no colours: its categories get panopticapi's.
        """
        from .coco_categories import COCO_COLORS

        cats = sorted(categories, key=lambda c: c["id"])
        rng = np.random.default_rng(0)  # stable made-up colours for categories that bring none
        out = []
        for t, c in enumerate(cats):
            made_up = rng.integers(0, 256, 3)
            color = c.get("color") or COCO_COLORS.get((int(c["id"]), str(c["name"])), made_up)
            color = tuple(int(v) for v in color)
            out.append(Category(int(c["id"]), t, str(c["name"]), color, bool(c["isthing"])))
        return cls(out, name)

    @classmethod
    def from_file(cls, path: str | Path) -> "Taxonomy":
        """A JSON file holding a COCO-panoptic annotation file or just its ``categories`` list."""
        data = json.loads(Path(path).read_text())
        cats = data["categories"] if isinstance(data, dict) else data
        return cls.from_coco_categories(cats, Path(path).stem)

    @classmethod
    def from_dict(cls, data: dict) -> "Taxonomy":
        return cls([Category(c["id"], c["train_id"], c["name"], tuple(c["color"]), c["is_thing"])
                    for c in data["categories"]], data.get("name", "custom"))

    def to_dict(self) -> dict:
        return {"name": self.name, "categories": [asdict(c) for c in self.categories]}

    def to_coco_categories(self) -> list[dict]:
        """COCO-panoptic ``categories``; the supercategory is Cityscapes' or COCO's for their categories."""
        from .coco_categories import COCO_SUPERCATEGORIES

        cityscapes = {(i, n): _CITYSCAPES_GROUPS[i] for i, n, _, _ in _CITYSCAPES}

        def group(c: Category) -> str:
            return (COCO_SUPERCATEGORIES.get((c.id, c.name)) or cityscapes.get((c.id, c.name))
                    or ("thing" if c.is_thing else "stuff"))

        return [{"id": c.id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color),
                 "supercategory": group(c)} for c in self.categories]

    # -- lookups --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_classes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Taxonomy) and self.categories == other.categories

    def __hash__(self) -> int:
        return hash(self.categories)

    def train_id(self, name: str) -> int:
        return self.by_name[name].train_id

    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def colorize(self, semantic: np.ndarray, void_color=(0, 0, 0)) -> np.ndarray:
        """(H, W) train ids -> (H, W, 3) RGB; void pixels get ``void_color``."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[:] = void_color
        lut[: self.num_classes] = self.colors
        return lut[semantic]
