"""PanopticSegmentation message -> (ids, segments, taxonomy), for any implementation of the message type:
rclpy's (the node's side) or rosbags' (reading recordings with no ROS install). No ROS import here."""
from __future__ import annotations

import numpy as np

from ..imaging import fields_to_image
from ..panoptic import Segment
from ..taxonomy import Category, Taxonomy


def from_panoptic_segmentation(msg) -> tuple[np.ndarray, list[Segment], Taxonomy]:
    """The id map, the segment table and the taxonomy a ``PanopticSegmentation`` carries."""
    img = msg.panoptic
    if img.encoding != "32SC1":
        raise ValueError(f"PanopticSegmentation.panoptic must be 32SC1, got {img.encoding!r}")
    ids = fields_to_image(img.height, img.width, img.encoding, img.is_bigendian, img.step, bytes(img.data))
    taxonomy = Taxonomy([Category(int(c.id), int(c.train_id), c.name, tuple(int(v) for v in c.color),
                                  bool(c.is_thing)) for c in msg.categories], "message")
    segments = [Segment(int(s.id), int(s.category_id), bool(s.is_thing), int(s.area),
                        (int(s.bbox.x_offset), int(s.bbox.y_offset), int(s.bbox.width), int(s.bbox.height)),
                        float(s.score)) for s in msg.segments]
    return ids, segments, taxonomy
