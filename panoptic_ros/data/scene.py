"""Procedural street scenes: a road (straight or arc) with lanes, sidewalks, terrain, buildings, street
furniture, vegetation and things (vehicles, people, riders, trams), all placed in road coordinates.

Road coordinates: ``s`` metres along the centre line, ``d`` metres to its left. World frame = road frame
at s = 0 (x along the road, y left, z up).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import Taxonomy
from .render import BOX, DISC_X, PRISM_Z, WHEEL_Y

TAX = Taxonomy.cityscapes()
CAT = {c.name: c.id for c in TAX.categories}

# materials (how a solid's pixels are textured)
PLAIN, FACADE, VEHICLE, GLASS, FOLIAGE, FENCE, LIGHT, SIGN = range(8)


class Road:
    """Centre line: straight (radius inf) or a circular arc of signed radius (positive turns left)."""

    def __init__(self, radius: float = np.inf):
        self.radius = float(radius)

    @property
    def straight(self) -> bool:
        return not np.isfinite(self.radius)

    def to_world(self, s, d):
        s, d = np.asarray(s, float), np.asarray(d, float)
        if self.straight:
            return s, d, np.zeros_like(s)
        R = self.radius
        phi = s / R
        return (R - d) * np.sin(phi), R - (R - d) * np.cos(phi), phi

    def to_road(self, x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        if self.straight:
            return x, y
        R = self.radius
        sg = np.sign(R)
        rho = np.hypot(x, y - R)
        return R * np.arctan2(sg * x, sg * (R - y)), R - sg * rho


@dataclass
class Side:
    """Ground bands beyond one road edge: classes (train ids) and widths; the last band is unbounded."""

    classes: list
    widths: list  # len(classes) - 1
    frontage: float  # |d| where buildings / walls start


@dataclass
class Scene:
    road: Road
    road_left: float  # d of the left road edge (> 0)
    road_right: float  # |d| of the right road edge
    lane_lines: list  # (d, kind) with kind 0 dashed white, 1 solid white, 2 solid yellow
    rails: list  # d of tram rail centre lines
    crosswalks: list  # s of zebra crossings
    left: Side
    right: Side
    sun: np.ndarray  # unit vector towards the sun (world)
    brightness: float
    ground_colors: np.ndarray  # (19, 3) float per train id
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    ego_d: float
    ego_speed: float
    crowded: bool
    crossings: list = field(default_factory=list)  # (s, half width) of cross streets
    # objects: road pose + speed; parts reference objects
    obj_s: list = field(default_factory=list)
    obj_d: list = field(default_factory=list)
    obj_hdg: list = field(default_factory=list)
    obj_v: list = field(default_factory=list)
    obj_cat: list = field(default_factory=list)  # category id
    obj_thing: list = field(default_factory=list)
    obj_box: list = field(default_factory=list)  # (x0, x1, y0, y1, z1) local bounding box of a thing
    parts: list = field(default_factory=list)  # (obj, template, ox, oy, oz, yaw, sx, sy, sz, mat, r, g, b, p0, p1)

    def add(self, s, d, hdg, cat, thing, parts, v=0.0):
        k = len(self.obj_s)
        self.obj_s.append(s); self.obj_d.append(d); self.obj_hdg.append(hdg); self.obj_v.append(v)
        self.obj_cat.append(CAT[cat]); self.obj_thing.append(thing)
        lo = np.array([np.inf] * 3); hi = -lo
        for p in parts:
            self.parts.append((k,) + tuple(p))
            tpl, ox, oy, oz, yaw, sx, sy, sz = p[:8]
            # parts are only yawed by 0 or pi/2 about their own centre; extents in object frame:
            ex, ey = (sx, sy) if abs(np.sin(yaw)) < 0.5 else (sy, sx)
            lo = np.minimum(lo, [ox - ex / 2, oy - ey / 2, oz]); hi = np.maximum(hi, [ox + ex / 2, oy + ey / 2, oz + sz])
        self.obj_box.append((lo[0], hi[0], lo[1], hi[1], hi[2]))

    def remove(self, drop):
        """Remove the objects whose indices are in ``drop`` (with their parts)."""
        drop = set(int(k) for k in drop)
        keep = [k for k in range(len(self.obj_s)) if k not in drop]
        new = {k: i for i, k in enumerate(keep)}
        for name in ("obj_s", "obj_d", "obj_hdg", "obj_v", "obj_cat", "obj_thing", "obj_box"):
            old = getattr(self, name)
            setattr(self, name, [old[k] for k in keep])
        self.parts = [(new[p[0]],) + tuple(p[1:]) for p in self.parts if p[0] in new]

    def freeze(self):
        """Lists -> arrays (call once after building)."""
        self.o_s = np.array(self.obj_s, float); self.o_d = np.array(self.obj_d, float)
        self.o_hdg = np.array(self.obj_hdg, float); self.o_v = np.array(self.obj_v, float)
        self.o_cat = np.array(self.obj_cat, np.int64); self.o_thing = np.array(self.obj_thing, bool)
        self.o_box = np.array(self.obj_box, float).reshape(-1, 5)
        P = np.array(self.parts, float).reshape(-1, 15)
        self.p_obj = P[:, 0].astype(np.int64); self.p_tpl = P[:, 1].astype(np.int64)
        self.p_off = P[:, 2:5]; self.p_yaw = P[:, 5]; self.p_size = P[:, 6:9]
        self.p_mat = P[:, 9].astype(np.int64); self.p_color = P[:, 10:13]; self.p_par = P[:, 13:15]
        return self


def _part(tpl, ox, oy, oz, sx, sy, sz, mat, color, p0=0.0, p1=0.0, yaw=0.0):
    return (tpl, ox, oy, oz, yaw, sx, sy, sz, mat, color[0], color[1], color[2], p0, p1)


# --------------------------------------------------------------------------------------------- things
CAR_COLORS = np.array([[200, 200, 205], [30, 30, 35], [150, 20, 25], [20, 50, 120], [120, 125, 130],
                       [230, 230, 225], [60, 90, 60], [180, 150, 60], [90, 60, 40], [70, 70, 80]], float)


def _vehicle_color(rng):
    return CAR_COLORS[rng.integers(len(CAR_COLORS))] * rng.uniform(0.85, 1.15)


def car_parts(rng):
    l, w, h = rng.uniform(3.8, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.38, 1.65)
    col = _vehicle_color(rng)
    hb = 0.6 * h
    kind = rng.random()
    cab_l = l * (0.5 if kind < 0.7 else 0.75)  # saloon or van/suv-like
    cab_x = -0.08 * l if kind < 0.7 else -0.1 * l
    return [_part(BOX, 0, 0, 0, l, w, hb, VEHICLE, col, 0.32),
            _part(BOX, cab_x, 0, hb, cab_l, w * 0.88, h - hb, GLASS, col)]


def truck_parts(rng):
    l, w = rng.uniform(6.5, 11), rng.uniform(2.3, 2.55)
    hc, hx = rng.uniform(2.6, 3.2), rng.uniform(3.2, 4.0)
    col, cargo = _vehicle_color(rng), np.array([rng.uniform(150, 240)] * 3) * rng.uniform(0.8, 1.1, 3)
    lc = 2.3
    return [_part(BOX, l / 2 - lc / 2, 0, 0, lc, w, hc, VEHICLE, col, 0.7, 1.7),
            _part(BOX, -lc / 2, 0, 0, l - lc - 0.1, w, hx, VEHICLE, cargo, 0.9)]


def bus_parts(rng):
    l, w, h = rng.uniform(10, 13.5), 2.55, rng.uniform(3.0, 3.4)
    col = np.array([[200, 40, 30], [240, 200, 40], [40, 90, 170], [230, 230, 230], [40, 140, 80]],
                   float)[rng.integers(5)]
    return [_part(BOX, 0, 0, 0, l, w, h, VEHICLE, col, 0.4, 1.1, )]


def train_parts(rng):
    n_cars = int(rng.integers(1, 3))
    lc, w, h = rng.uniform(11, 16), 2.65, rng.uniform(3.3, 3.7)
    col = np.array([[220, 220, 215], [200, 30, 30], [240, 200, 50], [60, 120, 180]], float)[rng.integers(4)]
    total = n_cars * lc + (n_cars - 1) * 0.4
    return [_part(BOX, -total / 2 + lc / 2 + k * (lc + 0.4), 0, 0, lc, w, h, VEHICLE, col, 0.6, 1.2)
            for k in range(n_cars)]


def person_parts(rng, scale=None):
    s = scale or rng.uniform(0.9, 1.1)
    d, wd = 0.3 * s, 0.46 * s
    shirt = rng.uniform(20, 230, 3)
    trousers = rng.uniform(20, 120, 3)
    skin = np.array([225, 180, 150]) * rng.uniform(0.45, 1.05)
    return [_part(BOX, 0, 0, 0, d, wd, 0.82 * s, PLAIN, trousers),
            _part(BOX, 0, 0, 0.82 * s, d, wd, 0.62 * s, PLAIN, shirt),
            _part(BOX, 0, 0, 1.44 * s, 0.22 * s, 0.2 * s, 0.26 * s, PLAIN, skin)]


def rider_parts(rng, seat=0.75, forward=0.0):
    shirt = rng.uniform(20, 230, 3)
    skin = np.array([225, 180, 150]) * rng.uniform(0.45, 1.05)
    return [_part(BOX, forward - 0.05, 0, 0.15, 0.45, 0.4, seat - 0.15, PLAIN, rng.uniform(20, 100, 3)),
            _part(BOX, forward + 0.05, 0, seat, 0.35, 0.44, 0.62, PLAIN, shirt),
            _part(BOX, forward + 0.12, 0, seat + 0.62, 0.22, 0.2, 0.26, PLAIN, skin)]


def bicycle_parts(rng):
    r, base = 0.34, rng.uniform(1.0, 1.1)
    col = rng.uniform(20, 230, 3)
    tyre = np.array([25.0, 25, 25])
    return [_part(WHEEL_Y, -base / 2, 0, 0, 2 * r, 0.08, 2 * r, PLAIN, tyre),
            _part(WHEEL_Y, base / 2, 0, 0, 2 * r, 0.08, 2 * r, PLAIN, tyre),
            _part(BOX, 0, 0, r, base * 0.9, 0.1, 0.45, PLAIN, col),
            _part(BOX, base / 2 - 0.05, 0, 0.85, 0.1, 0.5, 0.08, PLAIN, col * 0.5)]


def motorcycle_parts(rng):
    r, base = 0.31, rng.uniform(1.3, 1.5)
    col = _vehicle_color(rng)
    tyre = np.array([20.0, 20, 20])
    return [_part(WHEEL_Y, -base / 2, 0, 0, 2 * r, 0.14, 2 * r, PLAIN, tyre),
            _part(WHEEL_Y, base / 2, 0, 0, 2 * r, 0.14, 2 * r, PLAIN, tyre),
            _part(BOX, 0, 0, 0.3, base * 0.85, 0.36, 0.5, VEHICLE, col, 0.15),
            _part(BOX, base / 2 - 0.15, 0, 0.8, 0.2, 0.7, 0.15, PLAIN, np.array([40.0, 40, 40]))]


# ----------------------------------------------------------------------------------------- generator
def _palette(rng):
    g = np.zeros((19, 3))
    g[TAX.train_id("road")] = np.array([88, 88, 92]) * rng.uniform(0.75, 1.25)
    g[TAX.train_id("sidewalk")] = np.array([165, 160, 150]) * rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3)
    if rng.random() < 0.7:
        g[TAX.train_id("terrain")] = np.array([95, 130, 60]) * rng.uniform(0.7, 1.2, 3)
    else:
        g[TAX.train_id("terrain")] = np.array([140, 120, 90]) * rng.uniform(0.8, 1.15, 3)
    return g


def _side(rng, urban):
    sw, ter = TAX.train_id("sidewalk"), TAX.train_id("terrain")
    r = rng.random()
    if r < 0.45:
        classes, widths = [sw, ter], [rng.uniform(1.8, 4.5)]
    elif r < 0.7:
        classes, widths = [ter, sw, ter], [rng.uniform(1.0, 3.0), rng.uniform(1.5, 3.0)]
    elif r < 0.85:
        classes, widths = [sw, sw], [rng.uniform(2.0, 5.0)]
    else:
        classes, widths = [ter, ter], [rng.uniform(2.0, 5.0)]
    frontage = sum(widths) + (rng.uniform(0.0, 0.6) if urban > 0.5 else rng.uniform(0.5, 6.0))
    return Side(classes, widths, frontage)


def generate_scene(rng: np.random.Generator, s_lo: float, s_hi: float, crowd_probability: float,
                   drive: bool = False) -> Scene:
    """A random street between ``s_lo`` and ``s_hi`` (metres along the road)."""
    curved = rng.random() < 0.45
    radius = np.inf if not curved else rng.choice([-1, 1]) * rng.uniform(60, 350)
    lane_w = rng.uniform(2.9, 3.6)
    n_same, n_opp = int(rng.choice([1, 1, 2, 2, 3])), int(rng.choice([0, 1, 1, 1, 2]))
    park_r = rng.random() < 0.6
    park_l = n_opp > 0 and rng.random() < 0.5
    crowded = rng.random() < crowd_probability
    park_r = park_r or crowded
    park_w = 2.3
    road_right = n_same * lane_w + park_r * park_w
    road_left = max(n_opp * lane_w, 0.3) + park_l * park_w
    lines = [(-n_same * lane_w, 1)] + [(-k * lane_w, 0) for k in range(1, n_same)]
    lines += [(0.0, 2 if n_opp else 1)] + [(k * lane_w, 0) for k in range(1, n_opp)]
    if n_opp:
        lines.append((n_opp * lane_w, 1))
    urban = rng.random()
    tram = rng.random() < 0.32
    rails = []
    if tram:
        rails = [(-lane_w / 2 if n_opp == 0 else lane_w / 2 if rng.random() < 0.5 else -(n_same - 0.5) * lane_w)]
    elev = np.radians(rng.uniform(15, 70)); az = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
    sc = Scene(Road(radius), road_left, road_right, lines, rails,
               [rng.uniform(10, 60)] if rng.random() < 0.25 else [],
               _side(rng, urban), _side(rng, urban), sun, rng.uniform(0.65, 1.3), _palette(rng),
               np.array([70, 120, 200]) * rng.uniform(0.7, 1.15, 3), np.array([200, 215, 230]) * rng.uniform(0.8, 1.1),
               -(n_same - 0.5 - int(rng.integers(n_same))) * lane_w, rng.uniform(5, 14), crowded)
    if drive:
        s = rng.uniform(30, 120)
        while s < s_hi - 20:
            sc.crossings.append((s, rng.uniform(3.0, 5.5)))
            s += rng.uniform(80, 220)
    elif rng.random() < 0.35:
        sc.crossings.append((rng.uniform(12, 70), rng.uniform(3.0, 5.5)))
    _place_roadside(sc, rng, s_lo, s_hi, urban)
    _place_things(sc, rng, s_lo, s_hi, lane_w, n_same, n_opp, park_r, park_l, drive)
    _place_crossings(sc, rng, lane_w, park_r, park_l)
    return sc.freeze()


def _place_crossings(sc: Scene, rng, lane_w, park_r, park_l):
    """Clear the cross streets of roadside objects and parked vehicles, then add corner traffic lights
    and cross traffic waiting or standing on them."""
    free_l = sc.road_left - (2.4 if park_l else 0.2)
    free_r = sc.road_right - (2.4 if park_r else 0.2)
    drop = []
    for k, (s, d, box) in enumerate(zip(sc.obj_s, sc.obj_d, sc.obj_box)):
        radius = max(abs(v) for v in box[:4])
        if (d > free_l or d < -free_r) and any(abs(s - sx) < hw + 1.0 + radius for sx, hw in sc.crossings):
            drop.append(k)
    sc.remove(drop)
    for sx, hw in sc.crossings:
        for sign, edge in ((1, sc.road_left), (-1, sc.road_right)):
            _pole(sc, rng, sx - hw - 1.2, sign * (edge + 0.4), sign, "light")
            for _ in range(int(rng.integers(0, 4))):
                hdg = rng.choice([np.pi / 2, -np.pi / 2])
                s_lane = sx + (lane_w / 2 if hdg > 0 else -lane_w / 2) * min(1.0, hw / lane_w)
                r = rng.random()
                parts, cat = (car_parts(rng), "car") if r < 0.75 else (truck_parts(rng), "truck") if r < 0.85 else \
                    (bus_parts(rng), "bus")
                sc.add(s_lane, sign * (edge + rng.uniform(4, 45)), hdg + rng.normal(0, 0.03), cat, True, parts)


def _building(sc, rng, s, d, length, sign, depth):
    h = rng.uniform(5, 28)
    col = np.array([[190, 170, 150], [150, 150, 155], [200, 190, 170], [160, 90, 70], [120, 110, 100],
                     [220, 215, 200], [170, 180, 190]], float)[rng.integers(7)] * rng.uniform(0.8, 1.1)
    win = rng.uniform(1.8, 3.5)
    sc.add(s, d + sign * depth / 2, 0.0, "building", False,
           [_part(BOX, 0, 0, 0, length, depth, h, FACADE, col, win, rng.uniform(2.8, 3.6))])


def _tree(sc, rng, s, d):
    trunk_h, crown = rng.uniform(1.8, 3.2), rng.uniform(2.0, 5.0)
    green = np.array([60, 100, 40]) * rng.uniform(0.6, 1.3, 3)
    sc.add(s, d, rng.uniform(0, np.pi), "vegetation", False,
           [_part(BOX, 0, 0, 0, 0.3, 0.3, trunk_h + 0.3, PLAIN, np.array([80, 60, 45])),
            _part(PRISM_Z, 0, 0, trunk_h, crown, crown, crown * rng.uniform(0.8, 1.3), FOLIAGE, green)])


def _pole(sc, rng, s, d, sign, kind):
    h = rng.uniform(3.0, 8.0) if kind == "lamp" else rng.uniform(2.5, 3.4)
    grey = np.array([120, 120, 118]) * rng.uniform(0.6, 1.3)
    parts = [_part(BOX, 0, 0, 0, 0.16, 0.16, h, PLAIN, grey)]
    sc.add(s, d, 0.0, "pole", False, parts)
    if kind == "sign":
        col = np.array([[200, 30, 30], [30, 70, 170], [240, 240, 240], [230, 190, 30]], float)[rng.integers(4)]
        size = rng.uniform(0.5, 0.9)
        tpl = DISC_X if rng.random() < 0.5 else BOX
        sc.add(s, d, 0.0, "traffic sign", False,
               [_part(tpl, -0.1, 0, h - 0.1, 0.05, size, size, SIGN, col)])
    elif kind == "light":
        sc.add(s, d, 0.0, "traffic light", False,
               [_part(BOX, -0.15, 0, h - 0.2, 0.3, 0.35, 1.0, LIGHT, np.array([35, 35, 35]), rng.integers(3))])
        if rng.random() < 0.6:  # mast arm over the road with a second head
            arm = rng.uniform(3.0, 6.0)
            sc.add(s, d - sign * arm / 2, 0.0, "pole", False,
                   [_part(BOX, 0, 0, h + 1.0, 0.14, arm, 0.14, PLAIN, grey)])
            sc.add(s, d - sign * (arm - 0.4), 0.0, "traffic light", False,
                   [_part(BOX, -0.15, 0, h, 0.3, 0.35, 1.0, LIGHT, np.array([35, 35, 35]), rng.integers(3))])


def _place_roadside(sc: Scene, rng, s_lo, s_hi, urban):
    for sign, edge, side in ((1, sc.road_left, sc.left), (-1, sc.road_right, sc.right)):
        # buildings / walls / fences / hedges along the frontage
        s = s_lo - rng.uniform(0, 20)
        d0 = sign * (edge + side.frontage)
        while s < s_hi:
            r = rng.random()
            length = rng.uniform(8, 28)
            if r < 0.25 + 0.5 * urban:
                _building(sc, rng, s + length / 2, d0, length, sign, rng.uniform(8, 16))
            elif r < 0.45 + 0.4 * urban:
                h = rng.uniform(0.8, 3.0)
                col = np.array([[150, 145, 140], [170, 100, 80], [120, 120, 125]], float)[rng.integers(3)]
                sc.add(s + length / 2, d0 + sign * 0.15, 0.0, "wall", False,
                       [_part(BOX, 0, 0, 0, length, 0.3, h, PLAIN, col * rng.uniform(0.8, 1.2))])
                if rng.random() < 0.6:
                    _building(sc, rng, s + length / 2, d0 + sign * rng.uniform(3, 10), length, sign, 12)
            elif r < 0.7 + 0.2 * urban:
                h = rng.uniform(1.0, 2.2)
                col = np.array([[110, 100, 90], [140, 140, 145], [60, 80, 60]], float)[rng.integers(3)]
                sc.add(s + length / 2, d0 + sign * 0.05, 0.0, "fence", False,
                       [_part(BOX, 0, 0, 0, length, 0.08, h, FENCE, col, rng.uniform(0.1, 0.3))])
                for k in range(int(rng.integers(0, 3))):
                    _tree(sc, rng, s + rng.uniform(0, length), d0 + sign * rng.uniform(2, 6))
            else:
                green = np.array([55, 95, 40]) * rng.uniform(0.7, 1.3, 3)
                sc.add(s + length / 2, d0 + sign * 0.6, 0.0, "vegetation", False,
                       [_part(BOX, 0, 0, 0, length, 1.2, rng.uniform(0.8, 2.5), FOLIAGE, green)])
                for k in range(int(rng.integers(1, 4))):
                    _tree(sc, rng, s + rng.uniform(0, length), d0 + sign * rng.uniform(2, 8))
            s += length + (rng.uniform(0.5, 8) if rng.random() < 0.3 else 0.0)
        # trees along the road edge
        if rng.random() < 0.6:
            gap = rng.uniform(7, 16)
            d_tree = sign * (edge + min(side.frontage - 0.6, rng.uniform(0.8, 1.6)))
            for s in np.arange(s_lo + rng.uniform(0, gap), s_hi, gap):
                if rng.random() < 0.85:
                    _tree(sc, rng, s, d_tree)
        # street lights, signs, traffic lights at the kerb
        gap = rng.uniform(18, 35)
        for s in np.arange(s_lo + rng.uniform(0, gap), s_hi, gap):
            _pole(sc, rng, s, sign * (edge + 0.45), sign, "lamp")
        s = s_lo + rng.uniform(3, 20)
        while s < s_hi:
            _pole(sc, rng, s, sign * (edge + 0.35), sign, "sign" if rng.random() < 0.75 else "light")
            s += rng.uniform(10, 40)


def _place_things(sc: Scene, rng, s_lo, s_hi, lane_w, n_same, n_opp, park_r, park_l, drive):
    ahead_lo = 0.0 if not drive else s_lo
    crowded = sc.crowded

    def row_of_parked(sign, d_center, s0, s1, density):
        s = s0 + rng.uniform(0, 4)
        while s < s1:
            r = rng.random()
            if r < 0.92:
                parts, cat = car_parts(rng), "car"
            elif r < 0.97:
                parts, cat = truck_parts(rng), "truck"
            else:
                parts, cat = bus_parts(rng), "bus"
            length = max(p[5] for p in parts) if cat == "car" else sum(p[5] for p in parts)
            if rng.random() < density:
                hdg = 0.0 if sign < 0 or rng.random() < 0.3 else np.pi
                sc.add(s + length / 2, d_center + rng.uniform(-0.15, 0.15), hdg + rng.normal(0, 0.03), cat, True, parts)
            s += length + (rng.uniform(0.3, 1.5) if crowded else rng.uniform(0.6, 6.0))

    density = 0.95 if crowded else rng.uniform(0.3, 0.9)
    if park_r:
        row_of_parked(-1, -(sc.road_right - 1.15), s_lo, s_hi, density)
    if park_l:
        row_of_parked(1, sc.road_left - 1.15, s_lo, s_hi, density)

    # moving traffic, one speed per lane so lanes never collide
    lanes = [(-(k + 0.5) * lane_w, 0.0) for k in range(n_same)] + [((k + 0.5) * lane_w, np.pi) for k in range(n_opp)]
    for d_lane, hdg in lanes:
        own = abs(d_lane - sc.ego_d) < 0.1
        v = sc.ego_speed * rng.uniform(0.85, 1.15) if hdg == 0 else -rng.uniform(6, 14)
        if own:  # the ego lane keeps its gaps: nothing drives through the ego car
            v = sc.ego_speed
        if not drive:
            v = 0.0 if rng.random() < 0.3 else v
        s = (max(ahead_lo, 0.0) + (rng.uniform(6, 25) if own else rng.uniform(-10, 20))) if not drive else s_lo
        if d_lane in sc.rails:
            continue
        while s < s_hi:
            r = rng.random()
            if r < 0.72:
                parts, cat = car_parts(rng), "car"
            elif r < 0.79:
                parts, cat = truck_parts(rng), "truck"
            elif r < 0.84:
                parts, cat = bus_parts(rng), "bus"
            else:
                parts, cat = motorcycle_parts(rng), "motorcycle"
            length = sum(p[5] for p in parts[:2]) if cat == "truck" else max(p[5] for p in parts)
            if not (own and -15 < s + length / 2 < (8 if not drive else 25)):
                sc.add(s + length / 2, d_lane + rng.normal(0, 0.2), hdg + rng.normal(0, 0.02), cat, True, parts, v)
                if cat == "motorcycle":
                    sc.add(s + length / 2, d_lane, hdg, "rider", True, rider_parts(rng, 0.8, -0.1), v)
            s += length + rng.uniform(4, 30) * (0.5 if crowded else 1.0)

    # trams / trains on the rails
    for d_rail in sc.rails:
        hdg = 0.0 if d_rail < 0 else np.pi
        own = abs(d_rail - sc.ego_d) < 0.1
        v = (sc.ego_speed * rng.uniform(0.6, 1.1) if hdg == 0 else -rng.uniform(5, 12)) if drive else 0.0
        v = sc.ego_speed if (own and drive) else v
        s = s_lo + rng.uniform(0, 10) if (drive and not own) else rng.uniform(8, 45)
        while s < s_hi:
            parts = train_parts(rng)
            length = sum(p[5] for p in parts) + 0.4 * (len(parts) - 1)
            sc.add(s + length / 2, d_rail, hdg, "train", True, parts, v)
            s += length + rng.uniform(40, 120)
            if not drive:
                break

    # cyclists near the right edge, sometimes on the left
    if rng.random() < 0.55:
        d_bike = -(sc.road_right - (2.3 if park_r else 0) - 0.8)
        s = (rng.uniform(4, 30) if not drive else s_lo + rng.uniform(0, 30))
        while s < s_hi:
            v = (sc.ego_speed if abs(d_bike - sc.ego_d) < 2.2 else rng.uniform(3, 7)) if drive else 0.0
            if drive and abs(d_bike - sc.ego_d) < 2.2 and -12 < s < 8:
                s += 20
                continue
            motor = rng.random() < 0.25
            sc.add(s, d_bike, 0.0, "motorcycle" if motor else "bicycle", True,
                   motorcycle_parts(rng) if motor else bicycle_parts(rng), v)
            sc.add(s, d_bike, 0.0, "rider", True, rider_parts(rng, 0.85 if motor else 0.95, -0.15), v)
            s += rng.uniform(6, 60)

    # pedestrians on the sidewalks: walkers, groups, parked two-wheelers
    for sign, edge, side in ((1, sc.road_left, sc.left), (-1, sc.road_right, sc.right)):
        lo = edge + 0.5
        hi = edge + max(side.frontage - 0.4, 1.0)
        rate = (0.25 if crowded else 0.07) * rng.uniform(0.4, 1.5)
        n = rng.poisson(rate * (s_hi - s_lo))
        for _ in range(n):
            s, d = rng.uniform(s_lo, s_hi), sign * rng.uniform(lo, hi)
            hdg = rng.choice([0.0, np.pi]) + rng.normal(0, 0.2)
            v = rng.uniform(0.8, 1.6) * np.cos(hdg) if drive and rng.random() < 0.7 else 0.0
            sc.add(s, d, hdg, "person", True, person_parts(rng), v)
        n_groups = rng.poisson((0.06 if crowded else 0.008) * (s_hi - s_lo))
        for _ in range(n_groups):
            s0, d0 = rng.uniform(s_lo, s_hi), sign * rng.uniform(lo, hi)
            for _ in range(int(rng.integers(3, 9))):
                sc.add(s0 + rng.normal(0, 0.8), d0 + rng.normal(0, 0.5), rng.uniform(-np.pi, np.pi), "person", True,
                       person_parts(rng))
        if rng.random() < (0.5 if crowded else 0.2):  # a row of parked bicycles / motorcycles
            s0, d0 = rng.uniform(max(s_lo, 5), min(s_hi, 60)), sign * (edge + rng.uniform(0.8, 1.2))
            motor = rng.random() < 0.35
            for k in range(int(rng.integers(3, 10))):
                sc.add(s0 + k * (0.9 if motor else 0.65), d0, sign * np.pi / 2 + rng.normal(0, 0.1),
                       "motorcycle" if motor else "bicycle", True, motorcycle_parts(rng) if motor else bicycle_parts(rng))
    # pedestrians crossing at zebra crossings
    for s in ([] if drive else sc.crosswalks):  # (a drive would run them over)
        for _ in range(int(rng.integers(1, 7))):
            sc.add(s + rng.uniform(-1.5, 1.5), rng.uniform(-sc.road_right, sc.road_left), rng.choice([-1, 1]) * np.pi / 2,
                   "person", True, person_parts(rng))
