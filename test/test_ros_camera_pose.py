"""The node's camera pose sources (ros/camera_pose.py) without tf2_ros: TfCameraPose against a fake tf2 buffer
(duck-typed lookup_transform returning geometry_msgs/TransformStamped), the auto / tf / parameters choice.

Not covered here: the real tf2_ros Buffer / TransformListener (not installable from PyPI)."""
from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) is not installed")
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.duration import Duration  # noqa: E402

from panoptic_ros.geometry import CameraModel, Pose, optical_transform_from_pose  # noqa: E402
from panoptic_ros.ros.camera_pose import (CameraPoseUnavailable, ParameterCameraPose, TfCameraPose,  # noqa: E402
                                          choose_source)

STAMP = Time(sec=1_700_000_000, nanosec=5)


def transform_stamped(pose: Pose, parent="base_link", child="camera_optical_frame") -> TransformStamped:
    """What tf2 returns for lookup_transform(parent, child): the child (optical) frame's pose in the parent."""
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    (msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z), q = \
        optical_transform_from_pose(pose)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = q
    return msg


class LookupException(Exception):
    """Stands for tf2_ros.LookupException."""


class FakeBuffer:
    def __init__(self, transforms: dict | None = None):
        self.transforms = dict(transforms or {})
        self.calls = []

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        self.calls.append((target_frame, source_frame, time, timeout))
        if (target_frame, source_frame) not in self.transforms:
            raise LookupException(f'"{source_frame}" passed to lookupTransform argument source_frame does not exist')
        return self.transforms[(target_frame, source_frame)]


def test_tf_pose_equals_the_parameter_pose_for_random_poses():
    rng = np.random.default_rng(0)
    for _ in range(30):
        pose = Pose(*rng.uniform(-3, 3, 2), rng.uniform(0.3, 3), rng.uniform(-3, 3), rng.uniform(-1.5, 1.5),
                    rng.uniform(-3, 3))
        buffer = FakeBuffer({("base_link", "cam_optical_frame"): transform_stamped(pose, child="cam_optical_frame")})
        got = TfCameraPose(buffer, "base_link", 0.1).pose_for("cam_optical_frame", STAMP)
        a, b = CameraModel.from_fov(64, 48, 80, pose), CameraModel.from_fov(64, 48, 80, got)
        np.testing.assert_allclose(a.parent_from_optical(), b.parent_from_optical(), atol=1e-9)
        Ha, Hb = a.ground_homography(), b.ground_homography()
        np.testing.assert_allclose(Ha / np.linalg.norm(Ha), Hb / np.linalg.norm(Hb), atol=1e-9)
        target, source, time, timeout = buffer.calls[-1]
        assert (target, source) == ("base_link", "cam_optical_frame")
        assert time.nanoseconds == 1_700_000_000 * 10**9 + 5 and timeout == Duration(seconds=0.1)


def test_camera_frame_overrides_the_image_frame_id():
    pose = Pose(1.0, 0.0, 1.2, 0.0, 0.05, 0.0)
    buffer = FakeBuffer({("odom", "front_optical"): transform_stamped(pose, "odom", "front_optical")})
    source = TfCameraPose(buffer, "odom", camera_frame="front_optical")
    assert source.pose_for("wrong_frame_from_driver", STAMP).z == pytest.approx(1.2)
    assert buffer.calls[-1][1] == "front_optical"


def test_missing_transform_says_which_and_why():
    source = TfCameraPose(FakeBuffer(), "base_link")
    with pytest.raises(CameraPoseUnavailable, match=r"no transform base_link <- camera_optical_frame at "
                                                    r"1700000000.000000005 in TF \(LookupException: .*does not exist"):
        source.pose_for("camera_optical_frame", STAMP)


def test_empty_frame_id_is_unavailable():
    with pytest.raises(CameraPoseUnavailable, match="empty header.frame_id"):
        TfCameraPose(FakeBuffer(), "base_link").pose_for("", STAMP)


def test_camera_below_the_ground_is_unavailable():
    pose = Pose(0.0, 0.0, -0.5, 0.0, 0.0, 0.0)
    buffer = FakeBuffer({("base_link", "c_optical"): transform_stamped(pose, child="c_optical")})
    with pytest.raises(CameraPoseUnavailable, match="z = -0.500 m in base_link, not above"):
        TfCameraPose(buffer, "base_link").pose_for("c_optical", STAMP)


def test_broken_quaternion_is_unavailable():
    msg = transform_stamped(Pose())
    msg.transform.rotation.w = 0.0
    msg.transform.rotation.x = msg.transform.rotation.y = msg.transform.rotation.z = 0.0
    buffer = FakeBuffer({("base_link", "camera_optical_frame"): msg})
    with pytest.raises(CameraPoseUnavailable, match="not a rotation"):
        TfCameraPose(buffer, "base_link").pose_for("camera_optical_frame", STAMP)


def test_tf_uses_tf2_ros_when_importable_and_the_builtin_buffer_otherwise():
    fake = types.ModuleType("tf2_ros")

    def importable(name):
        assert name == "tf2_ros"
        return fake

    def missing(name):
        raise ModuleNotFoundError("No module named 'tf2_ros'")

    assert choose_source("auto", importable) == ("tf", "camera_pose_source is auto and tf2_ros is importable", fake)
    for requested in ("auto", "tf"):
        source, why, module = choose_source(requested, missing)
        assert source == "tf_builtin" and module is None and "tf2_ros cannot be imported" in why
        assert "built-in buffer" in why
    assert choose_source("tf", importable)[0] == "tf"
    assert choose_source("parameters", importable)[0] == "parameters"
    assert choose_source("parameters", missing)[0] == "parameters"
    with pytest.raises(ValueError, match="choose one of"):
        choose_source("gps", importable)


def test_real_tf2_ros_absent_here_means_the_builtin_buffer():
    """This venv has no tf2_ros (not on PyPI): auto uses the built-in TF buffer, saying why."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tf2_ros is installed here; this test checks the fallback without it")
    source, why, _ = choose_source("auto")
    assert source == "tf_builtin" and "No module named 'tf2_ros'" in why


def test_builtin_buffer_source_gives_the_pose_tf_holds():
    from panoptic_ros.geometry import optical_transform_from_pose
    from panoptic_ros.ros.camera_pose import BufferCameraPose
    from panoptic_ros.tf_buffer import TransformBuffer

    pose = Pose(0.8, -0.2, 1.9, 0.02, 0.07, -0.04)
    buffer = TransformBuffer()
    t, q = optical_transform_from_pose(pose)
    buffer.set_transform("base_link", "camera_optical_frame", 0, t, q, static=True)
    got = BufferCameraPose(buffer, "base_link").pose_for("camera_optical_frame", STAMP)
    np.testing.assert_allclose([got.x, got.y, got.z, got.roll, got.pitch, got.yaw],
                               [pose.x, pose.y, pose.z, pose.roll, pose.pitch, pose.yaw], atol=1e-12)
    with pytest.raises(CameraPoseUnavailable, match="does not exist"):
        BufferCameraPose(buffer, "base_link").pose_for("other_optical_frame", STAMP)


def test_parameter_source_returns_its_pose():
    pose = Pose(1.0, 2.0, 3.0, 0.1, 0.2, 0.3)
    source = ParameterCameraPose(pose)
    assert source.pose_for("anything", STAMP) is pose and "x 1, y 2, z 3 m" in source.describe()
