"""Core results -> ROS messages (and the panoptic message back to arrays, for consumers and tests).

Every builder takes the input image's stamp; image outputs carry the camera frame, the grid and the markers
the output frame (``base_link`` by default).
"""
from __future__ import annotations

import array
import copy
from typing import Iterable, Mapping

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion
from nav_msgs.msg import MapMetaData, OccupancyGrid
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..geometry import GridSpec
from ..panoptic import PanopticResult, Segment, colorize
from ..taxonomy import Category, Taxonomy
from .image_conversion import numpy_to_image
from .segmentation import from_panoptic_segmentation  # noqa: F401 - the inverse of panoptic_segmentation

# Generated from msg/ by rosidl (tools/build_msgs.sh or colcon).
from panoptic_ros.msg import PanopticCategory, PanopticSegment, PanopticSegmentation

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def header(stamp: Time, frame_id: str) -> Header:
    return Header(stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=frame_id)


# -- images ------------------------------------------------------------------------------------------------
def panoptic_ids_image(ids: np.ndarray, hdr: Header) -> Image:
    """32SC1 image of panoptic ids (``category_id * 1000 + instance``, 0 = void)."""
    if ids.ndim != 2:
        raise ValueError(f"panoptic ids must be (H, W), got {ids.shape}")
    return numpy_to_image(np.ascontiguousarray(ids, dtype=np.int32), "32SC1", hdr)


def semantic_image(semantic: np.ndarray, hdr: Header) -> Image:
    """mono8 image of train ids, 255 = void / unknown."""
    if semantic.dtype != np.uint8 or semantic.ndim != 2:
        raise ValueError(f"semantic map must be (H, W) uint8, got {semantic.dtype} {semantic.shape}")
    return numpy_to_image(semantic, "mono8", hdr)


def overlay_image(ids: np.ndarray, taxonomy: Taxonomy, rgb: np.ndarray, hdr: Header, alpha: float = 0.5) -> Image:
    """rgb8 picture: panoptic colours (instances shaded, outlined) blended over the input image."""
    if rgb.shape[:2] != ids.shape:
        raise ValueError(f"overlay needs the input image at the ids' size {ids.shape}, got {rgb.shape[:2]}")
    return numpy_to_image(colorize(ids, taxonomy, rgb, alpha=alpha), "rgb8", hdr)


# -- panoptic message --------------------------------------------------------------------------------------
def category_msg(category: Category) -> PanopticCategory:
    return PanopticCategory(id=int(category.id), train_id=int(category.train_id), name=category.name,
                            is_thing=bool(category.is_thing), color=np.asarray(category.color, dtype=np.uint8))


def segment_msg(segment: Segment, taxonomy: Taxonomy) -> PanopticSegment:
    x, y, w, h = (int(v) for v in segment.bbox)
    return PanopticSegment(id=int(segment.id), category_id=int(segment.category_id),
                           category_name=taxonomy.by_id[segment.category_id].name, is_thing=bool(segment.is_thing),
                           area=int(segment.area),
                           bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False),
                           score=float(segment.score))


def panoptic_segmentation(result: PanopticResult, taxonomy: Taxonomy, hdr: Header,
                          ids_image: Image | None = None) -> PanopticSegmentation:
    """The full panoptic message of one frame (``ids_image`` reuses an already built 32SC1 image)."""
    return PanopticSegmentation(
        header=hdr, panoptic=ids_image if ids_image is not None else panoptic_ids_image(result.panoptic, hdr),
        segments=[segment_msg(s, taxonomy) for s in result.segments],
        categories=[category_msg(c) for c in taxonomy.categories])


