"""Which of a model's classes are free ground and which are obstacles for the bird's-eye grid, by category name.

The node's ``free_classes`` / ``obstacle_classes`` parameters default (empty list) to the model's classes found in
the tables below, so a model trained on Cityscapes, on COCO-panoptic or on any data set reusing their names
needs no hand-written lists. Thing classes are obstacles by their ``isthing`` flag, whatever their name; stuff
classes in neither table (sky, water, ceiling, ...) leave the cells they show unknown.

=================  ==============================================================================================
free (ground a     Cityscapes: road, sidewalk, terrain. COCO-panoptic: road, pavement-merged, dirt-merged,
vehicle or robot   grass-merged, gravel, sand, snow, playingfield, platform, floor-wood, floor-other-merged,
may stand on)      rug-merged
obstacle stuff     Cityscapes: building, wall, fence, pole, vegetation, traffic light, traffic sign.
(stands on the     COCO-panoptic: building-other-merged, house, wall-other-merged, wall-brick, wall-stone,
ground, blocks)    wall-tile, wall-wood, fence-merged, tree-merged, bridge, tent, mountain-merged, rock-merged,
                   railroad, door-stuff, window-other, window-blind, cabinet-merged, table-merged, counter,
                   shelf, stairs
=================  ==============================================================================================
"""
from __future__ import annotations

from typing import Sequence

from .taxonomy import Taxonomy

FREE_NAMES = (
    "road", "sidewalk", "terrain",  # Cityscapes
    "pavement-merged", "dirt-merged", "grass-merged", "gravel", "sand", "snow", "playingfield", "platform",
    "floor-wood", "floor-other-merged", "rug-merged",  # COCO-panoptic (its "road" is above)
)
OBSTACLE_NAMES = (
    "building", "wall", "fence", "pole", "vegetation", "traffic light", "traffic sign",  # Cityscapes
    "building-other-merged", "house", "wall-other-merged", "wall-brick", "wall-stone", "wall-tile", "wall-wood",
    "fence-merged", "tree-merged", "bridge", "tent", "mountain-merged", "rock-merged", "railroad", "door-stuff",
    "window-other", "window-blind", "cabinet-merged", "table-merged", "counter", "shelf", "stairs",  # COCO
)


def ground_classes(taxonomy: Taxonomy, free: Sequence[str] = (),
                   obstacle: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(free, obstacle) stuff class names of ``taxonomy``: the given lists, or for an empty one the taxonomy's
    stuff classes named in :data:`FREE_NAMES` / :data:`OBSTACLE_NAMES` (in the taxonomy's order)."""
    stuff = [c.name for c in taxonomy.categories if not c.is_thing]
    free = tuple(free) or tuple(n for n in stuff if n in FREE_NAMES)
    obstacle = tuple(obstacle) or tuple(n for n in stuff if n in OBSTACLE_NAMES and n not in free)
    return free, obstacle
