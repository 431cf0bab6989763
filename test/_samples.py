"""Hand-built panoptic samples and frames for the format and bag tests (independent of the synthetic world)."""
from __future__ import annotations

import numpy as np

from panoptic_ros.data.frame import BevTruth, Frame, Sample
from panoptic_ros.geometry import CameraModel, GridSpec, Pose
from panoptic_ros.panoptic import OFFSET, segments_from_ids
from panoptic_ros.taxonomy import Taxonomy

CITYSCAPES = Taxonomy.cityscapes()


def make_sample(seed: int, height: int = 48, width: int = 64, taxonomy: Taxonomy = CITYSCAPES,
                n_things: int = 25, crowd_per_category: int = 1, name: str = "") -> Sample:
    """Stuff bands, many thing rectangles with sparse random instance numbers, crowd regions, void holes."""
    rng = np.random.default_rng(seed)
    stuff = [c for c in taxonomy.categories if not c.is_thing]
    things = [c for c in taxonomy.categories if c.is_thing]
    ids = np.zeros((height, width), dtype=np.int32)
    n_bands = min(4, len(stuff))  # one band per stuff category: a stuff category is one segment
    bands = np.sort(rng.choice(np.arange(1, height), size=n_bands - 1, replace=False))
    for top, bottom, cat in zip([0, *bands], [*bands, height], rng.choice(len(stuff), n_bands, replace=False)):
        ids[top:bottom] = stuff[cat].id * OFFSET
    used: dict[int, set] = {}
    for _ in range(n_things):
        cat = things[rng.integers(len(things))]
        k = int(rng.integers(1, OFFSET))
        while k in used.setdefault(cat.id, set()):
            k = int(rng.integers(1, OFFSET))
        used[cat.id].add(k)
        y, x = rng.integers(0, height - 3), rng.integers(0, width - 3)
        ids[y:y + rng.integers(2, 12), x:x + rng.integers(2, 14)] = cat.id * OFFSET + k
    crowd = []
    for cat in rng.choice(things, size=2, replace=False):
        for _ in range(crowd_per_category):
            k = min(set(range(1, OFFSET)) - used.setdefault(cat.id, set()))
            used[cat.id].add(k)
            y, x = rng.integers(0, height - 3), rng.integers(0, width - 3)
            ids[y:y + 3, x:x + 3] = cat.id * OFFSET + k
            crowd.append(cat.id * OFFSET + k)
    ids[rng.random((height, width)) < 0.03] = 0  # scattered void pixels
    ids[: rng.integers(1, 4), : rng.integers(1, 6)] = 0
    crowd = [c for c in crowd if (ids == c).any()]
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(image, ids, segments_from_ids(ids, taxonomy, crowd_ids=crowd), name)


def make_frame(seed: int, index: int, fps: float = 10.0, height: int = 48, width: int = 64) -> Frame:
    s = make_sample(seed * 1000 + index, height, width, name=f"frame{index:04d}")
    cam = CameraModel.from_fov(width, height, 90.0, Pose(1.2, 0.1, 1.6, 0.01, 0.08, -0.03))
    cam = CameraModel(cam.width, cam.height, cam.K, np.array([-0.1, 0.01, 0.001, -0.002, 0.0]), cam.pose)
    grid = GridSpec(resolution=0.5, x_min=0.0, x_max=10.0, y_min=-4.0, y_max=4.0)
    rng = np.random.default_rng(seed + index)
    occupied = rng.random(grid.shape) < 0.2
    bev = BevTruth(grid, np.zeros(grid.shape, np.uint8), occupied, np.zeros(grid.shape, np.int32),
                   rng.random(grid.shape) < 0.7)
    stamp = 1_700_000_000_000_000_000 + int(round(index * 1e9 / fps))
    return Frame(s.image, s.panoptic, s.segments, s.name, camera=cam, stamp_ns=stamp, bev=bev)
