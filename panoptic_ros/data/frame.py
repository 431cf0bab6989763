"""What one frame of data is, whether rendered by the world or read from a data set or a bag."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import CameraModel, GridSpec
from ..panoptic import Segment, semantic_from_ids
from ..taxonomy import Taxonomy


@dataclass
class BevTruth:
    """Exact bird's-eye ground truth on ``grid`` (arrays are (grid.height, grid.width), row = y, col = x)."""

    grid: GridSpec
    ground_class: np.ndarray  # uint8 train id of the ground surface under each cell (VOID_TRAIN_ID = none)
    occupied: np.ndarray  # bool: an object footprint (thing or obstacle stuff) covers the cell
    instance: np.ndarray  # int32 panoptic id of the thing whose footprint covers the cell, 0 = none
    visible: np.ndarray  # bool: the camera sees the cell (in view, in front, not occluded)


@dataclass
class ThingTruth:
    """A rendered thing in 3D (base_link metres)."""

    id: int  # panoptic id in the frame's id map
    category_id: int
    footprint: np.ndarray  # (4, 2) ground-plane corners (x, y)
    height: float
    corners: np.ndarray  # (8, 3) corners of its 3D bounding box


@dataclass
class Sample:
    """An image with its panoptic ground truth (the minimum every reader returns)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    panoptic: np.ndarray  # (H, W) int32 ids, panoptic_ros.panoptic convention
    segments: list[Segment]
    name: str = ""

    def semantic(self, taxonomy: Taxonomy) -> np.ndarray:
        return semantic_from_ids(self.panoptic, taxonomy)


@dataclass
class Frame(Sample):
    """A rendered frame: a Sample plus camera, time and 3D / bird's-eye truth."""

    camera: CameraModel | None = None
    stamp_ns: int = 0
    bev: BevTruth | None = None
    things: list[ThingTruth] = field(default_factory=list)
    depth: np.ndarray | None = None  # (H, W) float32 metres along the optical axis, inf for sky
