"""COCO and Cityscapes roots written from the synthetic world, laid out exactly as the data sets are distributed.

COCO: our writer (annotations/panoptic_{split}.json with COCO's fields, random 24-bit segment ids, JPEG images,
12-digit file names), relabelled to COCO-panoptic's 133 categories. Cityscapes: the per-image
``*_gtFine_instanceIds.png`` / ``*_labelIds.png`` and ``leftImg8bit/`` images, then cityscapesscripts' own
createPanopticImgs writes ``gtFine/cityscapes_panoptic_{split}.json`` and its PNG folder (our writer's JSON is
removed first, so what the reader sees is the tool's output).
"""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from panoptic_ros.data.cityscapes import write_cityscapes_panoptic
from panoptic_ros.data.coco import write_coco_root
from panoptic_ros.data.relabel import relabel
from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.taxonomy import Taxonomy

WIDTH, HEIGHT = 128, 64


def world_frames(n: int, start: int = 0, seed: int = 5):
    world = SyntheticWorld(WorldConfig(width=WIDTH, height=HEIGHT), seed)
    return [world.frame(i) for i in range(start, start + n)], world.taxonomy


def coco_root(root: Path, splits=(("train2017", 4, 0), ("val2017", 2, 100))) -> Path:
    for split, n, start in splits:
        frames, taxonomy = world_frames(n, start)
        write_coco_root(root, relabel(frames, taxonomy, Taxonomy.coco_panoptic()), Taxonomy.coco_panoptic(),
                        split=split, progress=False)
    return root


def cityscapes_root(root: Path, splits=(("train", 4, 0), ("val", 2, 100), ("test", 1, 200))) -> Path:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    for split, n, start in splits:
        frames, taxonomy = world_frames(n, start)
        for k, f in enumerate(frames):
            f.name = f"{'aachen' if k % 2 else 'bremen'}_{start:06d}_{k:06d}"  # Cityscapes' id form
        write_cityscapes_panoptic(root, frames, taxonomy, split=split, progress=False)
        (root / "gtFine" / f"cityscapes_panoptic_{split}.json").unlink()
        shutil.rmtree(root / "gtFine" / f"cityscapes_panoptic_{split}")
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), False, [s for s, _, _ in splits])
    return root
