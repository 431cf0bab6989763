"""COCO box AP for the RetinaNet branch, computed by pycocotools from in-memory boxes.

Boxes are ``x1, y1, x2, y2`` in pixels (torchvision's convention); labels are dataset category ids
(:attr:`Category.id`, e.g. car = 26; map train ids with ``taxonomy.train_to_id``).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np

from ..taxonomy import Taxonomy

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _boxes(boxes, what: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise ValueError(f"{what} boxes must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
    return arr


class DetectionAccumulator:
    """Collects detections and ground-truth boxes per image; :meth:`result` runs COCOeval (bbox).

    Args:
        categories: a :class:`Taxonomy` (its thing categories are evaluated) or ``[{'id', 'name'}, ...]``.
    """

    def __init__(self, categories: Taxonomy | Sequence[Mapping[str, Any]]):
        if isinstance(categories, Taxonomy):
            cats = [{"id": c.id, "name": c.name} for c in categories.categories if c.is_thing]
        else:
            cats = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        if not cats:
            raise ValueError("no categories to evaluate")
        self.categories = cats
        self._known = {c["id"] for c in cats}
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.dt: list[dict] = []

    def add(self, boxes, scores, labels, gt_boxes, gt_labels, gt_iscrowd=None, height: int = 0,
            width: int = 0) -> None:
        """One image: detections (boxes (K, 4), scores (K,), labels (K,)) and its ground truth."""
        boxes, gt_boxes = _boxes(boxes, "detection"), _boxes(gt_boxes, "ground-truth")
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        crowd = np.zeros(len(gt_boxes), int) if gt_iscrowd is None else np.asarray(gt_iscrowd, int).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)) or not (len(gt_boxes) == len(gt_labels) == len(crowd)):
            raise ValueError("boxes, scores and labels (and gt boxes, labels, iscrowd) must have equal lengths")
        unknown = set(labels.tolist()) | set(gt_labels.tolist())
        unknown -= self._known
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not among the categories {sorted(self._known)}")
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": int(height), "width": int(width)})
        for box, label, is_crowd in zip(gt_boxes, gt_labels, crowd):
            w, h = box[2] - box[0], box[3] - box[1]
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": int(label),
                            "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(is_crowd)})
        for box, score, label in zip(boxes, scores, labels):
            self.dt.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})

    def result(self) -> dict:
        """``{AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl, per_class: {name: AP}}``;
        -1 where pycocotools has no ground truth to score (its convention)."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.images:
            raise ValueError("no images were added")
        gt = COCO()
        gt.dataset = {"images": self.images, "annotations": self.gt, "categories": self.categories}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt.createIndex()
            if not self.dt:  # pycocotools cannot load empty results; nothing found scores 0 (-1: no truth)
                with_truth = {a["category_id"] for a in self.gt if not a["iscrowd"]}
                return {**{k: (0.0 if with_truth else -1.0) for k in STAT_NAMES},
                        "per_class": {c["name"]: 0.0 if c["id"] in with_truth else -1.0 for c in self.categories}}
            dt = gt.loadRes(self.dt)
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out: dict[str, Any] = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
        precision = ev.eval["precision"]  # (iou thresholds, recall, category, area range, max dets)
        per_class = {}
        for k, cat_id in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[next(c["name"] for c in self.categories if c["id"] == cat_id)] = (
                float(p[p > -1].mean()) if (p > -1).any() else -1.0)
        out["per_class"] = per_class
        return out
