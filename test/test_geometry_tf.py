"""Camera pose <-> the TF transform of its optical frame (geometry.py, no ROS): the TF path must give the very
camera the camera.* parameters give, for any pose."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.geometry import (BODY_FROM_OPTICAL, CameraModel, Pose, optical_transform_from_pose,
                                   pose_from_optical_transform, quaternion_from_rotation, rotation_from_quaternion)


def random_poses(n: int, seed: int = 0) -> list[Pose]:
    rng = np.random.default_rng(seed)
    return [Pose(*rng.uniform(-5, 5, 2), rng.uniform(0.2, 4.0), rng.uniform(-np.pi, np.pi),
                 rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)) for _ in range(n)]


def assert_same_camera(a: Pose, b: Pose, seed: int = 0) -> None:
    """Two poses describe one camera: same rotation and position, same ground homography, same pixels."""
    np.testing.assert_allclose(a.rotation(), b.rotation(), atol=1e-9)
    np.testing.assert_allclose(a.translation(), b.translation(), atol=1e-12)
    ca, cb = CameraModel.from_fov(320, 240, 90.0, a), CameraModel.from_fov(320, 240, 90.0, b)
    Ha, Hb = ca.ground_homography(), cb.ground_homography()
    np.testing.assert_allclose(Ha / np.linalg.norm(Ha), Hb / np.linalg.norm(Hb), atol=1e-9)
    points = np.random.default_rng(seed).uniform(-20, 20, (200, 3))
    (uv_a, z_a), (uv_b, z_b) = ca.project(points), cb.project(points)
    np.testing.assert_allclose(z_a, z_b, atol=1e-9)
    front = z_a > 0.1
    assert front.any()
    np.testing.assert_allclose(uv_a[front], uv_b[front], rtol=1e-7, atol=1e-6)


def test_level_camera_matches_the_standard_optical_frame_quaternion():
    """The usual static transform camera_link -> camera_optical_frame is rpy (-pi/2, 0, -pi/2), i.e. the
    quaternion (-0.5, 0.5, -0.5, 0.5); a level camera's optical frame must carry exactly that rotation."""
    t, q = optical_transform_from_pose(Pose(1.0, 2.0, 1.5, 0.0, 0.0, 0.0))
    assert t == (1.0, 2.0, 1.5)
    np.testing.assert_allclose(q, (-0.5, 0.5, -0.5, 0.5), atol=1e-12)
    assert pose_from_optical_transform(t, (-0.5, 0.5, -0.5, 0.5)) == Pose(1.0, 2.0, 1.5, 0.0, 0.0, 0.0)


def test_pitch_down_tilts_the_optical_axis_toward_the_ground():
    """Optical z axis = viewing direction. Positive pitch looks down: its z component in base_link is negative."""
    pitch = 0.3
    _, q = optical_transform_from_pose(Pose(0, 0, 1.5, 0, pitch, 0))
    view = rotation_from_quaternion(*q)[:, 2]
    np.testing.assert_allclose(view, [np.cos(pitch), 0.0, -np.sin(pitch)], atol=1e-12)
    x_right = rotation_from_quaternion(*q)[:, 0]
    np.testing.assert_allclose(x_right, [0.0, -1.0, 0.0], atol=1e-12)  # image x = right = -y of base_link


@pytest.mark.parametrize("seed", range(4))
def test_random_poses_round_trip_through_the_tf_transform(seed):
    for pose in random_poses(50, seed):
        t, q = optical_transform_from_pose(pose)
        assert abs(np.linalg.norm(q) - 1.0) < 1e-12 and q[3] >= 0
        back = pose_from_optical_transform(t, q)
        np.testing.assert_allclose([back.roll, back.pitch, back.yaw], [pose.roll, pose.pitch, pose.yaw], atol=1e-9)
        assert_same_camera(pose, back, seed)


def test_transform_as_tf_would_compute_it_gives_the_parameter_camera():
    """Independent of optical_transform_from_pose: build TF's parent <- optical rotation by chaining the
    body rotation (rpy) and the standard body -> optical rotation, as robot_state_publisher would."""
    for pose in random_poses(30, 7):
        R_parent_optical = pose.rotation() @ rotation_from_quaternion(-0.5, 0.5, -0.5, 0.5)
        q = quaternion_from_rotation(R_parent_optical)
        back = pose_from_optical_transform((pose.x, pose.y, pose.z), q)
        assert_same_camera(pose, back)


def test_negated_quaternion_is_the_same_pose():
    pose = random_poses(1, 3)[0]
    t, q = optical_transform_from_pose(pose)
    assert_same_camera(pose_from_optical_transform(t, [-v for v in q]), pose)


@pytest.mark.parametrize("pitch", [np.pi / 2, -np.pi / 2])
def test_straight_down_or_up_keeps_the_camera(pitch):
    """At pitch +-90 degrees roll and yaw mix; the recovered pose must still be the same camera."""
    pose = Pose(0.5, -0.2, 2.0, 0.4, pitch, -1.1)
    back = pose_from_optical_transform(*optical_transform_from_pose(pose))
    assert abs(back.pitch - pitch) < 1e-6 and back.roll == 0.0
    np.testing.assert_allclose(back.rotation(), pose.rotation(), atol=1e-6)


def test_quaternion_helpers_agree():
    rng = np.random.default_rng(5)
    for _ in range(100):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = rotation_from_quaternion(*q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation_from_quaternion(*quaternion_from_rotation(R)), R, atol=1e-12)
    np.testing.assert_allclose(quaternion_from_rotation(BODY_FROM_OPTICAL), (-0.5, 0.5, -0.5, 0.5), atol=1e-12)


@pytest.mark.parametrize("q,needle", [((0, 0, 0, 0), "norm 0"), ((0, 0, 0, 2), "norm 2"),
                                      ((float("nan"), 0, 0, 1), "not a rotation")])
def test_invalid_quaternion_is_a_value_error(q, needle):
    with pytest.raises(ValueError, match=needle):
        pose_from_optical_transform((0, 0, 1), q)


def test_slightly_unnormalised_quaternion_is_accepted():
    q = np.array([-0.5, 0.5, -0.5, 0.5]) * (1 + 5e-4)
    assert pose_from_optical_transform((0, 0, 1), q) == Pose(0, 0, 1, 0.0, 0.0, 0.0)


def test_non_finite_translation_is_a_value_error():
    with pytest.raises(ValueError, match="finite"):
        pose_from_optical_transform((0, float("inf"), 1), (-0.5, 0.5, -0.5, 0.5))
