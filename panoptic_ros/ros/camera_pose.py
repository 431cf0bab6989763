"""Where panoptic_node takes the camera pose from: its ``camera.*`` parameters or TF.

TF: the node looks up ``output_frame <- camera frame`` at each image's stamp, where the camera frame is the
``camera_frame`` parameter if set, else the image's ``header.frame_id``. That frame is taken to be an *optical*
frame (REP 103 for images: z forward, x right, y down, usually ``*_optical_frame``) and converted to the camera
body pose by :func:`~panoptic_ros.geometry.pose_from_optical_transform`. A frame without its transform gets no
grid or markers (never a stale or guessed pose); the node reports why.

The TF buffer is ``tf2_ros``'s when it can be imported, else the built-in
:class:`~panoptic_ros.tf_buffer.TransformBuffer` that the node feeds from ``/tf`` and ``/tf_static`` itself
(:class:`BufferCameraPose`); :func:`choose_source` says which and why. Under ``auto`` a frame without a
transform falls back to the ``camera.*`` parameters (the node warns and its diagnostics say WARN).
"""
from __future__ import annotations

import importlib

from ..geometry import Pose, pose_from_optical_transform


class CameraPoseUnavailable(ValueError):
    """No usable camera pose for this frame (TF lookup failed, no frame id, a camera under the ground)."""


def choose_source(requested: str, import_module=importlib.import_module) -> tuple[str, str, object | None]:
    """(``"tf"`` (tf2_ros), ``"tf_builtin"`` (the built-in buffer) or ``"parameters"``, why, the tf2_ros module or
    None) for the parameter value ``requested``."""
    if requested == "parameters":
        return "parameters", "camera_pose_source is parameters", None
    if requested not in ("tf", "auto"):
        raise ValueError(f"camera_pose_source={requested!r}: choose one of auto, parameters, tf")
    try:
        tf2_ros = import_module("tf2_ros")
    except ImportError as exc:
        return "tf_builtin", (f"camera_pose_source is {requested}; tf2_ros cannot be imported ({exc}), so the node "
                              "subscribes /tf and /tf_static into its built-in buffer"), None
    return "tf", f"camera_pose_source is {requested} and tf2_ros is importable", tf2_ros


class ParameterCameraPose:
    """The fixed pose of the ``camera.*`` parameters."""

    source = "parameters"

    def __init__(self, pose: Pose):
        self.pose = pose

    def describe(self) -> str:
        p = self.pose
        return (f"camera pose from parameters camera.*: x {p.x:g}, y {p.y:g}, z {p.z:g} m, roll {p.roll:g}, "
                f"pitch {p.pitch:g}, yaw {p.yaw:g} rad")

    def pose_for(self, frame_id: str, stamp) -> Pose:
        return self.pose


class TfCameraPose:
    """The camera pose of each frame from a tf2 buffer.

    Args:
        buffer: a ``tf2_ros.Buffer`` or anything with ``lookup_transform(target_frame, source_frame, time,
            timeout)`` returning a ``geometry_msgs/TransformStamped`` (tests pass a fake).
        output_frame: the grid's frame (target of the lookup).
        timeout_s: seconds to wait for the transform.
        camera_frame: look up this frame instead of the images' header.frame_id (the ``camera_frame`` parameter).
    """

    source = "tf"

    def __init__(self, buffer, output_frame: str, timeout_s: float = 0.05, camera_frame: str = ""):
        if not output_frame:
            raise ValueError("output_frame must not be empty")
        self.buffer = buffer
        self.output_frame = output_frame
        self.timeout_s = float(timeout_s)
        self.camera_frame = camera_frame

    def describe(self) -> str:
        camera = self.camera_frame or "the image's header.frame_id"
        return (f"camera pose from TF: {self.output_frame} <- {camera} (taken as an optical frame: z forward, "
                f"x right, y down) at each image's stamp, waiting up to {self.timeout_s:g} s")

    def frame_of(self, frame_id: str) -> str:
        return self.camera_frame or frame_id

    def pose_for(self, frame_id: str, stamp) -> Pose:
        """The camera body pose in ``output_frame`` for an image of ``frame_id`` stamped ``stamp``
        (builtin_interfaces/Time). Raises :class:`CameraPoseUnavailable` saying why."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        source = self.frame_of(frame_id)
        if not source:
            raise CameraPoseUnavailable("the image has an empty header.frame_id and camera_frame is not set: "
                                        "no frame to look up in TF")
        try:
            tf = self.buffer.lookup_transform(self.output_frame, source, Time.from_msg(stamp),
                                              timeout=Duration(seconds=self.timeout_s))
        except Exception as exc:  # noqa: BLE001 - tf2 raises Lookup/Connectivity/Extrapolation/...; all mean "no pose"
            raise CameraPoseUnavailable(f"no transform {self.output_frame} <- {source} at "
                                        f"{stamp.sec}.{stamp.nanosec:09d} in TF ({type(exc).__name__}: {exc})") from None
        t, q = tf.transform.translation, tf.transform.rotation
        return camera_pose_of((t.x, t.y, t.z), (q.x, q.y, q.z, q.w), self.output_frame, source)


def camera_pose_of(translation, quaternion_xyzw, output_frame: str, source: str) -> Pose:
    """The camera body pose of TF's ``output_frame <- source`` (an optical frame); CameraPoseUnavailable for a
    non-rotation or a camera not above the ground plane."""
    try:
        pose = pose_from_optical_transform(translation, quaternion_xyzw)
    except ValueError as exc:
        raise CameraPoseUnavailable(f"transform {output_frame} <- {source}: {exc}") from None
    if not pose.z > 0:
        raise CameraPoseUnavailable(f"TF puts {source} at z = {pose.z:.3f} m in {output_frame}, not above "
                                    "its ground plane z = 0: cannot project to the grid")
    return pose


class BufferCameraPose(TfCameraPose):
    """The camera pose of each frame from the built-in :class:`~panoptic_ros.tf_buffer.TransformBuffer` (fed from
    /tf and /tf_static by :class:`~panoptic_ros.ros.tf_listener.TfListener`); no waiting: a transform that has
    not arrived by the time the frame is processed is missing."""

    source = "tf (built-in buffer)"

    def describe(self) -> str:
        camera = self.camera_frame or "the image's header.frame_id"
        return (f"camera pose from TF (built-in buffer of /tf and /tf_static): {self.output_frame} <- {camera} "
                "(taken as an optical frame: z forward, x right, y down) at each image's stamp")

    def pose_for(self, frame_id: str, stamp) -> Pose:
        from ..tf_buffer import TransformUnavailable

        source = self.frame_of(frame_id)
        if not source:
            raise CameraPoseUnavailable("the image has an empty header.frame_id and camera_frame is not set: "
                                        "no frame to look up in TF")
        try:
            t, q = self.buffer.lookup(self.output_frame, source, int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec))
        except TransformUnavailable as exc:
            raise CameraPoseUnavailable(f"no transform {self.output_frame} <- {source} at "
                                        f"{stamp.sec}.{stamp.nanosec:09d} in TF ({exc})") from None
        return camera_pose_of(t, q, self.output_frame, source)
