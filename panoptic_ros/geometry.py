"""Camera and grid geometry shared by the synthetic world and the bird's-eye projection (no ROS).

Frames follow REP 103 / REP 105:
- ``base_link``: x forward, y left, z up; the ground is the plane z = 0.
- camera body: same axes as base_link, placed by :class:`Pose` (x, y, z, roll, pitch, yaw; positive pitch
  looks down).
- camera optical frame: z forward, x right, y down (what K projects from).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# The core puts pixel (i, j) at [j, j+1) x [i, i+1) (centre j + 0.5); ROS / OpenCV (CameraInfo K, image_geometry,
# cv2.projectPoints) put pixel centres at integers. K's principal point differs by this much between the two;
# CameraModel.from_camera_info / camera_info_fields are the only places that convert.
ROS_TO_CORNER_ORIGIN = 0.5
# sensor_msgs/CameraInfo distortion models honoured (through OpenCV) and their number of D coefficients
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8}


def distortion_coefficients(model: str, d) -> np.ndarray:
    """OpenCV distortion coefficients of CameraInfo's ``distortion_model`` and ``D``; ValueError for a model
    OpenCV's pinhole functions do not implement (e.g. equidistant) or a D of the wrong length.
    An empty model with an empty or all-zero D means no distortion."""
    d = np.asarray(d, dtype=np.float64).ravel()
    if model == "" and not np.any(d):
        return np.zeros(5)
    if model not in DISTORTION_MODELS:
        raise ValueError(f"CameraInfo distortion_model {model!r} is not supported: use "
                         f"{' or '.join(DISTORTION_MODELS)} (a rectified image: plumb_bob with D = 0)")
    n = DISTORTION_MODELS[model]
    if d.size == 0:
        return np.zeros(n)
    if d.size != n or not np.all(np.isfinite(d)):
        raise ValueError(f"CameraInfo D has {d.size} values {d.tolist()}; {model} needs {n} finite ones")
    return d.copy()


# optical (z fwd, x right, y down) expressed in the camera body frame (x fwd, y left, z up)
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll), the ROS fixed-axis convention."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Pose:
    """The camera body's pose in the output frame (metres, radians)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 1.5
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def rotation(self) -> np.ndarray:
        return rotation_rpy(self.roll, self.pitch, self.yaw)

    def translation(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z], dtype=np.float64)


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera at ``pose`` in ``parent_frame``: K in the core's corner-origin pixel convention (pixel
    (i, j) spans [j, j+1) x [i, i+1)), ``D`` OpenCV's distortion coefficients (k1 k2 p1 p2 k3 [k4 k5 k6])."""

    width: int
    height: int
    K: np.ndarray = field(repr=False)  # 3x3 intrinsics
    D: np.ndarray = field(default_factory=lambda: np.zeros(5), repr=False)  # k1 k2 p1 p2 k3 [k4 k5 k6]
    pose: Pose = Pose()
    frame_id: str = "camera_optical_frame"
    parent_frame: str = "base_link"

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float, pose: Pose = Pose(), **kw) -> "CameraModel":
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
        K = np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1.0]])
        return cls(width, height, K, pose=pose, **kw)

    @classmethod
    def from_camera_info(cls, width: int, height: int, k, d=(), binning_x: int = 0, binning_y: int = 0,
                         roi=None, pose: Pose = Pose(), frame_id: str = "camera_optical_frame",
                         parent_frame: str = "base_link", distortion_model: str = "plumb_bob") -> "CameraModel":
        """The camera of the image actually published, following sensor_msgs/CameraInfo's rules.

        ``k`` is in the ROS / OpenCV pixel convention (pixel centres at integer coordinates, as image_geometry
        and cv2.projectPoints) and for the full-resolution sensor; the published image is the ``roi``
        (x_offset, y_offset, width, height; all zero = full image) binned by ``binning_x/y`` (0 or 1 = none),
        adjusted as image_geometry does. This is the one place that converts CameraInfo's K to the core's
        corner-origin convention (inverse: :meth:`camera_info_fields`). ``d`` follows ``distortion_model``
        (:data:`DISTORTION_MODELS`); another model is a ValueError.
        """
        K = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] == 0:
            raise ValueError(f"CameraInfo K is not a valid camera matrix: {K.ravel().tolist()}")
        D = distortion_coefficients(distortion_model, d)
        bx, by = max(int(binning_x), 1), max(int(binning_y), 1)
        if roi is not None:
            x_off, y_off, rw, rh = roi
            if rw and rh:
                K[0, 2] -= x_off
                K[1, 2] -= y_off
                width, height = rw, rh
        K[0] /= bx
        K[1] /= by
        K[0, 2] += ROS_TO_CORNER_ORIGIN
        K[1, 2] += ROS_TO_CORNER_ORIGIN
        w, h = int(width) // bx, int(height) // by
        if not (0 < K[0, 2] < w and 0 < K[1, 2] < h):
            raise ValueError(f"CameraInfo K puts the principal point at ({K[0, 2] - ROS_TO_CORNER_ORIGIN:g}, "
                             f"{K[1, 2] - ROS_TO_CORNER_ORIGIN:g}), outside the {w}x{h} image: a calibration of "
                             "another resolution?")
        return cls(w, h, K, D, pose, frame_id, parent_frame)

    def camera_info_fields(self) -> dict:
        """The sensor_msgs/CameraInfo fields of this camera (full image, no binning or ROI), K and P in the ROS /
        OpenCV pixel convention: the inverse of :meth:`from_camera_info`."""
        K = np.asarray(self.K, dtype=np.float64).copy()
        K[0, 2] -= ROS_TO_CORNER_ORIGIN
        K[1, 2] -= ROS_TO_CORNER_ORIGIN
        D = np.asarray(self.D, dtype=np.float64).ravel()
        model = "plumb_bob" if D.size <= 5 else "rational_polynomial"
        D = np.concatenate([D, np.zeros(DISTORTION_MODELS[model] - D.size)])
        return {"width": int(self.width), "height": int(self.height), "distortion_model": model, "d": D,
                "k": K.ravel(), "r": np.eye(3).ravel(), "p": np.hstack([K, np.zeros((3, 1))]).ravel()}

    def with_pose(self, pose: Pose) -> "CameraModel":
        return replace(self, pose=pose)

    def scaled(self, width: int, height: int) -> "CameraModel":
        """The same camera for an image resized to ``width`` x ``height``."""
        K = self.K.copy()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return replace(self, width=width, height=height, K=K)

    # -- transforms ---------------------------------------------------------------------------------
    def rotation_parent_from_optical(self) -> np.ndarray:
        return self.pose.rotation() @ BODY_FROM_OPTICAL

    def parent_from_optical(self) -> np.ndarray:
        """4x4 transform taking optical-frame points to the parent frame (base_link)."""
        T = np.eye(4)
        T[:3, :3] = self.rotation_parent_from_optical()
        T[:3, 3] = self.pose.translation()
        return T

    def to_optical(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) parent-frame points -> (N, 3) optical-frame points."""
        R = self.rotation_parent_from_optical()
        return (np.asarray(points, dtype=np.float64) - self.pose.translation()) @ R

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) parent-frame points -> pixel coordinates (N, 2) and depth along the optical axis (N,).

        Pixel (u, v) = (0, 0) is the *corner* of the top-left pixel, so pixel (i, j) spans
        [j, j+1) x [i, i+1). Points behind the camera (or in its z = 0 plane) get NaN pixels, computed only for
        points in front (no 0 * inf warnings). Distortion is applied with cv2.projectPoints (which ignores skew).
        """
        pc = self.to_optical(points)
        z = pc[:, 2]
        uv = np.full((len(pc), 2), np.nan)
        front = z > 1e-9
        if np.any(self.D):
            import cv2  # only needed for distorted cameras

            if front.any():
                uv[front] = cv2.projectPoints(pc[front].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.K,
                                              np.asarray(self.D, np.float64))[0].reshape(-1, 2)
        else:
            x, y = pc[front, 0] / z[front], pc[front, 1] / z[front]
            uv[front] = np.stack([self.K[0, 0] * x + self.K[0, 1] * y + self.K[0, 2],
                                  self.K[1, 1] * y + self.K[1, 2]], -1)
        return uv, z

    def pixel_rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit rays in the parent frame through pixel coordinates (u, v) (undistorted with cv2 if D != 0)."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        if np.any(self.D):
            import cv2  # only needed for distorted cameras

            pts = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
            # undistortPoints stops after 5 iterations (~5 mrad off in wide-angle corners); iterate to converge.
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
            xy = cv2.undistortPointsIter(pts, self.K, self.D, None, None, criteria).reshape(-1, 2)
            x, y = xy[:, 0].reshape(u.shape), xy[:, 1].reshape(u.shape)
        else:
            Kinv = np.linalg.inv(self.K)
            x = Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]
            y = Kinv[1, 1] * v + Kinv[1, 2]
        d = np.stack([x, y, np.ones_like(x)], -1) @ self.rotation_parent_from_optical().T
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def ground_homography(self) -> np.ndarray:
        """3x3 H mapping ground points (x, y, 1) on z = 0 of the parent frame to pixels (u, v, 1) (no D)."""
        R = self.rotation_parent_from_optical().T  # parent -> optical
        t = -R @ self.pose.translation()
        return self.K @ np.column_stack([R[:, 0], R[:, 1], t])


