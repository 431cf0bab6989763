"""The synthetic world: determinism, id convention, camera geometry, bird's-eye truth, crowds, coverage."""
import numpy as np
import pytest

from panoptic_ros.data.world import SyntheticWorld, WorldConfig
from panoptic_ros.panoptic import OFFSET, segments_from_ids, semantic_from_ids
from panoptic_ros.taxonomy import Taxonomy

TAX = Taxonomy.cityscapes()
GROUND = [TAX.train_id(n) for n in ("road", "sidewalk", "terrain")]
GROUND_IDS = [TAX.by_name[n].id for n in ("road", "sidewalk", "terrain")]
# Things whose lowest part spans their whole footprint at z = 0 (wheels of two-wheelers are round and
# riders sit above the ground, so their footprint corners are not drawn).
GROUNDED = {TAX.by_name[n].id for n in ("person", "car", "truck", "bus", "train")}


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldConfig(), seed=3)


@pytest.fixture(scope="module")
def frames(world):
    return [world.frame(i) for i in range(12)]


def test_same_seed_same_frame_other_seed_differs():
    a, b = SyntheticWorld(seed=5).frame(4), SyntheticWorld(seed=5).frame(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.panoptic, b.panoptic)
    assert np.array_equal(a.bev.visible, b.bev.visible) and np.array_equal(a.bev.instance, b.bev.instance)
    c = SyntheticWorld(seed=6).frame(4)
    assert not np.array_equal(a.panoptic, c.panoptic)


def test_frame_fields_follow_the_contracts(frames):
    cfg = WorldConfig()
    for f in frames:
        assert f.image.shape == (cfg.height, cfg.width, 3) and f.image.dtype == np.uint8
        assert f.panoptic.dtype == np.int32 and f.panoptic.shape == (cfg.height, cfg.width)
        cat, inst = f.panoptic // OFFSET, f.panoptic % OFFSET
        assert set(np.unique(cat)) <= set(TAX.by_id), "every pixel has a known category"
        is_thing = np.array([TAX.by_id[c].is_thing for c in cat.ravel()]).reshape(cat.shape)
        assert np.all(inst[~is_thing] == 0), "stuff ids are category_id * 1000"
        assert np.all(inst[is_thing] >= 1), "thing ids are category_id * 1000 + k, k >= 1"
        assert [s.to_coco() for s in f.segments] == [s.to_coco() for s in segments_from_ids(f.panoptic, TAX)]
        thing_ids = {int(i) for i in np.unique(f.panoptic) if i % OFFSET}
        assert {t.id for t in f.things} == thing_ids, "one ThingTruth per thing with visible pixels"
        sky = f.panoptic == TAX.by_name["sky"].id * OFFSET
        assert np.all(np.isinf(f.depth[sky])) and np.all(np.isfinite(f.depth[~sky])) and np.all(f.depth[~sky] > 0)
        assert f.camera.frame_id == "camera_optical_frame" and not np.any(f.camera.D)
        assert f.bev.ground_class.shape == cfg.grid.shape


