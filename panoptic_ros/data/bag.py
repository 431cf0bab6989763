"""rosbag2 drive recordings (sqlite3 or mcap) written and read with ``rosbags``, no ROS install needed.

A drive bag holds, per frame (header stamp = ``Frame.stamp_ns``, also the log time):

=========================  ==========================  ==================================================
topic                      type                        content
=========================  ==========================  ==================================================
/camera/image_raw          sensor_msgs/Image           rgb8, frame ``camera_optical_frame``
/camera/camera_info        sensor_msgs/CameraInfo      K (ROS pixel centres), D, R = I, P = [K | 0]
/ground_truth/panoptic     sensor_msgs/Image           32SC1 panoptic ids (:mod:`panoptic_ros.panoptic`)
/ground_truth/semantic     sensor_msgs/Image           mono8 train ids, 255 = void
/ground_truth/segments     std_msgs/String             JSON: stamp_ns, frame_id, segments_info, categories
/ground_truth/grid         nav_msgs/OccupancyGrid      from BevTruth, frame ``base_link``
=========================  ==========================  ==================================================

plus ``/tf_static`` (``base_link`` -> camera optical frame, transient-local) whenever the camera pose changes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from ..geometry import (BODY_FROM_OPTICAL, CameraModel, GridSpec, Pose, pose_from_body_rotation,
                        quaternion_from_rotation, rotation_from_quaternion)
from ..imaging import fields_to_image, image_to_fields, to_rgb
from ..panoptic import Segment
from ..taxonomy import Taxonomy
from .frame import BevTruth, Frame

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
TF_STATIC_TOPIC = "/tf_static"
PANOPTIC_TOPIC = "/ground_truth/panoptic"
SEMANTIC_TOPIC = "/ground_truth/semantic"
SEGMENTS_TOPIC = "/ground_truth/segments"
GRID_TOPIC = "/ground_truth/grid"

T_IMAGE, T_COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
T_INFO, T_TF, T_STRING, T_GRID = ("sensor_msgs/msg/CameraInfo", "tf2_msgs/msg/TFMessage", "std_msgs/msg/String",
                                  "nav_msgs/msg/OccupancyGrid")

_ZERO = QosTime(0, 0)
LATCHED_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, _ZERO, _ZERO,
                  QosLiveliness.AUTOMATIC, _ZERO, False)
SENSOR_QOS = Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE, _ZERO, _ZERO,
                 QosLiveliness.AUTOMATIC, _ZERO, False)


def typestore():
    """The newest ROS 2 message store this rosbags version ships (Kilted or later)."""
    for name in ("ROS2_LYRICAL", "ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    return get_typestore(Stores.LATEST)


def occupancy_values(bev: BevTruth) -> np.ndarray:
    """(rows, cols) int8 OccupancyGrid values of the truth: 100 occupied, 0 free, -1 not visible.

    Visibility comes first: a cell the camera cannot see is unknown even if an object stands on it, so
    the grid is what a perfect camera-only perception could publish.
    """
    out = np.where(bev.occupied, 100, 0).astype(np.int8)
    out[~bev.visible] = -1
    return out


# -- writer ------------------------------------------------------------------------------------------------------
class _MessageFactory:
    def __init__(self, store):
        self.store = store
        self.t = store.types

    def header(self, stamp_ns: int, frame_id: str):
        stamp = self.t["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000),
                                                        nanosec=int(stamp_ns % 1_000_000_000))
        return self.t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
        f = image_to_fields(array, encoding)
        return self.t[T_IMAGE](header=self.header(stamp_ns, frame_id), height=f["height"], width=f["width"],
                               encoding=f["encoding"], is_bigendian=f["is_bigendian"], step=f["step"],
                               data=np.frombuffer(f["data"], dtype=np.uint8))

    def camera_info(self, cam: CameraModel, stamp_ns: int):
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False)
        return self.t[T_INFO](header=self.header(stamp_ns, cam.frame_id), **cam.camera_info_fields(),
                              binning_x=0, binning_y=0, roi=roi)

    def tf_static(self, cam: CameraModel, stamp_ns: int):
        T = cam.parent_from_optical()
        qx, qy, qz, qw = quaternion_from_rotation(T[:3, :3])
        transform = self.t["geometry_msgs/msg/Transform"](
            translation=self.t["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
            rotation=self.t["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
        stamped = self.t["geometry_msgs/msg/TransformStamped"](header=self.header(stamp_ns, cam.parent_frame),
                                                              child_frame_id=cam.frame_id, transform=transform)
        return self.t[T_TF](transforms=[stamped])

    def string(self, text: str):
        return self.t[T_STRING](data=text)

    def grid(self, bev: BevTruth, stamp_ns: int):
        spec = bev.grid
        values = occupancy_values(bev)
        if values.shape != spec.shape:
            raise ValueError(f"BevTruth arrays {values.shape} do not match its grid {spec.shape}")
        origin = self.t["geometry_msgs/msg/Pose"](
            position=self.t["geometry_msgs/msg/Point"](x=spec.x_min, y=spec.y_min, z=0.0),
            orientation=self.t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        header = self.header(stamp_ns, spec.frame_id)
        info = self.t["nav_msgs/msg/MapMetaData"](map_load_time=header.stamp, resolution=spec.resolution,
                                                  width=spec.width, height=spec.height, origin=origin)
        return self.t[T_GRID](header=header, info=info, data=values.ravel())


def write_drive_bag(path: str | Path, frames: Iterable[Frame], fps: float, storage: str = "mcap",
                    taxonomy: Taxonomy | None = None, progress: bool = False,
                    total: int | None = None) -> Path:
    """Record ``frames`` (with their ground truth) as a rosbag2 at ``path`` (a new directory).

    ``fps`` is the recording's nominal frame rate (stored in the bag's custom metadata); time comes from
    each frame's ``stamp_ns``, which must increase strictly. ``taxonomy`` (default Cityscapes) gives the
    semantic train ids and the categories in ``/ground_truth/segments``.
    """
    path = Path(path)
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    taxonomy = taxonomy or Taxonomy.cityscapes()
    categories = taxonomy.to_coco_categories()
    store = typestore()
    make = _MessageFactory(store)
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugins[storage])
    writer.set_custom_data("panoptic_ros.fps", repr(float(fps)))
    writer.set_custom_data("panoptic_ros.taxonomy", taxonomy.name)
    conns: dict = {}

    def write(topic: str, msgtype: str, msg, stamp_ns: int, qos: Qos = SENSOR_QOS) -> None:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=[qos])
        writer.write(conns[topic], stamp_ns, store.serialize_cdr(msg, msgtype))

    with writer:
        last_stamp, last_tf = -1, None
        for frame in tqdm(frames, desc="bag", unit="frame", total=total, disable=not progress):
            t = int(frame.stamp_ns)
            if t <= last_stamp:
                raise ValueError(f"frame {frame.name!r}: stamp_ns {t} does not increase (previous {last_stamp})")
            last_stamp = t
            cam = frame.camera
            optical = cam.frame_id if cam is not None else "camera_optical_frame"
            if cam is not None:
                if (cam.parent_frame, cam.frame_id, cam.pose) != last_tf:
                    write(TF_STATIC_TOPIC, T_TF, make.tf_static(cam, t), t, LATCHED_QOS)
                    last_tf = (cam.parent_frame, cam.frame_id, cam.pose)
                if (cam.width, cam.height) != (frame.image.shape[1], frame.image.shape[0]):
                    raise ValueError(f"frame {frame.name!r}: camera is {cam.width}x{cam.height}, image "
                                     f"{frame.image.shape[1]}x{frame.image.shape[0]}")
                write(CAMERA_INFO_TOPIC, T_INFO, make.camera_info(cam, t), t)
            write(IMAGE_TOPIC, T_IMAGE, make.image(frame.image, "rgb8", t, optical), t)
            if frame.panoptic is not None:
                write(PANOPTIC_TOPIC, T_IMAGE, make.image(frame.panoptic.astype(np.int32), "32SC1", t, optical), t)
                write(SEMANTIC_TOPIC, T_IMAGE, make.image(frame.semantic(taxonomy), "mono8", t, optical), t)
                text = json.dumps({"stamp_ns": t, "frame_id": optical,
                                   "segments_info": [s.to_coco() for s in frame.segments],
                                   "categories": categories})
                write(SEGMENTS_TOPIC, T_STRING, make.string(text), t)
            if frame.bev is not None:
                write(GRID_TOPIC, T_GRID, make.grid(frame.bev, t), t)
    return path


# -- readers -----------------------------------------------------------------------------------------------------
class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    timestamp_ns: int  # log time
    data: bytes  # serialized CDR


class TopicInfo(NamedTuple):
    msgtype: str
    count: int
    latched: bool  # offered transient-local durability (e.g. /tf_static)


def bag_topics(path: str | Path) -> dict[str, TopicInfo]:
    """Every topic of a bag with its type, message count and whether it was recorded as latched."""
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        out = {}
        for conn in reader.connections:
            qos = getattr(conn.ext, "offered_qos_profiles", []) or []
            latched = any(q.durability == QosDurability.TRANSIENT_LOCAL for q in qos if isinstance(q, Qos))
            prev = out.get(conn.topic)
            out[conn.topic] = TopicInfo(conn.msgtype, conn.msgcount + (prev.count if prev else 0),
                                        latched or bool(prev and prev.latched))
        return out


def read_raw(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
    """(topic, msgtype, log time, CDR bytes) of every message (of ``topics``) in log-time order."""
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, int(timestamp), bytes(raw))


@dataclass
class BagFrame:
    """One camera frame read back from a bag, with whatever ground truth the bag holds for its stamp."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp_ns: int
    frame_id: str
    camera: CameraModel | None = None  # from CameraInfo, posed by /tf_static when it reaches the camera frame
    camera_pose_from_tf: bool = False
    panoptic: np.ndarray | None = None  # (H, W) int32
    semantic: np.ndarray | None = None  # (H, W) uint8 train ids
    segments: list[Segment] | None = None
    categories: list[dict] | None = None
    grid: np.ndarray | None = None  # (rows, cols) int8 occupancy values
    grid_spec: GridSpec | None = None
    encoding: str = "rgb8"  # of the recorded image

    def taxonomy(self) -> Taxonomy | None:
        return Taxonomy.from_coco_categories(self.categories, "bag") if self.categories else None


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _decode_image(msg, msgtype: str) -> tuple[np.ndarray, str]:
    if msgtype == T_COMPRESSED:
        import cv2

        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode CompressedImage of format {msg.format!r}")
        return np.ascontiguousarray(bgr[..., ::-1]), msg.format
    array = fields_to_image(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)
    return array, msg.encoding