@dataclass(frozen=True)
class GridSpec:
    """A 2D grid on the ground plane of ``frame_id``, laid out as nav_msgs/OccupancyGrid defines.

    Cell (row r, col c) spans x in [x_min + c*res, x_min + (c+1)*res) and y in [y_min + r*res, ...).
    ``data[r * width + c]``: row-major with x (forward) fastest; the grid origin is the pose of cell
    (0, 0)'s corner, (x_min, y_min).
    """

    resolution: float = 0.1
    x_min: float = 0.0
    x_max: float = 40.0
    y_min: float = -20.0
    y_max: float = 20.0
    frame_id: str = "base_link"

    def __post_init__(self):
        if self.resolution <= 0 or self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError(f"empty or inverted grid: {self}")

    @property
    def width(self) -> int:  # number of columns (along x)
        return int(round((self.x_max - self.x_min) / self.resolution))

    @property
    def height(self) -> int:  # number of rows (along y)
        return int(round((self.y_max - self.y_min) / self.resolution))

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of every cell centre, each (height, width)."""
        xs = self.x_min + (np.arange(self.width) + 0.5) * self.resolution
        ys = self.y_min + (np.arange(self.height) + 0.5) * self.resolution
        return np.meshgrid(xs, ys)

    def cell_of(self, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, col of the cells holding points (x, y), and whether each point is inside the grid."""
        c = np.floor((np.asarray(x) - self.x_min) / self.resolution).astype(np.int64)
        r = np.floor((np.asarray(y) - self.y_min) / self.resolution).astype(np.int64)
        inside = (c >= 0) & (c < self.width) & (r >= 0) & (r < self.height)
        return r, c, inside


