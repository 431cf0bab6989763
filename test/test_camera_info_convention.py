"""CameraInfo at the ROS boundary: K and D mean what image_geometry / cv2.projectPoints say they mean.

The core's pixel (i, j) spans [j, j+1) (centre j + 0.5); CameraInfo's K puts pixel centres at integers.
Everything here is checked against OpenCV's own projection of the CameraInfo's K and D, never against the
package's projection alone.
"""
import warnings

import cv2
import numpy as np
import pytest

from panoptic_ros.bev import GroundLookup
from panoptic_ros.data.bag import CAMERA_INFO_TOPIC, TF_STATIC_TOPIC, read_bag, read_raw, typestore, write_drive_bag
from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.geometry import CameraModel, GridSpec, Pose, rotation_from_quaternion

W, H = 160, 96
K_ROS = [120.0, 0.0, 79.3, 0.0, 118.0, 47.6, 0.0, 0.0, 1.0]  # a calibration: centres at integer pixel coordinates
POSE = Pose(1.2, -0.3, 1.45, np.radians(1.5), np.radians(6.0), np.radians(-3.0))
DISTORTIONS = {
    "none": ("plumb_bob", [0.0] * 5),
    "plumb_bob": ("plumb_bob", [-0.28, 0.09, 0.0012, -0.0007, -0.012]),
    "rational_polynomial": ("rational_polynomial", [0.35, -0.05, 0.0009, 0.0004, 0.002, 0.62, -0.02, 0.01]),
}


def _rvec_tvec(pose: Pose):
    """cv2's (rvec, tvec) taking parent-frame points to the optical frame of a camera at ``pose``, computed from
    the REP 103 axes directly (optical z = body x, optical x = -body y, optical y = -body z)."""
    body_from_optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    R_parent_from_optical = pose.rotation() @ body_from_optical
    R = R_parent_from_optical.T
    return cv2.Rodrigues(R)[0], -R @ pose.translation()


def _ground_points(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(3.0, 40.0, n), rng.uniform(-12.0, 12.0, n), np.zeros(n)])


@pytest.mark.parametrize("name", DISTORTIONS)
def test_ground_points_land_where_cv2_projects_them(name):
    model, d = DISTORTIONS[name]
    cam = CameraModel.from_camera_info(W, H, K_ROS, d, pose=POSE, distortion_model=model)
    pts = _ground_points()
    rvec, tvec = _rvec_tvec(POSE)
    ros_uv = cv2.projectPoints(pts.reshape(-1, 1, 3), rvec, tvec, np.reshape(K_ROS, (3, 3)),
                               np.asarray(d, float))[0].reshape(-1, 2)
    inside = (ros_uv[:, 0] > -0.5) & (ros_uv[:, 0] < W - 0.5) & (ros_uv[:, 1] > -0.5) & (ros_uv[:, 1] < H - 0.5)
    assert inside.sum() > 100
    uv, depth = cam.project(pts)
    # the core's continuous coordinate is the ROS one + 0.5, so both name the same pixel
    np.testing.assert_allclose(uv[inside] - 0.5, ros_uv[inside], atol=0.01)
    assert np.array_equal(np.floor(uv[inside]), np.round(ros_uv[inside]))
    # and the ray through cv2's pixel comes back to the ground point (where the lens model is invertible)
    optical = pts @ cv2.Rodrigues(rvec)[0].T + tvec
    back = inside & (np.hypot(optical[:, 0], optical[:, 1]) / optical[:, 2] < 0.7)
    rays = cam.pixel_rays(ros_uv[back, 0] + 0.5, ros_uv[back, 1] + 0.5)
    t = -POSE.z / rays[:, 2]
    np.testing.assert_allclose(POSE.translation() + t[:, None] * rays, pts[back], atol=1e-4)