def _camera_from_info(msg, pose: Pose | None, parent: str) -> CameraModel:
    roi = msg.roi
    return CameraModel.from_camera_info(
        msg.width, msg.height, msg.k, msg.d, msg.binning_x, msg.binning_y,
        (roi.x_offset, roi.y_offset, roi.width, roi.height), pose=pose or Pose(),
        frame_id=msg.header.frame_id, parent_frame=parent, distortion_model=msg.distortion_model)


class _StaticTf:
    """The latest static transforms, chained from a camera frame up to ``target`` (e.g. base_link)."""

    def __init__(self, target: str):
        self.target = target
        self.edges: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, 4x4 parent_from_child)

    def add(self, msg) -> None:
        for tf in msg.transforms:
            T = np.eye(4)
            r, p = tf.transform.rotation, tf.transform.translation
            T[:3, :3] = rotation_from_quaternion(r.x, r.y, r.z, r.w)
            T[:3, 3] = (p.x, p.y, p.z)
            self.edges[tf.child_frame_id] = (tf.header.frame_id, T)

    def pose_of(self, frame: str) -> Pose | None:
        T, seen = np.eye(4), set()
        while frame != self.target:
            if frame in seen or frame not in self.edges:
                return None
            seen.add(frame)
            frame, step = self.edges[frame]
            T = step @ T
        return pose_from_body_rotation(T[:3, :3] @ BODY_FROM_OPTICAL.T, T[:3, 3])  # T: target <- optical