# -- camera pose <-> TF transform of the optical frame ---------------------------------------------------------------
# ROS image frames (sensor_msgs/Image header.frame_id, usually ``*_optical_frame``) are optical frames (REP 103:
# z forward, x right, y down). TF holds ``parent <- optical`` as translation + unit quaternion (x, y, z, w); these
# turn that into the camera *body* Pose the rest of the project uses (x forward, y left, z up, pitch > 0 looks down).
# Hand-written: ~20 lines of textbook formulas, not worth a dependency (scipy / transforms3d are not installed).
QUATERNION_TOLERANCE = 1e-3  # |norm - 1| accepted as rounding in a message; more is a broken publisher


def quaternion_from_rotation(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method), with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = np.zeros(4)
        q[i], q[j], q[k], q[3] = 0.25 * s, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s, (R[k, j] - R[j, k]) / s
    q /= np.linalg.norm(q)
    return tuple(float(v) for v in (q if q[3] >= 0 else -q))


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a unit quaternion (x, y, z, w). ValueError if it is not finite or not unit length
    (within :data:`QUATERNION_TOLERANCE`; small rounding is normalised away)."""
    q = np.array([x, y, z, w], dtype=np.float64)
    n = float(np.linalg.norm(q))
    if not np.all(np.isfinite(q)) or abs(n - 1.0) > QUATERNION_TOLERANCE:
        raise ValueError(f"quaternion (x, y, z, w) = {tuple(float(v) for v in q)} has norm {n:.6g}, not 1: "
                         "not a rotation")
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose_from_body_rotation(R: np.ndarray, translation) -> Pose:
    """The :class:`Pose` with rotation ``R`` (= Rz(yaw) Ry(pitch) Rx(roll)) and position ``translation``.

    At pitch = +-pi/2 only yaw - roll (or yaw + roll) is defined; roll is then 0."""
    R = np.asarray(R, dtype=np.float64)
    t = [float(v) for v in np.asarray(translation, dtype=np.float64).ravel()]
    if len(t) != 3 or not np.all(np.isfinite(t)):
        raise ValueError(f"translation must be three finite numbers (x, y, z), got {translation!r}")
    pitch = float(np.arcsin(np.clip(-R[2, 0], -1.0, 1.0)))
    if np.hypot(R[0, 0], R[1, 0]) > 1e-9:
        roll = float(np.arctan2(R[2, 1], R[2, 2]))
        yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    else:  # gimbal lock: R[0:2, 1:3] only holds yaw -+ roll
        roll = 0.0
        yaw = float(np.arctan2(-R[0, 1], R[1, 1]))
    return Pose(t[0], t[1], t[2], roll, pitch, yaw)


def pose_from_optical_transform(translation, quaternion_xyzw) -> Pose:
    """The camera body :class:`Pose` from TF's ``parent <- optical frame`` transform.

    Args:
        translation: (x, y, z) of the optical frame's origin in the parent frame, metres.
        quaternion_xyzw: orientation of the optical frame (z forward, x right, y down) in the parent frame.

    The result equals the ``camera.*`` parameters that describe the same camera: ``CameraModel(pose=...)``
    then projects exactly as the transform says. ValueError for a quaternion that is not a rotation.
    """
    R_optical = rotation_from_quaternion(*[float(v) for v in quaternion_xyzw])
    return pose_from_body_rotation(R_optical @ BODY_FROM_OPTICAL.T, translation)


def optical_transform_from_pose(pose: Pose) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """(translation xyz, quaternion xyzw) of the optical frame of a camera at ``pose``: what TF holds for
    ``parent <- camera_optical_frame`` (the inverse of :func:`pose_from_optical_transform`)."""
    q = quaternion_from_rotation(pose.rotation() @ BODY_FROM_OPTICAL)
    return (float(pose.x), float(pose.y), float(pose.z)), q
