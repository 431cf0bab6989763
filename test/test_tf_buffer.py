"""The built-in TF buffer against tf2's lookupTransform semantics, with scipy's Rotation / Slerp as the reference
for composition and interpolation (never the buffer's own math)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from panoptic_ros.tf_buffer import TransformBuffer, TransformUnavailable

S = 1_000_000_000  # ns per second


def _rand(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-3, 3, 3), Rotation.random(random_state=seed)


def _matrix(t, rot: Rotation):
    T = np.eye(4)
    T[:3, :3] = rot.as_matrix()
    T[:3, 3] = t
    return T


def _check(buffer, target, source, stamp, expected: np.ndarray):
    t, q = buffer.lookup(target, source, stamp)
    np.testing.assert_allclose(t, expected[:3, 3], atol=1e-9)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), expected[:3, :3], atol=1e-9)


def test_chain_and_inverse_compose_as_tf2():
    """base_link -> camera_link -> camera_optical_frame: target <- source maps source points into target."""
    b = TransformBuffer()
    t1, r1 = _rand(1)
    t2, r2 = _rand(2)
    b.set_transform("base_link", "camera_link", 0, t1, r1.as_quat(), static=True)
    b.set_transform("camera_link", "camera_optical_frame", 0, t2, r2.as_quat(), static=True)
    T = _matrix(t1, r1) @ _matrix(t2, r2)
    _check(b, "base_link", "camera_optical_frame", 0, T)
    _check(b, "camera_optical_frame", "base_link", 5 * S, np.linalg.inv(T))  # static: any time
    p = np.array([0.3, -1.0, 4.0])  # a point in the optical frame, mapped by scipy alone
    expected = r1.apply(r2.apply(p) + t2) + t1
    t, q = b.lookup("base_link", "camera_optical_frame")
    np.testing.assert_allclose(Rotation.from_quat(q).apply(p) + t, expected, atol=1e-9)


def test_siblings_meet_at_the_common_ancestor_only():
    """camera <- lidar goes through base_link; map -> odom -> base_link above it never limits the time."""
    b = TransformBuffer()
    tc, rc = _rand(3)
    tl, rl = _rand(4)
    b.set_transform("base_link", "camera", 0, tc, rc.as_quat(), static=True)
    b.set_transform("base_link", "lidar", 0, tl, rl.as_quat(), static=True)
    b.set_transform("odom", "base_link", 1 * S, [1, 0, 0], [0, 0, 0, 1])
    b.set_transform("map", "odom", 1 * S, [0, 2, 0], [0, 0, 0, 1])
    _check(b, "camera", "lidar", 99 * S, np.linalg.inv(_matrix(tc, rc)) @ _matrix(tl, rl))
    _check(b, "map", "camera", 1 * S, _matrix([1, 2, 0], Rotation.identity()) @ _matrix(tc, rc))
    with pytest.raises(TransformUnavailable, match="extrapolation into the future"):
        b.lookup("map", "camera", 2 * S)
    # time 0 takes the latest time of the links below the common ancestor only (a moving arm at 5 s and 6 s)
    b.set_transform("base_link", "arm", 5 * S, [0, 0, 1], [0, 0, 0, 1])
    b.set_transform("base_link", "arm", 6 * S, [0, 0, 3], [0, 0, 0, 1])
    _check(b, "lidar", "arm", 0, np.linalg.inv(_matrix(tl, rl)) @ _matrix([0, 0, 3], Rotation.identity()))


def test_interpolation_is_lerp_and_slerp():
    b = TransformBuffer()
    (ta, ra), (tb, rb) = _rand(5), _rand(6)
    b.set_transform("odom", "base_link", 10 * S, ta, ra.as_quat())
    b.set_transform("odom", "base_link", 12 * S, tb, rb.as_quat())
    slerp = Slerp([10.0, 12.0], Rotation.concatenate([ra, rb]))
    for t in (10.0, 10.5, 11.3, 12.0):
        s = (t - 10.0) / 2.0
        _check(b, "odom", "base_link", int(round(t * S)), _matrix(ta + s * (tb - ta), slerp([t])[0]))
    # the shorter arc also when the second quaternion is stored with the opposite sign
    b.set_transform("odom", "base_link", 12 * S, tb, -rb.as_quat())
    _check(b, "odom", "base_link", 11 * S, _matrix((ta + tb) / 2, slerp([11.0])[0]))


def test_extrapolation_is_refused_and_zero_means_latest_common_time():
    b = TransformBuffer()
    b.set_transform("odom", "base_link", 1 * S, [0, 0, 0], [0, 0, 0, 1])
    b.set_transform("odom", "base_link", 3 * S, [2, 0, 0], [0, 0, 0, 1])
    b.set_transform("base_link", "camera", 1 * S, [0, 0, 1], [0, 0, 0, 1])
    b.set_transform("base_link", "camera", 2 * S, [0, 0, 2], [0, 0, 0, 1])
    with pytest.raises(TransformUnavailable,
                       match='extrapolation into the future.*latest data of "base_link" <- "camera"'):
        b.lookup("odom", "camera", int(2.5 * S))
    with pytest.raises(TransformUnavailable, match="extrapolation into the past"):
        b.lookup("odom", "camera", int(0.5 * S))
    # time 0: the newest time both links have (2 s): odom x = 1, camera z = 2
    t, _ = b.lookup("odom", "camera", 0)
    np.testing.assert_allclose(t, [1.0, 0.0, 2.0])


def test_dynamic_history_is_bounded_static_is_kept():
    b = TransformBuffer(cache_s=2.0)
    b.set_transform("base_link", "camera", 0, [0, 0, 1.5], [0, 0, 0, 1], static=True)
    for k in range(10):
        b.set_transform("odom", "base_link", k * S, [k, 0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(b.lookup("odom", "base_link", int(7.5 * S))[0], [7.5, 0, 0])
    with pytest.raises(TransformUnavailable, match="extrapolation into the past"):
        b.lookup("odom", "base_link", int(6.5 * S))  # older than 9 s - 2 s: pruned
    np.testing.assert_allclose(b.lookup("base_link", "camera", 123 * S)[0], [0, 0, 1.5])


def test_a_newer_static_transform_replaces_the_old_one():
    b = TransformBuffer()
    b.set_transform("base_link", "camera", 5 * S, [1, 0, 1], [0, 0, 0, 1], static=True)
    b.set_transform("base_link", "camera", 6 * S, [3, 0, 1], [0, 0, 0, 1], static=True)
    np.testing.assert_allclose(b.lookup("base_link", "camera", 1 * S)[0], [3, 0, 1])


def test_unknown_and_unconnected_frames_say_so():
    b = TransformBuffer()
    b.set_transform("base_link", "camera", 0, [0, 0, 1], [0, 0, 0, 1], static=True)
    b.set_transform("world", "marker", 0, [0, 0, 1], [0, 0, 0, 1], static=True)
    with pytest.raises(TransformUnavailable,
                       match='"nowhere" passed to lookup_transform argument source_frame does not exist'):
        b.lookup("base_link", "nowhere")
    with pytest.raises(TransformUnavailable, match="not part of the same tree"):
        b.lookup("base_link", "marker")
    np.testing.assert_allclose(b.lookup("camera", "camera")[0], [0, 0, 0])


@pytest.mark.parametrize("bad", [dict(parent="", child="a"), dict(parent="a", child="a"),
                                 dict(translation=[np.nan, 0, 0]), dict(quaternion_xyzw=[0, 0, 0, 0]),
                                 dict(quaternion_xyzw=[0, 0, 0.5, 0.5])])
def test_malformed_transforms_are_refused(bad):
    args = dict(parent="base_link", child="camera", stamp_ns=0, translation=[0, 0, 1], quaternion_xyzw=[0, 0, 0, 1])
    args.update(bad)
    with pytest.raises(ValueError):
        TransformBuffer().set_transform(**args)


def test_core_module_imports_no_ros():
    import subprocess
    import sys

    code = ("import sys, panoptic_ros.tf_buffer; "
            "sys.exit(any(m.split('.')[0] in ('rclpy', 'tf2_ros', 'tf2_msgs') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