@pytest.mark.parametrize("name", DISTORTIONS)
def test_grid_lookup_reads_the_pixel_cv2_names(name):
    """The bird's-eye lookup takes each cell from the pixel whose centre cv2.projectPoints puts nearest."""
    model, d = DISTORTIONS[name]
    cam = CameraModel.from_camera_info(W, H, K_ROS, d, pose=POSE, distortion_model=model)
    grid = GridSpec(0.5, 0.0, 40.0, -15.0, 15.0)
    lookup = GroundLookup.build(cam, grid)
    xs, ys = grid.cell_centers()
    pts = np.column_stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)])[lookup.cell_index]
    rvec, tvec = _rvec_tvec(POSE)
    ros_uv = cv2.projectPoints(pts.reshape(-1, 1, 3), rvec, tvec, np.reshape(K_ROS, (3, 3)),
                               np.asarray(d, float))[0].reshape(-1, 2)
    col, row = np.round(ros_uv).astype(int).T
    frac = np.abs(ros_uv - np.round(ros_uv)).max(1)
    clear = frac < 0.49  # cells projecting within 0.01 px of a pixel border may round either way
    assert clear.sum() > 200
    np.testing.assert_array_equal(lookup.cell_pixel[clear], (row * W + col)[clear])


def test_binning_and_roi_follow_image_geometry():
    """image_geometry: K -= roi offset, then K rows 0 and 1 / binning; the result is in ROS convention too."""
    full = CameraModel.from_camera_info(640, 480, [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1])
    binned = CameraModel.from_camera_info(640, 480, [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1], binning_x=2,
                                          binning_y=2, roi=(40, 20, 400, 300))
    assert (binned.width, binned.height) == (200, 150)
    ros_k = np.array([[250.0, 0, (319.5 - 40) / 2], [0, 250.0, (239.5 - 20) / 2], [0, 0, 1]])
    np.testing.assert_allclose(binned.camera_info_fields()["k"].reshape(3, 3), ros_k)
    np.testing.assert_allclose(full.K[:2, 2], [320.0, 240.0])  # a centred ROS principal point = the image centre


@pytest.mark.parametrize("model,d", [("equidistant", [0.1, 0.0, 0.0, 0.0]), ("plumb_bob", [0.1, 0.0]),
                                     ("rational_polynomial", [0.1] * 5), ("fisheye", [])])
def test_unknown_or_malformed_distortion_is_refused(model, d):
    with pytest.raises(ValueError, match="distortion_model|D has"):
        CameraModel.from_camera_info(W, H, K_ROS, d, distortion_model=model)


def test_no_runtime_warning_from_points_in_the_camera_plane():
    """Cells level with a pitch-0 camera lie in its optical z = 0 plane; projecting them used to compute 0 * inf."""
    for d in (np.zeros(5), np.array(DISTORTIONS["plumb_bob"][1])):
        cam = CameraModel(W, H, np.array([[120.0, 0, 80], [0, 120.0, 48], [0, 0, 1]]), d, Pose(1.5, 0, 1.5))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            uv, z = cam.project(np.array([[1.5, 2.0, 0.0], [1.5, -1.0, 0.0], [10.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]))
            GroundLookup.build(cam, GridSpec(0.2, -5.0, 20.0, -10.0, 10.0))
        assert np.isnan(uv[[0, 1, 3]]).all() and np.isfinite(uv[2]).all()


def _bag_messages(path):
    store = typestore()
    info = tf = None
    for raw in read_raw(path, [CAMERA_INFO_TOPIC, TF_STATIC_TOPIC]):
        msg = store.deserialize_cdr(raw.data, raw.msgtype)
        if raw.topic == CAMERA_INFO_TOPIC and info is None:
            info = msg
        elif raw.topic == TF_STATIC_TOPIC and tf is None:
            tf = msg.transforms[0]
    return info, tf


def _rvec_tvec_from_tf(tf):
    """cv2's (rvec, tvec) from a parent <- optical TransformStamped (tf2's convention)."""
    q, t = tf.transform.rotation, tf.transform.translation
    R = rotation_from_quaternion(q.x, q.y, q.z, q.w).T
    return cv2.Rodrigues(R)[0], -R @ np.array([t.x, t.y, t.z])


@pytest.mark.parametrize("name", ["none", "rational_polynomial"])
def test_bag_round_trip_keeps_the_projection(tmp_path, name):
    model, d = DISTORTIONS[name]
    world = SyntheticWorld(WorldConfig(width=W, height=H), 4)
    frame = next(iter(world.drive(1)))
    cam = CameraModel.from_camera_info(W, H, K_ROS, d, pose=frame.camera.pose, distortion_model=model)
    frame.camera = cam
    write_drive_bag(tmp_path / "bag", [frame], 10.0)
    info, tf = _bag_messages(tmp_path / "bag")
    assert info.distortion_model == model
    np.testing.assert_allclose(info.k, K_ROS)
    np.testing.assert_allclose(info.d, d)
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], np.reshape(K_ROS, (3, 3)))
    back = next(iter(read_bag(tmp_path / "bag"))).camera
    np.testing.assert_allclose(back.K, cam.K)
    np.testing.assert_allclose(back.D, cam.D)
    pts = _ground_points()
    uv = cv2.projectPoints(pts.reshape(-1, 1, 3), *_rvec_tvec_from_tf(tf), np.reshape(info.k, (3, 3)),
                           np.asarray(info.d))[0].reshape(-1, 2)
    mine, _ = back.project(pts)
    ok = np.isfinite(mine).all(1) & (uv[:, 1] > 0) & (uv[:, 1] < H) & (uv[:, 0] > 0) & (uv[:, 0] < W)
    assert ok.sum() > 50
    np.testing.assert_allclose(mine[ok] - 0.5, uv[ok], atol=0.01)


