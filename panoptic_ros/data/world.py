"""The procedural synthetic driving world: random street scenes rendered with exact panoptic, depth and
bird's-eye truth.

``SyntheticWorld(config, seed).frame(i)`` is an independent random scene (deterministic for
``(seed, i)``); ``drive(n)`` follows one street with the ego car moving forward at a fixed speed while
traffic, cyclists and pedestrians move too.

Scene content lives in :mod:`.scene`, the rasteriser in :mod:`.render`. Rendering per frame: the ground
by per-pixel ray / plane intersection classified by the road layout; solids with a z-buffer on top;
then per-pixel texturing and per-face sun shading, sensor noise.

Bird's-eye truth (on ``config.grid``, base_link; one value per cell, evaluated at the cell centre):

- ``ground_class``: train id of the ground surface (road, sidewalk, terrain) at the cell centre;
- ``occupied``: the centre lies in the footprint of an object part whose base is below 2 m (things and
  obstacle stuff: building, wall, fence, pole, vegetation trunks / hedges, traffic-light / sign poles;
  overhanging parts such as tree crowns, mast arms and hanging lights do not occupy);
- ``instance``: panoptic id of the thing whose footprint covers the centre (0 = none);
- ``visible``: the centre's ground point (z = 0) projects inside the image, in front of the camera, to
  pixel ``(floor(v), floor(u))``, and either the cell is free and that pixel shows the ground surface
  (road / sidewalk / terrain: no object and no sky in between), or the cell is occupied and the pixel
  shows that same object (same thing id, or the same obstacle stuff class).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from ..geometry import CameraModel, GridSpec, Pose
from ..panoptic import segments_from_ids
from . import conditions as imaging
from .frame import BevTruth, Frame, ThingTruth
from .render import place_solids, rasterize
from .scene import (CAT, FACADE, FENCE, FOLIAGE, GLASS, LIGHT, SIGN, TAX, VEHICLE, Scene, generate_scene)

SKY_ID = CAT["sky"] * 1000
GROUND_TRAIN_IDS = [TAX.train_id(n) for n in ("road", "sidewalk", "terrain")]
OCCUPY_BELOW = 2.0  # parts whose base is higher than this (crowns, arms, hanging lights) occupy no cell
SCENE_AHEAD = 150.0
SHADOW_RES = 0.25  # metres per cell of the cast-shadow raster  # metres of street generated ahead of the ego car (beyond: culled)


@dataclass
class WorldConfig:
    """How the world is rendered and sampled."""

    width: int = 512
    height: int = 256
    hfov_deg: float = 80.0  # a typical automotive front camera
    camera_height: tuple[float, float] = (1.0, 2.0)  # metres above ground, sampled per frame / drive
    pitch_deg: tuple[float, float] = (0.5, 6.0)  # positive looks down
    roll_deg: tuple[float, float] = (-2.0, 2.0)
    yaw_deg: tuple[float, float] = (-4.0, 4.0)
    camera_x: tuple[float, float] = (0.0, 0.0)  # metres ahead of base_link (the ego car's ground point)
    grid: GridSpec = field(default_factory=GridSpec)
    crowd_probability: float = 0.35  # chance a scene is crowded (parked rows, groups of people)
    noise: float = 0.02  # sensor noise standard deviation, fraction of full scale
    max_distance: float = 140.0  # objects farther ahead than this are not drawn
    # imaging condition (fog, dusk, blur...): a Conditions, a preset name of conditions.PRESETS, or "mixed"
    # (a random condition per frame, for training data); the default changes nothing
    conditions: imaging.Conditions | str = field(default_factory=imaging.Conditions)

    def __post_init__(self):
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} is too small (need >= 16x16)")
        if not 10.0 <= self.hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg={self.hfov_deg} is not a pinhole field of view (10..170)")
        if self.camera_height[0] <= 0.2 or self.camera_height[1] < self.camera_height[0]:
            raise ValueError(f"camera_height={self.camera_height} must be an increasing range above 0.2 m")
        for name, (lo, hi), limit in (("pitch_deg", self.pitch_deg, 60.0), ("roll_deg", self.roll_deg, 45.0),
                                      ("yaw_deg", self.yaw_deg, 60.0), ("camera_x", self.camera_x, 10.0)):
            if not (-limit <= lo <= hi <= limit):
                raise ValueError(f"{name}=({lo:g}, {hi:g}) must be an increasing range within +-{limit:g}")
        if not 0.0 <= self.crowd_probability <= 1.0:
            raise ValueError(f"crowd_probability={self.crowd_probability} is not a probability")
        if self.noise < 0:
            raise ValueError(f"noise={self.noise} must be >= 0")
        if isinstance(self.conditions, str) and self.conditions != imaging.MIXED:
            self.conditions = imaging.preset(self.conditions)


def _value_noise(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Tileable multi-octave value noise in about [-1, 1] (float32)."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for cells in (8, 32, 128, 512):
        g = rng.standard_normal((cells, cells)).astype(np.float32)
        g = np.tile(g, (2, 2))  # wrap so the resized pattern tiles
        up = cv2.resize(g, (2 * size, 2 * size), interpolation=cv2.INTER_CUBIC)[size // 2: size // 2 + size,
                                                                                size // 2: size // 2 + size]
        out += amp * up
        amp *= 0.6
    return out / np.abs(out).max()


class SyntheticWorld:
    """Random street scenes with exact panoptic / depth / bird's-eye truth (see the module docstring)."""

    def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 0):
        self.config = config
        self.seed = int(seed)
        self.taxonomy = TAX
        self._noise_tex = _value_noise(np.random.default_rng([self.seed, 7]))
        W, H = config.width, config.height
        self._u = np.arange(W, dtype=np.float64) + 0.5
        self._v = np.arange(H, dtype=np.float64) + 0.5
        self._base_camera = CameraModel.from_fov(W, H, config.hfov_deg)
        K = self._base_camera.K  # distance along a pixel's ray = optical depth * this (for fog)
        self._ray_length = np.sqrt(1.0 + ((self._u[None, :] - K[0, 2]) / K[0, 0]) ** 2
                                   + ((self._v[:, None] - K[1, 2]) / K[1, 1]) ** 2).astype(np.float32)
        H = config.height
        gx, gy = config.grid.cell_centers()
        self._cells = np.stack([gx.ravel(), gy.ravel()], 1)
        self._cells32 = self._cells.astype(np.float32)
        self._ground_ids = TAX.ids.astype(np.int32) * 1000
        self._sensor_noise = np.random.default_rng([self.seed, 8]).standard_normal((2 * H, 2 * W, 3), np.float32)

    # -- public API -------------------------------------------------------------------------------------
    def frame(self, index: int) -> Frame:
        """An independent random scene, deterministic for (seed, index)."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index), 0])
        scene = generate_scene(rng, -30.0, SCENE_AHEAD, self.config.crowd_probability)
        mount = self._sample_mount(rng)
        heading = np.radians(rng.normal(0, 1.5))
        return self._render(scene, rng, mount, 0.0, 0.0, heading, int(index * 1e8), f"world{self.seed}_{index:06d}")

    def drive(self, n_frames: int, fps: float = 10.0, start_index: int = 0) -> Iterator[Frame]:
        """``n_frames`` temporally coherent frames: the ego car drives forward along one street."""
        if n_frames < 0 or fps <= 0:
            raise ValueError(f"need n_frames >= 0 and fps > 0, got {n_frames}, {fps}")
        rng = np.random.default_rng([self.seed, int(start_index), 1])
        duration = n_frames / fps
        probe = np.random.default_rng([self.seed, int(start_index), 2]).uniform(5, 14)
        scene = generate_scene(rng, -30.0, probe * duration * 1.3 + SCENE_AHEAD, self.config.crowd_probability,
                               drive=True)
        mount = self._sample_mount(rng)
        jitter = np.random.default_rng([self.seed, int(start_index), 3])
        for k in range(n_frames):
            t = k / fps
            m = Pose(mount.x, mount.y, mount.z + jitter.normal(0, 0.005), mount.roll,
                     mount.pitch + np.radians(jitter.normal(0, 0.15)), mount.yaw)
            frame_rng = np.random.default_rng([self.seed, int(start_index), 4, k])
            yield self._render(scene, frame_rng, m, t, scene.ego_speed * t, 0.0,
                               int(round((start_index + k) * 1e9 / fps)), f"drive{self.seed}_{start_index}_{k:06d}")

    # -- internals --------------------------------------------------------------------------------------
    def _conditions(self, stamp: int) -> imaging.Conditions:
        if self.config.conditions == imaging.MIXED:
            return imaging.sample_mixed(np.random.default_rng([self.seed, stamp, 6]))
        return self.config.conditions

    def _sample_mount(self, rng) -> Pose:
        c = self.config
        z, roll, pitch, yaw = (rng.uniform(*c.camera_height), np.radians(rng.uniform(*c.roll_deg)),
                               np.radians(rng.uniform(*c.pitch_deg)), np.radians(rng.uniform(*c.yaw_deg)))
        # drawn last and only for a real range, so the default worlds (and their data sets) stay as they were
        x = c.camera_x[0] if c.camera_x[0] == c.camera_x[1] else rng.uniform(*c.camera_x)
        return Pose(float(x), 0.0, z, roll, pitch, yaw)

    def _noise(self, a, b, scale):
        i = (a * scale).astype(np.int64) & 511
        j = (b * scale).astype(np.int64) & 511
        return self._noise_tex[i, j]

    def _ground_class(self, sc: Scene, s, d) -> np.ndarray:
        out = np.full(d.shape, TAX.train_id("road"), np.uint8)
        for sign, edge, side in ((1, sc.road_left, sc.left), (-1, sc.road_right, sc.right)):
            beyond = sign * d - edge
            m = beyond > 0
            band = np.searchsorted(np.cumsum(side.widths), beyond[m], side="right")
            cls = np.asarray(side.classes, np.uint8)[band]
            for s_x, half in sc.crossings:  # cross streets: road with a sidewalk along each side
                a = np.abs(s[m] - s_x)
                cls[a < half + 2.5] = TAX.train_id("sidewalk")
                cls[a < half] = TAX.train_id("road")
            out[m] = cls
        return out

    def _render(self, sc: Scene, rng, mount: Pose, t: float, ego_s: float, ego_heading: float, stamp: int,
                name: str) -> Frame:
        cfg = self.config
        H, W = cfg.height, cfg.width
        ex, ey, ephi = sc.road.to_world(ego_s, sc.ego_d)
        ex, ey, epsi = float(ex), float(ey), float(ephi) + ego_heading
        ce, se = np.cos(epsi), np.sin(epsi)
        cam_world = self._base_camera.with_pose(Pose(ex + ce * mount.x - se * mount.y, ey + se * mount.x + ce * mount.y,
                                                     mount.z, mount.roll, mount.pitch, mount.yaw + epsi))
        R = cam_world.rotation_parent_from_optical()
        C = cam_world.pose.translation()
        K = cam_world.K
        # rays (world, optical z-component 1), so a hit at optical depth z is C + z * ray
        xn = (self._u - K[0, 2]) / K[0, 0]
        yn = (self._v - K[1, 2]) / K[1, 1]
        rays = (xn[None, :, None] * R[:, 0] + yn[:, None, None] * R[:, 1] + R[:, 2]).astype(np.float32)

        # ---- ground depth (its classes and texture are computed later, only where it stays visible)
        dz = rays[..., 2]
        with np.errstate(divide="ignore"):
            tg = np.where(dz < -1e-6, -C[2] / dz, np.inf).astype(np.float32)
        ground = tg < 3000.0
        inv_depth = np.where(ground, 1.0 / tg, 0.0).astype(np.float32)
        face_key = np.full((H, W), -1, np.int32)

        # ---- objects near the ego car
        o_s = sc.o_s + sc.o_v * t
        rel = o_s - ego_s
        active = (rel > -40) & (rel < cfg.max_distance + 30)
        ox, oy, ophi = sc.road.to_world(o_s, sc.o_d)
        oyaw = ophi + sc.o_hdg
        # panoptic ids: stuff = cat * 1000; things numbered per category among active objects
        pan = sc.o_cat * 1000
        thing_idx = np.flatnonzero(active & sc.o_thing)
        counters: dict[int, int] = {}
        for i in thing_idx:
            k = counters.get(sc.o_cat[i], 0) + 1
            if k >= 1000:
                raise ValueError(f"more than 999 things of category {sc.o_cat[i]} near the ego car")
            counters[sc.o_cat[i]] = k
            pan[i] = sc.o_cat[i] * 1000 + k
        parts = np.flatnonzero(active[sc.p_obj])
        po = sc.p_obj[parts]
        cy_, sy_ = np.cos(oyaw[po]), np.sin(oyaw[po])
        off = sc.p_off[parts]
        centers = np.stack([ox[po] + cy_ * off[:, 0] - sy_ * off[:, 1], oy[po] + sy_ * off[:, 0] + cy_ * off[:, 1],
                            off[:, 2]], 1)
        yaws = oyaw[po] + sc.p_yaw[parts]
        batch = place_solids(sc.p_tpl[parts], centers, yaws, sc.p_size[parts])
        rasterize(batch, R, C, K, inv_depth, face_key)

        solid = face_key >= 0
        depth = np.where(inv_depth > 0, 1.0 / np.maximum(inv_depth, 1e-12), np.inf).astype(np.float32)
        img = np.empty((H, W, 3), np.float32)
        panoptic = np.full((H, W), SKY_ID, np.int32)

        # ---- sky
        sky_px = ~ground & ~solid
        if sky_px.any():
            r = rays[sky_px]
            elev = r[:, 2] / np.linalg.norm(r, axis=-1)
            sky_w = np.clip(elev * 3.0, 0, 1)[:, None]
            clouds = np.clip(self._noise(np.arctan2(r[:, 1], r[:, 0]) * 40.0, elev * 120.0, 1.0), 0, 1)
            img[sky_px] = sc.sky_horizon * (1 - sky_w) + sc.sky_top * sky_w + clouds[:, None] * 60

        # ---- ground
        gpx = ground & ~solid
        if gpx.any():
            tz = tg[gpx]
            r = rays[gpx]
            gx, gy = C[0] + tz * r[:, 0], C[1] + tz * r[:, 1]
            gs, gd = sc.road.to_road(gx, gy)
            gclass = self._ground_class(sc, gs, gd)
            panoptic[gpx] = self._ground_ids[gclass]
            gcol = sc.ground_colors[gclass] * (1.0 + 0.12 * self._noise(gx, gy, 6.0)
                                               + 0.06 * self._noise(gy, gx, 40.0))[:, None]
            road = gclass == TAX.train_id("road")
            ri = np.flatnonzero(road)
            rs, rd = gs[ri], gd[ri]
            paint = np.zeros(ri.size, np.int8)  # 1 white, 2 yellow, 3 rail
            for d_l, kind in sc.lane_lines:
                if kind == 2:
                    on = np.abs(np.abs(rd - d_l) - 0.12) < 0.06
                else:
                    on = np.abs(rd - d_l) < 0.07
                    if kind == 0:
                        on &= np.mod(rs, 9.0) < 3.0
                paint[on] = 2 if kind == 2 else 1
            for s_c in sc.crosswalks:
                paint[(np.abs(rs - s_c) < 2.0) & (np.mod(rd, 1.0) < 0.5)] = 1
            for d_r in sc.rails:
                paint[np.abs(np.abs(rd - d_r) - 0.72) < 0.04] = 3
            for k, rgb in ((1, (225, 225, 220)), (2, (215, 180, 60)), (3, (60, 58, 55))):
                gcol[ri[paint == k]] = rgb
            kerb = ~road & (np.abs(np.where(gd > 0, gd - sc.road_left, -gd - sc.road_right)) < 0.15)
            gcol[kerb] *= 1.25
            lit = self._sunlit(sc, batch, gx, gy, ex, ey, epsi)
            img[gpx] = gcol * ((0.55 + 0.45 * max(sc.sun[2], 0.0)) * (0.55 + 0.45 * lit))[:, None]

        # ---- solids: per-face sun shading, per-material texture from solid-local coordinates
        if solid.any():
            normals = batch.face_normals
            shade = 0.42 + 0.6 * np.clip(normals @ sc.sun, 0, None) + 0.08 * normals[:, 2]
            fk = face_key[solid]
            fs = batch.face_solid[fk]
            p = parts[fs]
            panoptic[solid] = pan[sc.p_obj[p]]
            z = depth[solid]
            P = C[None] + z[:, None] * rays[solid]
            cyaw, syaw = np.cos(yaws[fs]), np.sin(yaws[fs])
            dxy = P[:, :2] - centers[fs, :2]
            lx = cyaw * dxy[:, 0] + syaw * dxy[:, 1]
            ly = -syaw * dxy[:, 0] + cyaw * dxy[:, 1]
            lz = P[:, 2] - centers[fs, 2]
            col = sc.p_color[p].copy()
            mat = sc.p_mat[p]
            par = sc.p_par[p]
            side = np.abs(normals[fk, 2]) < 0.5
            tc = lx + ly  # runs along every vertical face of a yawed box (the other term is constant there)
            col *= (1.0 + 0.07 * self._noise(tc + P[:, 2] * 3.1, lz + tc * 0.7, 20.0))[:, None]
            m = np.flatnonzero((mat == FACADE) & side)
            if m.size:
                fu = np.mod(tc[m] / par[m, 0], 1.0); fv = np.mod(lz[m] / par[m, 1], 1.0)
                win = m[(fu > 0.22) & (fu < 0.72) & (fv > 0.3) & (fv < 0.8)]
                col[win] = np.array([55, 65, 80]) + 50 * self._noise(tc[win], lz[win], 2.0)[:, None]
            m = np.flatnonzero(mat == VEHICLE)
            if m.size:
                height = sc.p_size[p[m], 2]
                band = (lz[m] > par[m, 1]) & (lz[m] < height - 0.3) & side[m] & (par[m, 1] > 0)
                col[m[band]] = (45, 55, 65)
                col[m[lz[m] < par[m, 0]]] = (28, 28, 30)
            m = np.flatnonzero((mat == GLASS) & side)
            col[m] = np.array([50, 58, 68]) * (1 + 0.2 * self._noise(tc[m], lz[m], 5.0))[:, None]
            m = np.flatnonzero(mat == FOLIAGE)
            col[m] *= (0.75 + 0.5 * self._noise(P[m, 0] + P[m, 2], P[m, 1] - P[m, 2], 12.0))[:, None]
            m = np.flatnonzero((mat == FENCE) & side)
            if m.size:
                col[m[np.mod(tc[m] / par[m, 0], 1.0) >= 0.4]] *= 0.45
            m = np.flatnonzero((mat == LIGHT) & side)
            if m.size:
                lit = par[m, 0].astype(int)
                for k, (zl, rgb) in enumerate(zip((0.8, 0.5, 0.2), ((230, 40, 30), (240, 190, 30), (40, 220, 90)))):
                    on = (ly[m] ** 2 + (lz[m] - zl) ** 2) < 0.11 ** 2
                    col[m[on]] = np.array(rgb) * np.where(lit[on] == k, 1.0, 0.3)[:, None]
            m = np.flatnonzero((mat == SIGN) & side)
            if m.size:
                half = sc.p_size[p[m], 2] / 2
                edge = np.maximum(np.abs(ly[m]), np.abs(lz[m] - half)) > half * 0.76
                col[m[edge]] = (235, 235, 235)
            img[solid] = col * shade[fk][:, None]
        img *= sc.brightness
        cond = self._conditions(stamp)
        if not cond.is_clear:  # own random streams: a clear frame renders exactly as before conditions existed
            img = imaging.apply(img, depth * self._ray_length, cond, np.random.default_rng([self.seed, stamp, 5]))
        if cfg.noise > 0:  # sensor noise: a random window of a fixed Gaussian field (cheap, per-frame different)
            oy_, ox_ = rng.integers(0, H), rng.integers(0, W)
            img += (255 * cfg.noise) * self._sensor_noise[oy_: oy_ + H, ox_: ox_ + W]
        image = np.clip(img, 0, 255).astype(np.uint8)

        # ---- truth
        base_cam = self._base_camera.with_pose(mount)
        things = self._thing_truth(sc, panoptic, pan, ox, oy, oyaw, ex, ey, epsi)
        bev = self._bev(sc, panoptic, base_cam, parts, centers, yaws, pan, ex, ey, epsi)
        segments = segments_from_ids(panoptic, TAX)
        return Frame(image=image, panoptic=panoptic, segments=segments, name=name, camera=base_cam,
                     stamp_ns=stamp, bev=bev, things=things, depth=depth)

    def _sunlit(self, sc: Scene, batch, gx, gy, ex, ey, epsi) -> np.ndarray:
        """1 where ground points (gx, gy) see the sun, 0 in a cast shadow (float32).

        Shadows are the convex hulls of each solid's vertices and their projections along the sun onto
        the ground, filled into a raster around the ego car (base_link x in [-20, 180), y in [-60, 60)).
        """
        res, x0, y0, nx, ny = SHADOW_RES, -20.0, -60.0, 800, 480
        shadow = np.zeros((ny, nx), np.uint8)
        sun = sc.sun
        for verts in batch.verts:
            if len(verts) == 0:
                continue
            drop = verts[..., 2:3] / sun[2]
            pts = np.concatenate([verts[..., :2], verts[..., :2] - drop * sun[:2]], 1)
            bx, by = self._to_base(pts[..., 0], pts[..., 1], ex, ey, epsi)
            pxy = np.stack([(bx - x0) / res - 0.5, (by - y0) / res - 0.5], -1).astype(np.float32)
            lo, hi = pxy.min(1), pxy.max(1)
            near = (hi[:, 0] > 0) & (lo[:, 0] < nx) & (hi[:, 1] > 0) & (lo[:, 1] < ny)
            for k in np.flatnonzero(near):
                hull = cv2.convexHull(pxy[k])
                cv2.fillConvexPoly(shadow, np.round(hull * 4).astype(np.int32), 255, cv2.LINE_8, 2)
        shadow = cv2.blur(shadow, (3, 3))  # soft edges instead of raster staircases
        bx, by = self._to_base(gx, gy, ex, ey, epsi)
        c = ((bx - x0) / res).astype(np.int64)
        r = ((by - y0) / res).astype(np.int64)
        inside = (c >= 0) & (c < nx) & (r >= 0) & (r < ny)
        lit = np.ones(gx.shape, np.float32)
        lit[inside] = 1.0 - shadow[r[inside], c[inside]] * np.float32(1 / 255)
        return lit

    @staticmethod
    def _to_base(x, y, ex, ey, epsi):
        c, s = np.cos(epsi), np.sin(epsi)
        dx, dy = np.asarray(x) - ex, np.asarray(y) - ey
        return c * dx + s * dy, -s * dx + c * dy

    def _thing_truth(self, sc, panoptic, pan, ox, oy, oyaw, ex, ey, epsi) -> list[ThingTruth]:
        ids = np.unique(panoptic)
        ids = ids[ids % 1000 > 0]
        out = []
        by_id = {int(pan[i]): i for i in np.flatnonzero(sc.o_thing)}
        for seg_id in ids.tolist():
            i = by_id[seg_id]
            x0, x1, y0, y1, z1 = sc.o_box[i]
            lx = np.array([x0, x1, x1, x0]); ly = np.array([y0, y0, y1, y1])
            c, s = np.cos(oyaw[i]), np.sin(oyaw[i])
            wx, wy = ox[i] + c * lx - s * ly, oy[i] + s * lx + c * ly
            bx, by = self._to_base(wx, wy, ex, ey, epsi)
            fp = np.stack([bx, by], 1)
            corners = np.concatenate([np.column_stack([fp, np.zeros(4)]), np.column_stack([fp, np.full(4, z1)])])
            out.append(ThingTruth(seg_id, seg_id // 1000, fp, float(z1), corners))
        return out

    def _bev(self, sc, panoptic, cam: CameraModel, parts, centers, yaws, pan, ex, ey, epsi) -> BevTruth:
        g = self.config.grid
        c, s = np.cos(epsi), np.sin(epsi)
        bx, by = self._cells[:, 0], self._cells[:, 1]
        wx, wy = ex + c * bx - s * by, ey + s * bx + c * by
        gs, gd = sc.road.to_road(wx, wy)
        ground_class = self._ground_class(sc, gs, gd).reshape(g.shape)
        label = np.zeros(g.shape, np.int32)
        # footprints of parts standing on (near) the ground, stuff first so things win where both are
        low = np.flatnonzero(centers[:, 2] < OCCUPY_BELOW)
        size = sc.p_size[parts[low]]
        cx_, cy_ = self._to_base(centers[low, 0], centers[low, 1], ex, ey, epsi)
        yb = yaws[low] - epsi
        keep = (cx_ + size[:, :2].max(1) > g.x_min) & (cx_ - size[:, :2].max(1) < g.x_max) & \
               (cy_ + size[:, :2].max(1) > g.y_min) & (cy_ - size[:, :2].max(1) < g.y_max)
        lab = pan[sc.p_obj[parts[low]]]
        sel = np.flatnonzero(keep)
        sel = sel[np.argsort(lab[sel] % 1000 > 0, kind="stable")]
        lx = np.array([-0.5, 0.5, 0.5, -0.5]) * size[sel, 0:1]
        ly = np.array([-0.5, -0.5, 0.5, 0.5]) * size[sel, 1:2]
        cb, sb = np.cos(yb[sel])[:, None], np.sin(yb[sel])[:, None]
        col = (cx_[sel, None] + cb * lx - sb * ly - g.x_min) / g.resolution - 0.5
        row = (cy_[sel, None] + sb * lx + cb * ly - g.y_min) / g.resolution - 0.5
        polys = np.round(np.stack([col, row], -1) * 16).astype(np.int32)
        for j, poly in zip(lab[sel].tolist(), polys):
            cv2.fillConvexPoly(label, poly, j, cv2.LINE_8, 4)
        occupied = label > 0
        instance = np.where(label % 1000 > 0, label, 0).astype(np.int32)
        # visibility of each cell centre's ground point
        # (the ground homography of a distortion-free camera; its third row is the optical depth)
        Hg = cam.ground_homography().astype(np.float32)
        q = self._cells32 @ Hg[:, :2].T + Hg[:, 2]
        z = q[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = q[:, 0] / z, q[:, 1] / z
        H, W = panoptic.shape
        with np.errstate(invalid="ignore"):
            inview = (z > 0.1) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        vis = np.zeros(bx.shape, bool)
        ii = np.flatnonzero(inview)
        col = u[ii].astype(np.int64); row = v[ii].astype(np.int64)
        occ = occupied.ravel()[ii]
        free_ok = np.isin(panoptic[row, col], self._ground_ids[GROUND_TRAIN_IDS])
        obj_ok = panoptic[row, col] == label.ravel()[ii]
        vis[ii] = np.where(occ, obj_ok, free_ok)
        return BevTruth(g, ground_class, occupied, instance, vis.reshape(g.shape))
