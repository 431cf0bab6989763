"""Cityscapes-panoptic data sets in cityscapesscripts' layout: writer and reader.

Layout under ``root`` (what ``cityscapesscripts/preparation/createPanopticImgs.py`` produces, plus the
images and the per-image label files the other cityscapesscripts tools read)::

    gtFine/cityscapes_panoptic_{split}.json
    gtFine/cityscapes_panoptic_{split}/{id}_gtFine_panoptic.png
    gtFine/{split}/{city}/{id}_gtFine_labelIds.png, {id}_gtFine_instanceIds.png  (ids <= 65 only: 16 bit)
    leftImg8bit/{split}/{city}/{id}_leftImg8bit.png

with ``id = {city}_{seq:06d}_{frame:06d}`` (also the JSON ``image_id``). Segment ids follow Cityscapes:
stuff = labelId, thing instance = labelId * 1000 + k, a thing category's crowd regions = labelId (one
segment, as Cityscapes' instanceIds files hold them). Images are found by ``image_id`` (the JSON's image
``file_name`` is ``{id}_gtFine_leftImg8bit.png``, which names no file). Reading converts back to our
convention; a crowd region gets the smallest free instance number.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..panoptic import OFFSET, VOID_ID, Segment
from ..taxonomy import Taxonomy
from .coco import PanopticJsonReader, checked_segments, ids_to_rgb, sample_names, write_rgb_png
from .frame import Sample

_CITYSCAPES_ID = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def cityscapes_ids(sample: Sample, segments: list[Segment]) -> np.ndarray:
    """The sample's id map as Cityscapes' ``*_instanceIds.png`` holds it: stuff and a thing category's crowd
    regions = labelId (all crowd regions of one category are one region), thing instances = labelId * 1000 + k."""
    mapping = {s.id: (s.category_id if (not s.is_thing or s.iscrowd) else s.id) for s in segments}
    uniq, inverse = np.unique(sample.panoptic, return_inverse=True)
    table = np.array([mapping.get(int(u), VOID_ID) for u in uniq], dtype=np.int32)
    return table[inverse].reshape(sample.panoptic.shape)


def segments_info(cs_ids: np.ndarray, taxonomy: Taxonomy) -> list[dict]:
    """``segments_info`` as createPanopticImgs computes it from an instanceIds map: ids in ascending order, a
    thing id below 1000 is a crowd region, bbox [x, y, w, h] of the pixels."""
    infos = []
    for seg_id in np.unique(cs_ids).tolist():
        if seg_id == VOID_ID:
            continue
        category = taxonomy.by_id[seg_id if seg_id < OFFSET else seg_id // OFFSET]
        ys, xs = np.nonzero(cs_ids == seg_id)
        infos.append({"id": int(seg_id), "category_id": int(category.id), "area": int(len(xs)),
                      "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                               int(ys.max() - ys.min() + 1)],
                      "iscrowd": int(category.is_thing and seg_id < OFFSET)})
    return infos


def write_cityscapes_panoptic(root: str | Path, samples: Iterable[Sample], taxonomy: Taxonomy,
                              split: str = "val", city: str = "synthetic", progress: bool = True,
                              total: int | None = None) -> Path:
    """Write ``samples`` in the Cityscapes-panoptic layout; returns the panoptic JSON path.

    The JSON is what createPanopticImgs writes (``images``, ``annotations``, ``categories`` only; an image's
    ``file_name`` is its quirky ``{id}_gtFine_leftImg8bit.png``, not the image file's name). A sample named like
    ``{city}_{seq:06d}_{frame:06d}`` keeps its name; others become ``{city}_{index // 10^6:06d}_{index % 10^6:06d}``.
    """
    root = Path(root)
    if not re.match(r"^[A-Za-z0-9]+$", city) or not re.match(r"^[A-Za-z0-9]+$", split):
        raise ValueError(f"city {city!r} and split {split!r} must be letters and digits")
    # The 16-bit label files of Cityscapes only fit taxonomies with category ids <= 65 (Cityscapes: <= 33).
    label_files = int(taxonomy.ids.max()) * OFFSET + OFFSET - 1 < 2 ** 16
    pan_dir = root / "gtFine" / f"cityscapes_panoptic_{split}"
    pan_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, (name, sample) in enumerate(tqdm(sample_names(samples), desc="cityscapes-panoptic", unit="img",
                                                total=total, disable=not progress)):
        image_id = name if _CITYSCAPES_ID.match(name) else f"{city}_{index // 1_000_000:06d}_{index % 1_000_000:06d}"
        image_city = _CITYSCAPES_ID.match(image_id)["city"]
        cs_ids = cityscapes_ids(sample, checked_segments(sample, taxonomy, f"sample {name!r}"))
        img_dir = root / "leftImg8bit" / split / image_city
        gt_dir = root / "gtFine" / split / image_city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        write_rgb_png(img_dir / f"{image_id}_leftImg8bit.png", sample.image)
        write_rgb_png(pan_dir / f"{image_id}_gtFine_panoptic.png", ids_to_rgb(cs_ids))
        if label_files:
            label_ids = np.where(cs_ids >= OFFSET, cs_ids // OFFSET, cs_ids).astype(np.uint8)  # 0 = unlabeled
            cv2.imwrite(str(gt_dir / f"{image_id}_gtFine_labelIds.png"), label_ids)
            cv2.imwrite(str(gt_dir / f"{image_id}_gtFine_instanceIds.png"), cs_ids.astype(np.uint16))
        h, w = cs_ids.shape
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id}_gtFine_leftImg8bit.png"})
        annotations.append({"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
                            "segments_info": segments_info(cs_ids, taxonomy)})
    json_path = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": taxonomy.to_coco_categories()}, sort_keys=True, indent=4))
    os.replace(tmp, json_path)
    return json_path


class CityscapesPanopticReader(PanopticJsonReader):
    """Reads ``root``'s Cityscapes-panoptic ``split`` (ours or the real data set) as :class:`Sample` s."""

    def __init__(self, root: str | Path, split: str = "val"):
        self.root = Path(root)
        self.split = split
        json_path = self.root / "gtFine" / f"cityscapes_panoptic_{split}.json"
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path} does not exist; for the real data set run cityscapesscripts' "
                                    "csCreatePanopticImgs first")
        super().__init__(json_path, json_path.with_suffix(""))

    def sample_name(self, annotation: dict) -> str:
        return str(annotation["image_id"])

    def image_path(self, image: dict) -> Path:
        # createPanopticImgs' file_name is "{id}_gtFine_leftImg8bit.png", so the image file is found by its id.
        match = _CITYSCAPES_ID.match(str(image["id"]))
        if match is None:
            raise ValueError(f"{self.json_path}: image id {image['id']!r} is not of the form city_000000_000000")
        return self.root / "leftImg8bit" / self.split / match["city"] / f"{image['id']}_leftImg8bit.png"
