"""Made-up (ground truth, prediction) panoptic pairs holding every case PQ has rules for, and a writer for
them in COCO-panoptic layout (JSON + RGB-encoded PNG folders), for tests and benches of the evaluator.

Ground truth: stuff bands with several segments of one class, occluding thing boxes, crowd regions
(sometimes two of one category), void boxes, optionally ids missing from the segment list. Prediction:
the same shapes jittered (IoUs spread around 0.5), some dropped, some with a wrong class, stuff of a class
merged into one segment, spurious boxes, instances inside crowd regions and on void.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..taxonomy import Taxonomy

ID_LIMIT = 1 << 24  # ids an RGB PNG can hold


def _box(rng, h, w, min_size, max_size):
    bh, bw = (int(v) for v in rng.integers(min_size, max_size, 2))
    bh, bw = min(bh, h), min(bw, w)
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    return [y, x, y + bh, x + bw]


def _jitter(rng, box, h, w, amount):
    y0, x0, y1, x1 = box
    dy, dx = (y1 - y0) * amount, (x1 - x0) * amount
    out = [y0 + rng.normal(0, dy), x0 + rng.normal(0, dx), y1 + rng.normal(0, dy), x1 + rng.normal(0, dx)]
    y0, x0, y1, x1 = (int(round(v)) for v in out)
    y0, y1 = sorted((int(np.clip(y0, 0, h - 1)), int(np.clip(y1, 1, h))))
    x0, x1 = sorted((int(np.clip(x0, 0, w - 1)), int(np.clip(x1, 1, w))))
    return [y0, x0, max(y1, y0 + 1), max(x1, x0 + 1)]


def _segments(ids: np.ndarray, shapes: dict, with_area: bool) -> list[dict]:
    """segments_info for the ids still visible in ``ids`` (``shapes``: id -> (category_id, iscrowd))."""
    present, areas = np.unique(ids, return_counts=True)
    out = []
    for seg_id, area in zip(present.tolist(), areas.tolist()):
        if seg_id == 0 or seg_id not in shapes:
            continue
        cat, crowd = shapes[seg_id]
        seg = {"id": seg_id, "category_id": cat, "iscrowd": crowd}
        if with_area:
            seg["area"] = area
        out.append(seg)
    return out


def make_pair(rng: np.random.Generator, height: int, width: int, taxonomy: Taxonomy | None = None,
              unlisted_gt: bool = False):
    """One frame: ``(gt_ids, gt_segments, pred_ids, pred_segments)``; ids are arbitrary below 2**24."""
    tax = taxonomy or Taxonomy.cityscapes()
    stuff = [c.id for c in tax.categories if not c.is_thing]
    things = [c.id for c in tax.categories if c.is_thing]
    h, w = height, width
    fresh = iter(rng.choice(np.arange(1, ID_LIMIT), size=400, replace=False).tolist())
    gt = np.zeros((h, w), np.int64)
    gt_shapes: dict[int, tuple[int, int]] = {}
    plan = []  # (box, category, iscrowd, gt id) in painting order

    # Stuff: horizontal bands, the middle one cut into several segments of one class.
    cuts = sorted(rng.integers(h // 8, h - h // 8, 2).tolist())
    bands = [(0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], h)]
    for k, (y0, y1) in enumerate(bands):
        cat = int(rng.choice(stuff))
        pieces = int(rng.integers(2, 4)) if k == 1 else 1
        xs = np.linspace(0, w, pieces + 1).astype(int)
        for x0, x1 in zip(xs[:-1], xs[1:]):
            plan.append(([y0, int(x0), y1, int(x1)], cat, 0, next(fresh)))
    for _ in range(int(rng.integers(0, 3))):  # stuff blobs
        plan.append((_box(rng, h, w, h // 10, h // 3), int(rng.choice(stuff)), 0, next(fresh)))
    crowd_cats = []
    for _ in range(int(rng.integers(0, 3))):  # crowd regions, sometimes two of one category
        cat = int(rng.choice(things)) if not crowd_cats or rng.random() < 0.6 else crowd_cats[-1]
        crowd_cats.append(cat)
        plan.append((_box(rng, h, w, h // 6, h // 2), cat, 1, next(fresh)))
    for _ in range(int(rng.integers(2, 12))):  # thing instances
        plan.append((_box(rng, h, w, max(h // 20, 2), h // 3), int(rng.choice(things)), 0, next(fresh)))
    for box, cat, crowd, seg_id in plan:
        y0, x0, y1, x1 = box
        gt[y0:y1, x0:x1] = seg_id
        gt_shapes[seg_id] = (cat, crowd)
    for _ in range(int(rng.integers(0, 4))):  # void
        y0, x0, y1, x1 = _box(rng, h, w, 2, h // 4)
        gt[y0:y1, x0:x1] = 0
    gt_segments = _segments(gt, gt_shapes, with_area=True)
    if unlisted_gt and len(gt_segments) > 2:  # a labelled region the segment list forgets
        gt_segments.pop(int(rng.integers(0, len(gt_segments))))

    # Prediction: the same plan, jittered; drops, wrong classes, merged stuff, extras.
    pred = np.zeros((h, w), np.int64)
    pred_shapes: dict[int, tuple[int, int]] = {}
    merged_stuff: dict[int, int] = {}
    for box, cat, crowd, _ in plan:
        is_stuff = cat in stuff
        if rng.random() < (0.05 if is_stuff else 0.15):
            continue  # dropped
        if rng.random() < 0.1:
            cat = int(rng.choice(stuff if is_stuff else things))  # wrong class
        if crowd:  # a crowd is predicted as a few instances inside it, usually of its own class
            for _ in range(int(rng.integers(1, 4))):
                y0, x0, y1, x1 = box
                sub = _box(rng, y1 - y0, x1 - x0, 2, max((y1 - y0) // 2, 3))
                seg_id = next(fresh)
                pred[y0 + sub[0]:y0 + sub[2], x0 + sub[1]:x0 + sub[3]] = seg_id
                pred_shapes[seg_id] = (cat if rng.random() < 0.8 else int(rng.choice(things)), 0)
            continue
        if is_stuff and rng.random() < 0.5:
            seg_id = merged_stuff.setdefault(cat, next(fresh))  # all stuff of a class as one segment
        else:
            seg_id = next(fresh)
        y0, x0, y1, x1 = _jitter(rng, box, h, w, 0.0 if is_stuff and rng.random() < 0.3 else 0.12)
        pred[y0:y1, x0:x1] = seg_id
        pred_shapes[seg_id] = (cat, 0)
    for _ in range(int(rng.integers(0, 4))):  # spurious
        seg_id = next(fresh)
        y0, x0, y1, x1 = _box(rng, h, w, 2, h // 4)
        pred[y0:y1, x0:x1] = seg_id
        pred_shapes[seg_id] = (int(rng.choice(things + stuff)), 0)
    if rng.random() < 0.3:  # a prediction sitting on void
        ys, xs = np.nonzero(gt == 0)
        if len(ys):
            seg_id = next(fresh)
            y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
            pred[max(y - 3, 0):y + 3, max(x - 3, 0):x + 3] = seg_id
            pred_shapes[seg_id] = (int(rng.choice(things)), 0)
    pred_segments = _segments(pred, pred_shapes, with_area=True)
    return gt, gt_segments, pred, pred_segments


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour encoding: id = R + 256 G + 256^2 B."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min() < 0 or ids.max() >= ID_LIMIT:
        raise ValueError("ids must be in 0 .. 2**24 - 1 to fit an RGB PNG")
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def write_png(path: Path, ids: np.ndarray, writer: str = "opencv") -> None:
    """An id map as an RGB PNG; ``writer`` picks the encoder (their row filters differ: OpenCV writes
    Sub rows, Pillow mixes Up / Paeth / Sub as panopticapi's own converters do)."""
    rgb = id_to_rgb(ids)
    if writer == "opencv":
        if not cv2.imwrite(str(path), rgb[..., ::-1]):
            raise ValueError(f"cannot write {path}")
    elif writer == "pillow":
        from PIL import Image

        Image.fromarray(rgb).save(path)
    else:
        raise ValueError(f"writer must be 'opencv' or 'pillow', got {writer!r}")


def write_pairs(root: str | Path, pairs, categories: list[dict], layout: str = "coco",
                writer: str = "opencv") -> dict:
    """Write pairs as ``gt.json`` + ``gt/`` and ``pred.json`` + ``pred/`` (COCO panoptic) under ``root``.

    ``layout='cityscapes'`` names files and image ids like Cityscapes' panoptic conversion
    (``cityscapes_panoptic_val.json``, ``<city>_<seq>_<frame>_gtFine_panoptic.png``).
    Returns the four paths (gt_json, gt_dir, pred_json, pred_dir).
    """
    root = Path(root)
    if layout == "coco":
        names = {"gt_json": "gt.json", "gt_dir": "gt", "pred_json": "pred.json", "pred_dir": "pred"}
    elif layout == "cityscapes":
        names = {"gt_json": "cityscapes_panoptic_val.json", "gt_dir": "cityscapes_panoptic_val",
                 "pred_json": "results/cityscapes_panoptic_val.json", "pred_dir": "results/cityscapes_panoptic_val"}
    else:
        raise ValueError(f"layout must be 'coco' or 'cityscapes', got {layout!r}")
    paths = {k: root / v for k, v in names.items()}
    paths["gt_dir"].mkdir(parents=True, exist_ok=True)
    paths["pred_dir"].mkdir(parents=True, exist_ok=True)
    gt_json = {"images": [], "annotations": [], "categories": categories}
    pred_json = {"annotations": []}
    for k, (gt, gt_segments, pred, pred_segments) in enumerate(pairs):
        if layout == "coco":
            image_id, stem = k + 1, f"{k + 1:012d}"
            gt_file = pred_file = stem + ".png"
        else:
            image_id = f"synth_{k // 100:06d}_{k % 100:06d}"
            gt_file, pred_file = image_id + "_gtFine_panoptic.png", image_id + "_panoptic.png"
        h, w = gt.shape
        gt_json["images"].append({"id": image_id, "file_name": stem + ".jpg" if layout == "coco" else
                                  image_id + "_leftImg8bit.png", "height": h, "width": w})
        gt_json["annotations"].append({"image_id": image_id, "file_name": gt_file, "segments_info": gt_segments})
        pred_json["annotations"].append({"image_id": image_id, "file_name": pred_file,
                                         "segments_info": pred_segments})
        write_png(paths["gt_dir"] / gt_file, gt, writer)
        write_png(paths["pred_dir"] / pred_file, pred, writer)
    paths["gt_json"].write_text(json.dumps(gt_json))
    paths["pred_json"].write_text(json.dumps(pred_json))
    return paths
