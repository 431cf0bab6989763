"""Relabel samples into another taxonomy (e.g. the synthetic world's Cityscapes classes into COCO-panoptic's).

Used to write the world as a COCO data set with COCO's own 133 categories, so that a model with COCO's class
list can be trained and run here.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..panoptic import OFFSET, VOID_ID, segments_from_ids
from ..taxonomy import Taxonomy
from .frame import Sample

# Cityscapes name -> COCO-panoptic name. Poles, traffic lights and traffic signs are stuff in Cityscapes but
# COCO has no stuff class for them (its traffic light / stop sign are things): they become void.
CITYSCAPES_TO_COCO = {
    "road": "road", "sidewalk": "pavement-merged", "building": "building-other-merged",
    "wall": "wall-other-merged", "fence": "fence-merged", "vegetation": "tree-merged", "terrain": "grass-merged",
    "sky": "sky-other-merged", "person": "person", "rider": "person", "car": "car", "truck": "truck",
    "bus": "bus", "train": "train", "motorcycle": "motorcycle", "bicycle": "bicycle",
}


def relabel(samples: Iterable[Sample], source: Taxonomy, target: Taxonomy,
            names: dict[str, str] | None = None) -> Iterator[Sample]:
    """``samples`` in ``target``'s categories by ``names`` (source name -> target name; unlisted -> void).

    Things keep their instance numbers (a rider and a person of one image get distinct ones); categories must
    keep their thing / stuff kind.
    """
    names = CITYSCAPES_TO_COCO if names is None else names
    cat_map: dict[int, int] = {}
    for src_name, dst_name in names.items():
        if src_name not in source.by_name or dst_name not in target.by_name:
            continue
        src, dst = source.by_name[src_name], target.by_name[dst_name]
        if src.is_thing != dst.is_thing:
            raise ValueError(f"{src_name} and {dst_name} differ in being a thing")
        cat_map[src.id] = dst.id
    for sample in samples:
        new_ids: dict[int, int] = {}
        next_instance: dict[int, int] = {}
        crowd = []
        for seg in sample.segments:
            dst = cat_map.get(seg.category_id)
            if dst is None:
                new_ids[seg.id] = VOID_ID
            elif not seg.is_thing:
                new_ids[seg.id] = dst * OFFSET
            else:
                next_instance[dst] = next_instance.get(dst, 0) + 1
                new_ids[seg.id] = dst * OFFSET + next_instance[dst]
                if seg.iscrowd:
                    crowd.append(new_ids[seg.id])
        uniq, inverse = np.unique(sample.panoptic, return_inverse=True)
        table = np.array([new_ids.get(int(u), VOID_ID) for u in uniq], np.int32)
        ids = table[inverse].reshape(sample.panoptic.shape)
        yield Sample(sample.image, ids, segments_from_ids(ids, target, crowd_ids=crowd), sample.name)
