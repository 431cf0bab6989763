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
    """A pinhole camera (plumb-bob distortion ``D``) at ``pose`` in ``parent_frame``."""

    width: int
    height: int
    K: np.ndarray = field(repr=False)  # 3x3 intrinsics
    D: np.ndarray = field(default_factory=lambda: np.zeros(5), repr=False)  # k1 k2 p1 p2 k3
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
                         parent_frame: str = "base_link") -> "CameraModel":
        """The camera of the image actually published, following sensor_msgs/CameraInfo's rules.

        ``K`` is for the full-resolution sensor; the published image is the ``roi`` (x_offset,
        y_offset, width, height; all zero = full image) binned by ``binning_x/y`` (0 or 1 = none).
        """
        K = np.array(k, dtype=np.float64).reshape(3, 3).copy()
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] == 0:
            raise ValueError(f"CameraInfo K is not a valid camera matrix: {K.ravel().tolist()}")
        bx, by = max(int(binning_x), 1), max(int(binning_y), 1)
        if roi is not None:
            x_off, y_off, rw, rh = roi
            if rw and rh:
                K[0, 2] -= x_off
                K[1, 2] -= y_off
                width, height = rw, rh
        K[0] /= bx
        K[1] /= by
        w, h = int(width) // bx, int(height) // by
        if not (0 < K[0, 2] < w and 0 < K[1, 2] < h):
            raise ValueError(f"CameraInfo K puts the principal point at ({K[0, 2]:g}, {K[1, 2]:g}), outside the "
                             f"{w}x{h} image: a calibration of another resolution?")
        D = np.zeros(5)
        d = np.asarray(d, dtype=np.float64).ravel()
        D[: min(5, d.size)] = d[:5]
        return cls(int(width) // bx, int(height) // by, K, D, pose, frame_id, parent_frame)

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
        [j, j+1) x [i, i+1). Points behind the camera get NaN pixels. Distortion is applied.
        """
        pc = self.to_optical(points)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = pc[:, 0] / z, pc[:, 1] / z
        if np.any(self.D):
            k1, k2, p1, p2, k3 = self.D
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
            x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                    y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
        uv = np.stack([self.K[0, 0] * x + self.K[0, 1] * y + self.K[0, 2], self.K[1, 1] * y + self.K[1, 2]], -1)
        uv[z <= 1e-9] = np.nan
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