def _unoccluded_in_view(f, t):
    """Projected 3D box (x0, y0, x1, y1) if the thing is fully in view and nothing is in front of it."""
    uv, z = f.camera.project(t.corners)
    h, w = f.panoptic.shape
    if np.any(z < 0.5) or uv[:, 0].min() < 1 or uv[:, 1].min() < 1 or uv[:, 0].max() > w - 1 or uv[:, 1].max() > h - 1:
        return None
    x0, y0 = int(np.floor(uv[:, 0].min())), int(np.floor(uv[:, 1].min()))
    x1, y1 = int(np.ceil(uv[:, 0].max())), int(np.ceil(uv[:, 1].max()))
    ids = f.panoptic[y0:y1, x0:x1]
    nearer = (f.depth[y0:y1, x0:x1] < z.max()) & ~np.isin(ids // OFFSET, GROUND_IDS) & (ids != t.id)
    if nearer.any():  # something other than the ground could be in front of part of the thing
        return None
    return uv


def test_rendered_masks_agree_with_camera_projection_of_3d_truth(frames):
    checked = grounded = 0
    for f in frames:
        for t in f.things:
            uv = _unoccluded_in_view(f, t)
            rows, cols = np.nonzero(f.panoptic == t.id)
            if uv is None or rows.size < 30:
                continue
            mx0, my0, mx1, my1 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
            # the mask lies inside the projection of the 3D box (1 px of rasterisation slack)
            assert mx0 >= uv[:, 0].min() - 1 and mx1 <= uv[:, 0].max() + 1, (f.name, t.id)
            assert my0 >= uv[:, 1].min() - 1 and my1 <= uv[:, 1].max() + 1, (f.name, t.id)
            checked += 1
            if t.category_id in GROUNDED:
                fp, _ = f.camera.project(np.column_stack([t.footprint, np.zeros(4)]))
                assert np.all(fp[:, 0] >= mx0 - 1) and np.all(fp[:, 0] <= mx1 + 1), (f.name, t.id, fp, mx0, mx1)
                assert np.all(fp[:, 1] >= my0 - 1) and np.all(fp[:, 1] <= my1 + 1), (f.name, t.id, fp, my0, my1)
                grounded += 1
    assert checked >= 20 and grounded >= 10, (checked, grounded)


def test_visible_ground_cells_project_onto_their_ground_class(frames):
    """Visible free cells land on a pixel of their ground class, or (boundary) one of its 8 neighbours."""
    total = exact = near = 0
    for f in frames:
        b = f.bev
        cells = b.visible & ~b.occupied
        gx, gy = b.grid.cell_centers()
        uv, _ = f.camera.project(np.column_stack([gx[cells], gy[cells], np.zeros(cells.sum())]))
        col, row = uv[:, 0].astype(int), uv[:, 1].astype(int)
        sem = np.pad(semantic_from_ids(f.panoptic, TAX), 1, constant_values=255)
        want = b.ground_class[cells]
        hit = sem[row + 1, col + 1] == want
        around = np.zeros_like(hit)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                around |= sem[row + dr, col + dc] == want
        total += cells.sum(); exact += hit.sum(); near += around.sum()
        assert np.isin(b.ground_class, GROUND).all()
    assert total > 20000
    assert exact / total > 0.97 and near / total > 0.995, (exact / total, near / total)


def test_bev_instances_sit_under_their_things(frames):
    checked = 0
    for f in frames:
        g = f.bev.grid
        for t in f.things:
            if t.category_id not in GROUNDED - {TAX.by_name["person"].id}:
                continue
            # a point a quarter length off the centre (the centre of a two-car train is the coupling gap)
            r, c, inside = g.cell_of(*(t.footprint.mean(0) + 0.25 * (t.footprint[1] - t.footprint[0])))
            if inside:
                assert f.bev.instance[r, c] == t.id and f.bev.occupied[r, c]
                checked += 1
    assert checked >= 10
    # obstacle stuff occupies cells too, and occupied cells off any thing carry no instance
    assert any((f.bev.occupied & (f.bev.instance == 0)).sum() > 100 for f in frames)


def test_crowded_scenes_have_overlapping_instances_of_one_class():
    world = SyntheticWorld(WorldConfig(crowd_probability=1.0), seed=11)
    with_overlap = 0
    n = 8
    for i in range(n):
        f = world.frame(i)
        boxes = {}
        for s in f.segments:
            if s.is_thing and s.area >= 40:
                boxes.setdefault(s.category_id, []).append(s.bbox)
        found = False
        for bbs in boxes.values():
            for a in range(len(bbs)):
                for b in range(a + 1, len(bbs)):
                    (x, y, w, h), (u, v, p, q) = bbs[a], bbs[b]
                    iw = min(x + w, u + p) - max(x, u)
                    ih = min(y + h, v + q) - max(y, v)
                    if iw > 0 and ih > 0 and iw * ih > 0.2 * min(w * h, p * q):
                        found = True
        with_overlap += found
    assert with_overlap >= n - 1, with_overlap


def test_every_class_appears_and_things_are_frequent():
    world = SyntheticWorld(seed=21)
    n = 40
    seen = np.zeros(TAX.num_classes)
    for i in range(n):
        f = world.frame(i)
        seen[np.unique(semantic_from_ids(f.panoptic, TAX)[f.panoptic > 0])] += 1
    names = TAX.names()
    assert np.all(seen > 0), [names[k] for k in np.flatnonzero(seen == 0)]
    rare = [names[k] for k in TAX.thing_train_ids if seen[k] < 0.15 * n]
    assert not rare, (rare, seen)
    assert seen[TAX.train_id("car")] >= 0.8 * n


def test_drive_moves_forward_at_the_frame_rate():
    world = SyntheticWorld(WorldConfig(width=256, height=128), seed=2)
    frames = list(world.drive(4, fps=5.0))
    assert [f.stamp_ns for f in frames] == [0, 200_000_000, 400_000_000, 600_000_000]
    p0 = frames[0].camera.pose  # one mount per drive (pitch / height only vibrate slightly)
    assert all((f.camera.pose.yaw, f.camera.pose.roll) == (p0.yaw, p0.roll) for f in frames)
    assert all(abs(f.camera.pose.pitch - p0.pitch) < 0.02 and abs(f.camera.pose.z - p0.z) < 0.05 for f in frames)
    # static obstacles (buildings, poles, ...) slide backwards in base_link by speed / fps between frames
    for a, b in zip(frames, frames[1:]):
        sa = a.bev.occupied & (a.bev.instance == 0)
        sb = b.bev.occupied & (b.bev.instance == 0)
        mismatch = [np.mean(sa[:, k:] != sb[:, : sb.shape[1] - k]) for k in range(0, 40)]
        # ego speed is 5..14 m/s: 1.0..2.8 m per frame at 5 fps = 10..28 cells of 0.1 m
        assert 9 <= int(np.argmin(mismatch)) <= 29, mismatch


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        WorldConfig(crowd_probability=1.5)
    with pytest.raises(ValueError):
        WorldConfig(camera_height=(2.0, 1.0))
    with pytest.raises(ValueError):
        SyntheticWorld().frame(-1)


def test_rasterizer_depth_is_exact_and_nearer_solids_win():
    from panoptic_ros.data.render import BOX, place_solids, rasterize
    from panoptic_ros.geometry import CameraModel, Pose

    cam = CameraModel.from_fov(128, 64, 90.0, pose=Pose(0, 0, 1.0, 0, 0, 0))
    R, C = cam.rotation_parent_from_optical(), cam.pose.translation()
    # a wall 10 m ahead (front face at x = 9.5) and a small box 5 m ahead (front face at x = 4.75)
    batch = place_solids(np.array([BOX, BOX]), np.array([[10.0, 0, 0], [5.0, 0, 0.5]]), np.zeros(2),
                         np.array([[1.0, 20.0, 5.0], [0.5, 0.5, 1.0]]))
    inv = np.zeros((64, 128), np.float32)
    key = np.full((64, 128), -1, np.int32)
    rasterize(batch, R, C, cam.K, inv, key)
    depth = 1.0 / inv[32, 64]
    assert abs(depth - 4.75) < 1e-4 and batch.face_solid[key[32, 64]] == 1
    assert abs(1.0 / inv[32, 10] - 9.5) < 1e-4 and batch.face_solid[key[32, 10]] == 0
    # the small box's silhouette: 0.5 m wide at 4.75 m with f = 64 px -> about 6.7 px
    cols = np.flatnonzero(batch.face_solid[np.maximum(key[32], 0)] * (key[32] >= 0) == 1)
    assert abs(cols.size - 0.5 / 4.75 * 64) <= 1.5, cols.size