@pytest.mark.parametrize("roll_deg", [25.0, -25.0])
def test_world_bag_camera_info_matches_the_rendered_pixels(tmp_path, roll_deg):
    """The acceptance test: in a bag of panoptic-world, a ground point the renderer drew at pixel (i, j) (known
    from its rendered depth) projects through the bag's CameraInfo and /tf_static with cv2 onto (j, i).

    A pixel's ground point is pinned down by the rendered depth d (optical z) and the ground plane: those are the
    ground points at optical depth d, a line in the image; pixel (j, i)'s centre must lie on it. Rolled cameras
    tilt that line so both the column and the row convention are checked.
    """
    cfg = WorldConfig(width=W, height=H, roll_deg=(roll_deg, roll_deg), noise=0.0)
    write_drive_bag(tmp_path / "bag", SyntheticWorld(cfg, 7).drive(1), 10.0)
    frame = next(iter(SyntheticWorld(cfg, 7).drive(1)))
    info, tf = _bag_messages(tmp_path / "bag")
    rvec, tvec = _rvec_tvec_from_tf(tf)
    R_opt_from_parent = cv2.Rodrigues(rvec)[0]
    ground = (frame.panoptic // 1000 >= 7) & (frame.panoptic // 1000 <= 10) & (frame.depth < 60)
    rows, cols = np.nonzero(ground)
    pick = np.random.default_rng(0).choice(rows.size, 300, replace=False)
    residuals = []
    for i, j in zip(rows[pick], cols[pick]):
        d = float(frame.depth[i, j])
        # two ground points at optical depth d: optical p = (x, y, d) with parent z = 0
        n = R_opt_from_parent.T[2]  # parent z of optical coordinates: n . p + c
        c = float(-(R_opt_from_parent.T @ tvec)[2])
        a = []
        for x in (-5.0, 5.0):
            y = -(n[0] * x + n[2] * d + c) / n[1]
            a.append(R_opt_from_parent.T @ (np.array([x, y, d]) - tvec))
        uv = cv2.projectPoints(np.array(a).reshape(-1, 1, 3), rvec, tvec, np.reshape(info.k, (3, 3)),
                               np.asarray(info.d))[0].reshape(-1, 2)
        direction = (uv[1] - uv[0]) / np.linalg.norm(uv[1] - uv[0])
        offset = np.array([j, i], float) - uv[0]
        residuals.append(offset[0] * direction[1] - offset[1] * direction[0])
    assert np.max(np.abs(residuals)) < 0.01, np.max(np.abs(residuals))
