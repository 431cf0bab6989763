"""FramePipeline: the node's per-frame work, without DDS: decode -> predict -> ground projection -> messages.

One place for the logic that :class:`~panoptic_ros.node.PanopticNode` runs on every frame and that
``panoptic-eval bag --write-bag`` runs offline over a recording, so both produce the same messages.

    pipeline = FramePipeline.from_config(predictor, NodeConfig.from_values({}))
    out = pipeline.process(image_msg, camera_info_msg, {"panoptic", "grid"})
    out.messages["panoptic"]  # panoptic_ros/msg/PanopticSegmentation, stamped like image_msg
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage

from ..bev import GroundProjector
from ..ego_mask import apply_ego_mask, load_ego_mask, mask_at
from ..geometry import CameraModel, GridSpec, Pose
from ..ground_classes import ground_classes
from ..panoptic import PanopticResult
from . import messages
from .image_conversion import compressed_to_rgb, image_to_rgb

# The node's outputs, in the order it builds and publishes them (topic ~/<name>).
OUTPUTS = ("panoptic_ids", "panoptic", "semantic", "overlay", "grid", "markers")
STAGES = ("decode", "preprocess", "network", "head", "postprocess", "bev", "messages")  # FrameOutput.timings_ms


class BadImage(ValueError):
    """The image message cannot be read (malformed, unsupported encoding, undecodable compressed data)."""


@dataclass
class FrameOutput:
    """What one frame produced.

    ``events`` are (level, key, text) for the caller to log: ``info``; ``warning`` (``key`` names the
    condition, so a caller can warn once per key); ``error`` (this frame's grid and markers were not
    built, the other outputs were).
    """

    messages: dict = field(default_factory=dict)  # output name -> ROS message, in OUTPUTS order
    timings_ms: dict = field(default_factory=dict)  # decode, preprocess, network, head, postprocess, bev, messages
    result: PanopticResult | None = None
    events: list = field(default_factory=list)

    @property
    def processing_ms(self) -> float:
        """Decode to built messages, in milliseconds (the sum of the pipeline's stages)."""
        return float(sum(self.timings_ms.get(k, 0.0) for k in STAGES))


class FramePipeline:
    """The per-frame work of panoptic_node.

    Args:
        predictor: a :class:`~panoptic_ros.predictor.Predictor` (anything with ``predict(rgb)`` and ``taxonomy``).
        camera_pose: the camera body's pose in ``grid.frame_id`` (the node's ``camera.*`` parameters).
        grid: layout of the occupancy grid; its ``frame_id`` is the grid's and the markers' frame.
        camera_frame: frame_id of the image outputs; empty = the input image's frame_id.
        free_classes, obstacle_classes: stuff class names for :class:`~panoptic_ros.bev.GroundProjector`; None or
            empty = from the model's taxonomy (:func:`~panoptic_ros.ground_classes.ground_classes`).
        max_range: passed to the GroundProjector.
        camera_info_topic: named in the warning about a missing CameraInfo.
        footprint_depth: class name -> metres (:class:`~panoptic_ros.bev.GroundProjector`); names the model
            does not have are ignored; None = the projector's defaults.
        ego_mask: (H, W) bool, True = the vehicle's body: void in every output (resized to other image sizes).
    """

    def __init__(self, predictor, camera_pose: Pose, grid: GridSpec, camera_frame: str = "",
                 free_classes: Iterable[str] | None = None, obstacle_classes: Iterable[str] | None = None,
                 max_range: float | None = None, camera_info_topic: str = "camera_info",
                 footprint_depth: Mapping[str, float] | None = None, ego_mask: np.ndarray | None = None):
        self.predictor = predictor
        self.taxonomy = predictor.taxonomy
        self.camera_pose = camera_pose
        self.grid = grid
        self.camera_frame = camera_frame
        # Check class names now: found only at the first projected frame, a typo would fail every frame.
        unknown = [c for c in [*(free_classes or ()), *(obstacle_classes or ())] if c not in self.taxonomy.by_name]
        if unknown:
            raise ValueError(f"free_classes / obstacle_classes name {unknown}, not classes of the model "
                             f"({', '.join(self.taxonomy.names())})")
        # Empty lists: the model's own classes by name (Cityscapes, COCO-panoptic; see ground_classes).
        self.free_classes, self.obstacle_classes = ground_classes(self.taxonomy, free_classes or (),
                                                                  obstacle_classes or ())
        self.projector_options = {"free_classes": self.free_classes, "obstacle_classes": self.obstacle_classes}
        if max_range is not None:
            self.projector_options["max_range"] = max_range
        if footprint_depth is not None:
            self.projector_options["footprint_depth"] = {n: float(d) for n, d in footprint_depth.items()
                                                         if n in self.taxonomy.by_name}
        self.ego_mask = None if ego_mask is None else np.asarray(ego_mask, dtype=bool)
        self.camera_info_topic = camera_info_topic
        self._projector: GroundProjector | None = None
        self._projector_key = None

    @classmethod
    def from_config(cls, predictor, config, camera_info_topic: str = "camera_info") -> "FramePipeline":
        """The pipeline of a node running with ``config`` (a :class:`~panoptic_ros.ros.params.NodeConfig`)."""
        mask = load_ego_mask(config.ego_mask) if config.ego_mask else None
        return cls(predictor, config.camera_pose, config.grid, config.camera_frame, config.free_classes,
                   config.obstacle_classes, config.max_range, camera_info_topic, dict(config.footprint_depths), mask)

    def process(self, image_msg, camera_info: CameraInfo | None, wanted: Iterable[str],
                camera_pose: Pose | None = None) -> FrameOutput:
        """Run one frame; build only the ``wanted`` outputs (names from :data:`OUTPUTS`).

        ``image_msg`` is a ``sensor_msgs/Image`` or ``CompressedImage``; ``camera_pose`` is this frame's camera
        pose in ``grid.frame_id`` (e.g. from TF), None = the pipeline's ``camera_pose``. Raises :class:`BadImage`
        (a ValueError) when it cannot be read, ValueError for unknown output names.
        """
        wanted = set(wanted)
        unknown = wanted - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; the pipeline builds {', '.join(OUTPUTS)}")
        out = FrameOutput()
        t0 = time.perf_counter()
        try:
            rgb = compressed_to_rgb(image_msg) if isinstance(image_msg, CompressedImage) else image_to_rgb(image_msg)
        except ValueError as exc:
            raise BadImage(f"cannot read image: {exc}") from None
        t_decoded = time.perf_counter()
        result = self.predictor.predict(rgb)
        if self.ego_mask is not None:
            if self.ego_mask.shape != rgb.shape[:2]:
                out.events.append(("warning", "ego_mask_size", f"ego_mask is {self.ego_mask.shape[1]}x"
                                   f"{self.ego_mask.shape[0]}, the images {rgb.shape[1]}x{rgb.shape[0]}: resized "
                                   "with nearest neighbour"))
            result = apply_ego_mask(result, mask_at(self.ego_mask, *rgb.shape[:2]), self.taxonomy)
        out.result = result
        t_predicted = time.perf_counter()

        stamp = image_msg.header.stamp
        cam_hdr = messages.header(stamp, self.camera_frame or image_msg.header.frame_id)
        if not cam_hdr.frame_id:
            out.events.append(("warning", "frame_id", "input images have an empty header.frame_id and camera_frame "
                                                      "is not set: image outputs will have an empty frame_id too"))
        bev = None
        t_bev = t_predicted
        if wanted & {"grid", "markers"}:
            projector = self.projector_for(camera_info, rgb.shape[1], rgb.shape[0], out.events, camera_pose)
            if projector is not None:
                bev = projector.project(result.panoptic)
            t_bev = time.perf_counter()

        built = out.messages
        if wanted & {"panoptic_ids", "panoptic"}:
            ids_image = messages.panoptic_ids_image(result.panoptic, cam_hdr)
            if "panoptic_ids" in wanted:
                built["panoptic_ids"] = ids_image
            if "panoptic" in wanted:
                built["panoptic"] = messages.panoptic_segmentation(result, self.taxonomy, cam_hdr, ids_image)
        if "semantic" in wanted:
            built["semantic"] = messages.semantic_image(result.semantic, cam_hdr)
        if "overlay" in wanted:
            built["overlay"] = messages.overlay_image(result.panoptic, self.taxonomy, rgb, cam_hdr)
        if bev is not None and "grid" in wanted:
            built["grid"] = messages.bev_occupancy_grid(bev, stamp, self.grid.frame_id)
        if bev is not None and "markers" in wanted:
            built["markers"] = messages.footprint_markers(bev.footprints, self.taxonomy, stamp, self.grid.frame_id)
        t_end = time.perf_counter()
        out.timings_ms = dict(result.timings_ms)
        out.timings_ms.update(decode=1e3 * (t_decoded - t0), bev=1e3 * (t_bev - t_predicted),
                              messages=1e3 * (t_end - t_bev))
        return out

    def projector_for(self, info: CameraInfo | None, width: int, height: int,
                      events: list | None = None, camera_pose: Pose | None = None) -> GroundProjector | None:
        """The ground projector for ``info`` and ``camera_pose`` (default: the pipeline's; rebuilt only when the
        camera changes); None (and an event explaining why) when there is no usable CameraInfo for a ``width`` x
        ``height`` image."""
        events = events if events is not None else []
        pose = self.camera_pose if camera_pose is None else camera_pose
        if info is None:
            events.append(("warning", "no_info", f"no CameraInfo received on {self.camera_info_topic} yet: "
                                                 "~/grid and ~/markers wait for it"))
            return None
        key = (info.width, info.height, tuple(info.k), tuple(info.d), info.distortion_model, info.binning_x,
               info.binning_y, info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height,
               info.header.frame_id, width, height, pose)
        if key == self._projector_key:
            return self._projector
        problem = None
        roi = (info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height)
        try:
            camera = CameraModel.from_camera_info(
                info.width, info.height, info.k, info.d, info.binning_x, info.binning_y, roi,
                pose, frame_id=info.header.frame_id or "camera_optical_frame",
                parent_frame=self.grid.frame_id, distortion_model=info.distortion_model)
            if (camera.width, camera.height) != (width, height):
                problem = (f"CameraInfo describes a {camera.width}x{camera.height} image but the images are "
                           f"{width}x{height}")
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            events.append(("error", "projection", f"cannot project to the grid: {problem}"))
            return None
        t0 = time.perf_counter()
        self._projector = GroundProjector(camera, self.grid, self.taxonomy, **self.projector_options)
        self._projector_key = key
        events.append(("info", "projector", f"ground lookup for a {width}x{height} camera built in "
                                            f"{1e3 * (time.perf_counter() - t0):.0f} ms"))
        return self._projector


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