def read_bag(path: str | Path, image_topic: str = IMAGE_TOPIC, camera_info_topic: str = CAMERA_INFO_TOPIC,
             base_frame: str = "base_link", max_wait_ns: int = 2_000_000_000) -> Iterator[BagFrame]:
    """The camera frames of a bag (ours or any recording with an image topic), in log-time order.

    Camera info and ground truth are joined to an image by header stamp; an image is handed out once every
    per-frame topic of the bag has arrived for its stamp, or ``max_wait_ns`` of log time later.
    ``image_topic`` may carry ``sensor_msgs/Image`` (any colour encoding) or ``CompressedImage``.
    """
    path = Path(path)
    with AnyReader([path], default_typestore=typestore()) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        if image_topic not in by_topic:
            raise ValueError(f"{path} has no topic {image_topic}; it has {sorted(by_topic)}")
        roles = {image_topic: "image", camera_info_topic: "info", PANOPTIC_TOPIC: "panoptic",
                 SEMANTIC_TOPIC: "semantic", SEGMENTS_TOPIC: "segments", GRID_TOPIC: "grid"}
        per_frame = {t for t in roles if t in by_topic}
        conns = [c for c in reader.connections if c.topic in per_frame or c.topic == TF_STATIC_TOPIC]
        tf = _StaticTf(base_frame)
        pending: dict[int, dict] = {}

        def build(stamp: int, parts: dict) -> BagFrame:
            msg, msgtype = parts["image"]
            array, encoding = _decode_image(msg, msgtype)
            rgb = array if msgtype == T_COMPRESSED else to_rgb(array, encoding)
            frame_id = msg.header.frame_id
            out = BagFrame(rgb, stamp, frame_id, encoding=encoding)
            if "info" in parts:
                info = parts["info"][0]
                pose = tf.pose_of(info.header.frame_id or frame_id)
                out.camera = _camera_from_info(info, pose, base_frame)
                out.camera_pose_from_tf = pose is not None
            if "panoptic" in parts:
                m = parts["panoptic"][0]
                out.panoptic = fields_to_image(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data)
            if "semantic" in parts:
                m = parts["semantic"][0]
                out.semantic = fields_to_image(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data)
            if "segments" in parts:
                data = json.loads(parts["segments"][0].data)
                out.categories = data.get("categories")
                thing = {c["id"]: bool(c["isthing"]) for c in out.categories or []}
                out.segments = [Segment(s["id"], s["category_id"], thing.get(s["category_id"], False), s["area"],
                                        tuple(s["bbox"]), 1.0, s.get("iscrowd", 0)) for s in data["segments_info"]]
            if "grid" in parts:
                g = parts["grid"][0]
                res, o = float(g.info.resolution), g.info.origin.position
                out.grid = np.asarray(g.data, dtype=np.int8).reshape(g.info.height, g.info.width)
                out.grid_spec = GridSpec(res, o.x, o.x + g.info.width * res, o.y, o.y + g.info.height * res,
                                         g.header.frame_id)
            return out

        for conn, log_time, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == TF_STATIC_TOPIC:
                tf.add(msg)
                continue
            stamp = (int(json.loads(msg.data).get("stamp_ns", log_time)) if conn.topic == SEGMENTS_TOPIC
                     else _stamp_ns(msg.header))
            parts = pending.setdefault(stamp, {"log": log_time})
            parts[roles[conn.topic]] = (msg, conn.msgtype)
            if len(parts) - 1 == len(per_frame):
                yield build(stamp, pending.pop(stamp))
            for old in sorted(s for s, p in pending.items() if log_time - p["log"] > max_wait_ns):
                parts = pending.pop(old)
                if "image" in parts:
                    yield build(old, parts)
        for stamp in sorted(pending):
            if "image" in pending[stamp]:
                yield build(stamp, pending[stamp])
