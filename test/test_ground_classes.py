"""Free / obstacle classes of the bird's-eye grid from the model's taxonomy (Cityscapes, COCO-panoptic, other)."""
from __future__ import annotations

import numpy as np

from panoptic_ros.bev import DEFAULT_FREE_CLASSES, DEFAULT_OBSTACLE_CLASSES, GroundProjector
from panoptic_ros.geometry import CameraModel, GridSpec, Pose
from panoptic_ros.ground_classes import ground_classes
from panoptic_ros.panoptic import encode_id
from panoptic_ros.taxonomy import Category, Taxonomy


def test_cityscapes_defaults_are_the_projectors():
    free, obstacle = ground_classes(Taxonomy.cityscapes())
    assert set(free) == set(DEFAULT_FREE_CLASSES) and set(obstacle) == set(DEFAULT_OBSTACLE_CLASSES)


def test_coco_panoptic_names():
    coco = Taxonomy.coco_panoptic()
    free, obstacle = ground_classes(coco)
    assert {"road", "pavement-merged", "dirt-merged", "grass-merged", "gravel", "sand"} <= set(free)
    assert {"building-other-merged", "wall-other-merged", "fence-merged", "tree-merged", "house"} <= set(obstacle)
    assert not set(free) & set(obstacle)
    assert all(not coco.by_name[n].is_thing for n in free + obstacle)  # things are obstacles by isthing
    assert "sky-other-merged" not in free + obstacle and "river" not in free + obstacle
    # given lists win; an empty one falls back to the taxonomy
    assert ground_classes(coco, ["road"], []) == (("road",), obstacle)


def test_unmapped_taxonomy_gives_an_all_unknown_grid():
    taxonomy = Taxonomy([Category(1, 0, "floor-of-mars", (9, 9, 9), False),
                         Category(2, 1, "rover", (200, 0, 0), True)], "mars")
    free, obstacle = ground_classes(taxonomy)
    assert free == () and obstacle == ()
    camera = CameraModel.from_camera_info(64, 48, [32, 0, 32, 0, 32, 24, 0, 0, 1], [0.0] * 5,
                                          pose=Pose(0, 0, 1.5, 0, 0.3, 0), parent_frame="base_link")
    projector = GroundProjector(camera, GridSpec(0.5, 0, 20, -10, 10, "base_link"), taxonomy,
                                free_classes=free, obstacle_classes=obstacle)
    ids = np.full((48, 64), encode_id(1), np.int32)
    ids[20:30, 20:30] = encode_id(2, 1)
    grid = projector.project(ids).occupancy_data()
    assert (grid == -1).all()