# -- bird's-eye outputs ------------------------------------------------------------------------------------
def occupancy_grid(occupancy_data, grid: GridSpec, stamp: Time, frame_id: str | None = None) -> OccupancyGrid:
    """nav_msgs/OccupancyGrid; ``occupancy_data`` is row-major int8 (0 free, 100 occupied, -1 unknown)."""
    data = np.ascontiguousarray(occupancy_data, dtype=np.int8).reshape(-1)
    if data.size != grid.width * grid.height:
        raise ValueError(f"occupancy data has {data.size} cells, the grid {grid.width}x{grid.height}")
    frame = frame_id or grid.frame_id
    info = MapMetaData(map_load_time=Time(sec=stamp.sec, nanosec=stamp.nanosec), resolution=float(grid.resolution),
                       width=grid.width, height=grid.height,
                       # The pose of cell (0, 0)'s corner: GridSpec and OccupancyGrid agree on the layout.
                       origin=Pose(position=Point(x=float(grid.x_min), y=float(grid.y_min), z=0.0),
                                   orientation=Quaternion(w=1.0)))
    msg = OccupancyGrid(header=header(stamp, frame), info=info)
    msg.data = array.array("b", data.tobytes())
    return msg


def bev_occupancy_grid(bev, stamp: Time, frame_id: str | None = None) -> OccupancyGrid:
    """OccupancyGrid of a :class:`panoptic_ros.bev.BevGrid`."""
    return occupancy_grid(bev.occupancy_data(), bev.grid, stamp, frame_id)


def footprint_markers(footprints: Iterable, taxonomy: Taxonomy, stamp: Time, frame_id: str,
                      line_width: float = 0.1, text_height: float = 0.8) -> MarkerArray:
    """Thing footprints on the ground: a closed LINE_STRIP and a TEXT label ("car 26003") per footprint.

    The first marker is DELETEALL, so footprints of the previous frame disappear in RViz.
    """
    hdr = header(stamp, frame_id)
    # Each marker is a shallow copy of one of two templates (a Marker built from scratch costs ~40 us: it
    # makes a dozen default sub-messages); the shared header, pose, scale and lifetime are never changed,
    # each copy gets its own id, colour, points, position and text.
    outline_template = Marker(header=hdr, ns="footprints", type=Marker.LINE_STRIP, action=Marker.ADD,
                              pose=Pose(orientation=Quaternion(w=1.0)), lifetime=Duration())
    outline_template.scale.x = float(line_width)
    label_template = Marker(header=hdr, ns="labels", type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                            color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), lifetime=Duration())
    label_template.scale.z = float(text_height)
    markers = [Marker(header=hdr, action=Marker.DELETEALL)]
    for fp in footprints:
        cat = taxonomy.by_id[int(fp.category_id)]
        polygon = np.asarray(fp.polygon, dtype=np.float64).reshape(-1, 2)
        if len(polygon) < 2:
            continue
        outline = copy.copy(outline_template)
        outline.id = int(fp.id)
        outline.color = ColorRGBA(r=cat.color[0] / 255.0, g=cat.color[1] / 255.0, b=cat.color[2] / 255.0, a=1.0)
        outline.points = [Point(x=x, y=y, z=0.0) for x, y in np.vstack([polygon, polygon[:1]]).tolist()]
        cx, cy = (float(v) for v in np.asarray(fp.centroid, dtype=np.float64)[:2])
        label = copy.copy(label_template)
        label.id = int(fp.id)
        label.pose = Pose(position=Point(x=cx, y=cy, z=1.0), orientation=Quaternion(w=1.0))
        label.text = f"{cat.name} {int(fp.id)}"
        markers += [outline, label]
    return MarkerArray(markers=markers)


# -- diagnostics -------------------------------------------------------------------------------------------
def diagnostics(stamp: Time, name: str, level: str, message: str, values: Mapping[str, object],
                hardware_id: str = "") -> DiagnosticArray:
    """A DiagnosticArray with one status; ``level`` is ok / warn / error / stale, values become KeyValues."""
    if level not in LEVELS:
        raise ValueError(f"diagnostic level {level!r}: choose one of {', '.join(LEVELS)}")
    kv = [KeyValue(key=str(k), value=(f"{v:.3f}" if isinstance(v, float) else str(v))) for k, v in values.items()]
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id, values=kv)
    return DiagnosticArray(header=header(stamp, ""), status=[status])
