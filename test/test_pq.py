"""PQAccumulator: each panopticapi rule on hand-made frames, then every figure against panopticapi's
pq_compute and cityscapesscripts' evalPanopticSemanticLabeling on generated data sets with every case."""
from __future__ import annotations

import contextlib
import io
import pickle

import numpy as np
import pytest

from panoptic_ros.evaluation.files import PanopticFolders
from panoptic_ros.evaluation.id_png import read_id_png
from panoptic_ros.evaluation.matching import concat_runs, id_runs
from panoptic_ros.evaluation.pq import PQAccumulator
from panoptic_ros.evaluation.synthetic import id_to_rgb, make_pair, write_pairs
from panoptic_ros.panoptic import Segment, segments_from_ids
from panoptic_ros.taxonomy import Taxonomy

# panopticapi's pq_compute never closes its multiprocessing pool; its __del__ complains at collection.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*Pool.__del__:pytest.PytestUnraisableExceptionWarning")

CATS = [{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1},
        {"id": 3, "name": "person", "isthing": 1}, {"id": 4, "name": "sky", "isthing": 0}]
TOL = 1e-9


def seg(seg_id, cat, crowd=0, area=None):
    out = {"id": seg_id, "category_id": cat, "iscrowd": crowd}
    if area is not None:
        out["area"] = area
    return out


def gt_segments(ids, cats_by_id, crowd=()):
    """segments_info (with pixel areas) for every non-void id of ``ids``."""
    uniq, counts = np.unique(ids, return_counts=True)
    return [seg(int(i), cats_by_id[int(i)], int(int(i) in crowd), int(c)) for i, c in zip(uniq, counts) if i]


def single_frame(pred, pred_segs, gt, gt_segs):
    acc = PQAccumulator(CATS)
    acc.add(pred, pred_segs, gt, gt_segs)
    return acc.result()


# -- the rules, one by one ------------------------------------------------------------------------------
def test_iou_exactly_half_is_not_a_match_and_just_above_is():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :10] = 5  # 100 px car
    pred = np.zeros_like(gt)
    pred[:, 5:15] = 9  # 50 px overlap, union 150 -> IoU 1/3
    r = single_frame(pred, [seg(9, 2)], gt, [seg(5, 2, area=100)])
    assert (r["Things"]["tp"], r["Things"]["fp"], r["Things"]["fn"]) == (0, 1, 1)

    pred = np.zeros_like(gt)
    pred[:5, :10] = 9  # inside the gt: intersection 50, union 100 -> IoU exactly 0.5
    r = single_frame(pred, [seg(9, 2)], gt, [seg(5, 2, area=100)])
    assert (r["per_class"]["car"]["tp"], r["per_class"]["car"]["fp"], r["per_class"]["car"]["fn"]) == (0, 1, 1)
    assert r["per_class"]["car"]["pq"] == 0.0

    pred[5, 0] = 9  # one more pixel: 51 / 100 > 0.5
    r = single_frame(pred, [seg(9, 2)], gt, [seg(5, 2, area=100)])["per_class"]["car"]
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 0)
    assert r["pq"] == pytest.approx(0.51) and r["sq"] == pytest.approx(0.51) and r["rq"] == 1.0


def test_prediction_pixels_on_void_leave_the_union():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :5] = 5  # 50 px person; the rest is void
    pred = np.zeros_like(gt)
    pred[:, :15] = 7  # 150 px: 50 on the person, 100 on void -> IoU 50 / (150 + 50 - 50 - 100) = 1
    r = single_frame(pred, [seg(7, 3)], gt, [seg(5, 3, area=50)])["per_class"]["person"]
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 0) and r["sq"] == 1.0


def test_unmatched_prediction_on_void_or_own_crowd_is_not_a_false_positive():
    gt = np.zeros((10, 30), np.int32)
    gt[:, 10:20] = 40  # car crowd
    gt[:, 20:30] = 50  # person crowd
    segs = [seg(40, 2, crowd=1, area=100), seg(50, 3, crowd=1, area=100)]
    cases = [  # (pred columns, category, is FP)
        ((0, 6), 2, False),  # 60 px all on void
        ((6, 16), 2, False),  # 4 void + 6 own crowd = 10 / 10
        ((16, 26), 2, True),  # 4 own crowd + 6 person crowd: person crowd does not absorb a car
        ((7, 17), 3, True),  # 3 void + 7 car crowd: not its own crowd -> only 3 / 10 ignored
    ]
    for (c0, c1), cat, is_fp in cases:
        pred = np.zeros_like(gt)
        pred[:, c0:c1] = 3
        r = single_frame(pred, [seg(3, cat)], gt, segs)
        assert r["All"]["fp"] == int(is_fp), (c0, c1, cat)
        assert r["All"]["fn"] == 0 and r["All"]["tp"] == 0  # crowd is never a false negative
    pred = np.zeros_like(gt)
    pred[:, 15:25] = 3  # person: 5 px on the car crowd, 5 on its own crowd: 5 / 10 is not > 0.5
    assert single_frame(pred, [seg(3, 3)], gt, segs)["All"]["fp"] == 1


def test_only_the_last_crowd_segment_of_a_category_absorbs():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :10] = 40
    gt[:, 10:] = 41  # two car crowd segments
    pred = np.zeros_like(gt)
    pred[:, :8] = 3  # inside the first crowd
    first_last = [seg(40, 2, crowd=1, area=100), seg(41, 2, crowd=1, area=100)]
    assert single_frame(pred, [seg(3, 2)], gt, first_last)["All"]["fp"] == 1
    assert single_frame(pred, [seg(3, 2)], gt, first_last[::-1])["All"]["fp"] == 0


def test_crowd_ground_truth_never_matches():
    gt = np.full((10, 10), 40, np.int32)
    pred = np.full_like(gt, 3)
    r = single_frame(pred, [seg(3, 2)], gt, [seg(40, 2, crowd=1, area=100)])
    assert (r["All"]["tp"], r["All"]["fp"], r["All"]["fn"], r["All"]["n"]) == (0, 0, 0, 0)


def test_several_stuff_segments_of_one_class_match_separately():
    gt = np.zeros((10, 30), np.int32)
    gt[:, :10], gt[:, 10:20], gt[:, 20:] = 11, 12, 13  # three road segments
    pred = np.zeros_like(gt)
    pred[:, :] = 1  # one road segment over all of them: IoU 1/3 with each
    r = single_frame(pred, [seg(1, 1)], gt, [seg(11, 1, area=100), seg(12, 1, area=100), seg(13, 1, area=100)])
    assert (r["Stuff"]["tp"], r["Stuff"]["fp"], r["Stuff"]["fn"]) == (0, 1, 3)
    pred[:, 10:] = 2  # second prediction covers two of them
    roads = [seg(11, 1, area=100), seg(12, 1, area=100), seg(13, 1, area=100)]
    r = single_frame(pred, [seg(1, 1), seg(2, 1)], gt, roads)
    assert (r["Stuff"]["tp"], r["Stuff"]["fp"], r["Stuff"]["fn"]) == (1, 1, 2)


def test_wrong_class_is_a_false_positive_and_a_false_negative():
    gt = np.full((10, 10), 5, np.int32)
    pred = np.full_like(gt, 6)
    r = single_frame(pred, [seg(6, 3)], gt, [seg(5, 2, area=100)])
    assert r["per_class"]["car"]["fn"] == 1 and r["per_class"]["person"]["fp"] == 1
    assert r["All"]["n"] == 2 and r["All"]["pq"] == 0.0
    assert r["per_class"]["road"]["n"] == 0  # untouched categories are not averaged


def test_ground_truth_area_comes_from_the_segment_table():
    gt = np.zeros((10, 10), np.int32)
    gt[:, :6] = 5  # 60 px in the map
    pred = np.zeros_like(gt)
    pred[:, :6] = 9
    assert single_frame(pred, [seg(9, 2)], gt, [seg(5, 2, area=60)])["All"]["tp"] == 1
    # panopticapi takes the JSON area: 200 makes the union 200 and the IoU 0.3.
    assert single_frame(pred, [seg(9, 2)], gt, [seg(5, 2, area=200)])["All"]["tp"] == 0
    # Without an area, pixels count.
    assert single_frame(pred, [seg(9, 2)], gt, [seg(5, 2)])["All"]["tp"] == 1


def test_ground_truth_ids_missing_from_the_table_are_labelled_not_void():
    gt = np.zeros((10, 10), np.int32)
    gt[:, :] = 77  # not in the table
    pred = np.full_like(gt, 9)
    r = single_frame(pred, [seg(9, 2)], gt, [])
    assert r["All"]["fp"] == 1  # void would have absorbed it


def test_bad_input_is_a_clear_error():
    gt = np.zeros((4, 4), np.int32)
    gt[:2] = 5
    pred = np.zeros_like(gt)
    pred[:2] = 9
    acc = PQAccumulator(CATS)
    with pytest.raises(ValueError, match="not in its segments"):
        acc.add(pred, [], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="no pixels"):
        acc.add(pred, [seg(9, 2), seg(10, 2)], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="category_id 99"):
        acc.add(pred, [seg(9, 99)], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="category_id 98"):
        acc.add(pred, [seg(9, 2)], gt, [seg(5, 98)])
    with pytest.raises(ValueError, match="unique"):
        acc.add(pred, [seg(9, 2), seg(9, 3)], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="one size"):
        acc.add(pred[:3], [seg(9, 2)], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="integers"):
        acc.add(pred.astype(float), [seg(9, 2)], gt, [seg(5, 2)])
    with pytest.raises(ValueError, match="negative"):
        acc.add(pred - 1, [seg(9, 2)], gt, [seg(5, 2)])
    assert acc.num_frames == 0  # nothing half-added


def test_segments_from_the_panoptic_convention_and_coco_dicts_agree():
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(3)
    gt, gt_segs, pred, pred_segs = make_pair(rng, 48, 96, tax)
    # Re-number to the panoptic_ros convention and use panoptic.Segment objects.
    def convention(ids, segs):
        lut = {0: 0}
        for k, s in enumerate(segs):
            lut[s["id"]] = s["category_id"] * 1000 + k + 1
        return np.vectorize(lut.get)(ids).astype(np.int32)
    gt_c, pred_c = convention(gt, gt_segs), convention(pred, pred_segs)
    crowd = [s["category_id"] * 1000 + k + 1 for k, s in enumerate(gt_segs) if s["iscrowd"]]
    gt_objects = segments_from_ids(gt_c, tax, crowd_ids=crowd)
    pred_objects = segments_from_ids(pred_c, tax)
    assert all(isinstance(s, Segment) for s in gt_objects)
    a, b = PQAccumulator(tax), PQAccumulator(tax.to_coco_categories())
    a.add(pred_c, pred_objects, gt_c, gt_objects)
    b.add(pred, pred_segs, gt, gt_segs)
    assert a.result() == b.result()


def test_huge_ids_take_the_general_path_with_the_same_result():
    rng = np.random.default_rng(5)
    gt, gt_segs, pred, pred_segs = make_pair(rng, 40, 80)
    shift = np.int64(1) << 40
    big = lambda ids: np.where(ids > 0, ids + shift, 0)  # noqa: E731
    bump = lambda segs: [{**s, "id": s["id"] + int(shift)} for s in segs]  # noqa: E731
    a, b = PQAccumulator(Taxonomy.cityscapes()), PQAccumulator(Taxonomy.cityscapes())
    a.add(pred, pred_segs, gt, gt_segs)
    b.add(big(pred), bump(pred_segs), big(gt), bump(gt_segs))
    assert a.result() == b.result()
    with pytest.raises(ValueError, match="not in its segments"):
        b.add(big(pred), bump(pred_segs)[1:], big(gt), bump(gt_segs))


def test_runs_rebuild_both_maps():
    gt, _, pred, _ = make_pair(np.random.default_rng(2), 30, 50, unlisted_gt=True)
    runs = id_runs(gt, pred)
    np.testing.assert_array_equal(np.repeat(runs.gt, runs.length), gt.reshape(-1))
    np.testing.assert_array_equal(np.repeat(runs.pred, runs.length), pred.reshape(-1))
    assert len(runs.length) < gt.size // 4


def test_a_batch_equals_its_frames_one_by_one_and_names_the_bad_frame():
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(8)
    frames = [make_pair(rng, 24, 40, tax, unlisted_gt=k == 1) for k in range(5)]
    acc = PQAccumulator(tax)
    single = [acc.evaluate_frame(p, ps, g, gs, str(k)) for k, (g, gs, p, ps) in enumerate(frames)]
    runs = concat_runs([id_runs(g, p) for g, _, p, _ in frames])
    batch = acc.evaluate_batch(runs, [ps for *_, ps in frames], [gs for _, gs, _, _ in frames],
                               [str(k) for k in range(5)])
    for a, b in zip(single, batch):
        np.testing.assert_array_equal(a.tp, b.tp)
        np.testing.assert_array_equal(a.fp, b.fp)
        np.testing.assert_array_equal(a.fn, b.fn)
        np.testing.assert_allclose(a.iou, b.iou, rtol=1e-12)
    broken = [list(ps) for *_, ps in frames]
    broken[3] = broken[3][1:]
    with pytest.raises(ValueError, match="image '3': prediction ids"):
        acc.evaluate_batch(runs, broken, [gs for _, gs, _, _ in frames], [str(k) for k in range(5)])


def flat(result: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = float(value)
    return out


def test_merge_and_pickle_equal_one_pass_and_result_is_readable_any_time():
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(7)
    frames = [make_pair(rng, 32, 64, tax) for _ in range(6)]
    whole, a, b = PQAccumulator(tax), PQAccumulator(tax), PQAccumulator(tax)
    for k, (g, gs, p, ps) in enumerate(frames):
        stats = whole.add(p, ps, g, gs, name=str(k))
        assert np.isnan(stats.pq) or 0.0 <= stats.pq <= 1.0
        assert whole.result()["num_frames"] == k + 1
        (a if k < 3 else b).add(p, ps, g, gs, name=str(k))
    merged = pickle.loads(pickle.dumps(a)).merge(b)  # workers ship accumulators between processes
    assert flat(merged.result()) == pytest.approx(flat(whole.result()), rel=1e-12)
    assert merged.frames == whole.frames
    with pytest.raises(ValueError, match="different categories"):
        merged.merge(PQAccumulator(CATS))


def test_per_frame_pq_ranks_frames():
    gt = np.zeros((10, 10), np.int32)
    gt[:, :5] = 5
    good, bad = gt.copy(), np.zeros_like(gt)
    bad[:, 5:] = 5
    acc = PQAccumulator(CATS)
    s_good = acc.add(good, [seg(5, 2)], gt, [seg(5, 2)], name="good")
    s_bad = acc.add(bad, [seg(5, 2)], gt, [seg(5, 2)], name="bad")
    assert s_good.pq == 1.0 and s_bad.pq == 0.0
    assert [f["name"] for f in sorted(acc.frames, key=lambda f: f["pq"])] == ["bad", "good"]


# -- against the reference tools ---------------------------------------------------------------------
def reference_cases(pairs):
    """What a data set exercises: crowd-absorbed and void-absorbed predictions, several stuff segments
    of one class, wrong classes, near-threshold IoUs, unlisted ground-truth ids."""
    facts = dict(crowd_absorbed=0, void_absorbed=0, multi_stuff=0, frames=len(pairs))
    stuff = {c.id for c in Taxonomy.cityscapes().categories if not c.is_thing}
    for gt, gts, pred, preds in pairs:
        cats = [s["category_id"] for s in gts if s["category_id"] in stuff]
        facts["multi_stuff"] += len(cats) != len(set(cats))
        for p in preds:
            mask = pred == p["id"]
            void = np.count_nonzero(mask & (gt == 0))
            crowd = sum(np.count_nonzero(mask & (gt == g["id"])) for g in gts
                        if g["iscrowd"] and g["category_id"] == p["category_id"])
            if crowd and (void + crowd) / mask.sum() > 0.5:
                facts["crowd_absorbed"] += 1
            elif void / mask.sum() > 0.5:
                facts["void_absorbed"] += 1
    return facts


def assert_same(ours: dict, ref: dict, categories: list[dict]):
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert abs(ours[group][key] - ref[group][key]) <= TOL, (group, key)
        assert ours[group]["n"] == ref[group]["n"]
    for cat in categories:
        mine, theirs = ours["per_class"][cat["name"]], ref["per_class"][cat["id"]]
        for key in ("pq", "sq", "rq"):
            assert abs(mine[key] - theirs[key]) <= TOL, (cat["name"], key)


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_panopticapi_pq_compute(tmp_path, seed):
    from panopticapi.evaluation import pq_compute

    tax = Taxonomy.cityscapes()
    cats = tax.to_coco_categories()
    rng = np.random.default_rng(seed)
    pairs = [make_pair(rng, 48, 96, tax, unlisted_gt=k % 4 == 0) for k in range(16)]
    facts = reference_cases(pairs)
    assert facts["crowd_absorbed"] > 0 and facts["void_absorbed"] > 0 and facts["multi_stuff"] > 0, facts
    paths = write_pairs(tmp_path, pairs, cats)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(str(paths["gt_json"]), str(paths["pred_json"]), str(paths["gt_dir"]), str(paths["pred_dir"]))
    acc = PQAccumulator(cats)
    for gt, gts, pred, preds in pairs:
        acc.add(pred, preds, gt, gts)
    ours = acc.result()
    assert ours["All"]["tp"] > 0 and ours["All"]["fp"] > 0 and ours["All"]["fn"] > 0
    assert_same(ours, ref, cats)
    # The same through the PNG folders (thread pool, PNG decoding).
    from_files = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    assert_same(from_files.evaluate(workers=2, progress=False).result(), ref, cats)
    # Several batches in forked processes and in threads: the same figures and frames, in file order.
    by_process = from_files.evaluate(workers=2, progress=False, batch_size=3, pool="process")
    by_thread = from_files.evaluate(workers=2, progress=False, batch_size=3, pool="thread")
    assert_same(by_process.result(), ref, cats)
    assert by_process.result() == by_thread.result()
    names = [from_files.name(pair) for pair in from_files.pairs]
    assert by_process.frames == by_thread.frames and [f["name"] for f in by_process.frames] == names
    with pytest.raises(ValueError, match="pool must be"):
        from_files.evaluate(progress=False, pool="gpu")


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_bad_file_in_a_workers_share_is_a_clear_error_in_the_caller(tmp_path, pool):
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(3)
    paths = write_pairs(tmp_path, [make_pair(rng, 32, 64, tax) for _ in range(12)], tax.to_coco_categories())
    folders = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    last = folders.pairs[-1][1]["file_name"]  # in the last batch: the second process's share
    (paths["pred_dir"] / last).unlink()
    with pytest.raises(ValueError, match=f"cannot read .*{last}"):
        folders.evaluate(workers=2, progress=False, batch_size=2, pool=pool)
    (paths["pred_dir"] / last).write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    with pytest.raises(ValueError, match=last):
        folders.evaluate(workers=2, progress=False, batch_size=2, pool=pool)


def test_equals_cityscapesscripts(tmp_path, monkeypatch):
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs

    tax = Taxonomy.cityscapes()
    cats = tax.to_coco_categories()
    rng = np.random.default_rng(11)
    pairs = [make_pair(rng, 64, 128, tax) for _ in range(12)]
    paths = write_pairs(tmp_path, pairs, cats, layout="cityscapes")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = cs.evaluatePanoptic(str(paths["gt_json"]), str(paths["gt_dir"]), str(paths["pred_json"]),
                                  str(paths["pred_dir"]), str(tmp_path / "cs_result.json"))
    ours = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"]
                           ).evaluate(progress=False).result()
    assert_same(ours, ref, cats)


def test_png_id_decoding_round_trips(tmp_path):
    import cv2

    ids = np.random.default_rng(0).integers(0, 1 << 24, (7, 9))
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), id_to_rgb(ids)[..., ::-1])
    np.testing.assert_array_equal(read_id_png(path), ids)
    rgba = np.concatenate([id_to_rgb(ids), np.full((7, 9, 1), 200, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_id_png(tmp_path / "rgba.png"), ids)  # alpha ignored, as panopticapi
    (tmp_path / "gray.png").write_bytes(cv2.imencode(".png", np.zeros((3, 3), np.uint8))[1].tobytes())
    with pytest.raises(ValueError, match="8-bit RGB"):
        read_id_png(tmp_path / "gray.png")


# -- PNG decoding (fast path and fallback) -------------------------------------------------------------
def test_pillow_written_set_equals_panopticapi(tmp_path):
    from panopticapi.evaluation import pq_compute

    tax = Taxonomy.cityscapes()
    cats = tax.to_coco_categories()
    rng = np.random.default_rng(9)
    pairs = [make_pair(rng, 48, 96, tax) for _ in range(6)]
    paths = write_pairs(tmp_path, pairs, cats, writer="pillow")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pq_compute(str(paths["gt_json"]), str(paths["pred_json"]), str(paths["gt_dir"]), str(paths["pred_dir"]))
    folders = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    assert_same(folders.evaluate(progress=False).result(), ref, cats)


def test_without_zlib_ng_every_file_takes_the_opencv_path(tmp_path, monkeypatch):
    from panoptic_ros.evaluation import id_png

    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(4)
    pairs = [make_pair(rng, 24, 40, tax) for _ in range(3)]
    paths = write_pairs(tmp_path, pairs, tax.to_coco_categories())
    folders = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    fast = folders.evaluate(progress=False).result()
    monkeypatch.setattr(id_png, "_inflater", None)
    assert id_png.png_rows((paths["gt_dir"] / "000000000001.png").read_bytes()) is None
    assert folders.evaluate(progress=False).result() == fast


def test_without_numba_every_file_takes_the_opencv_path(tmp_path, monkeypatch):
    from panoptic_ros.evaluation import id_png

    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(6)
    pairs = [make_pair(rng, 24, 40, tax) for _ in range(3)]
    paths = write_pairs(tmp_path, pairs, tax.to_coco_categories(), writer="pillow")
    folders = PanopticFolders(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    fast = folders.evaluate(progress=False, pool="thread").result()
    assert id_png.kernels() is not None, "numba (requirements.txt) should be installed in the test venv"
    monkeypatch.setattr(id_png, "kernels", lambda: None)
    rows = id_png.png_rows((paths["gt_dir"] / "000000000001.png").read_bytes())
    assert rows is not None and id_png.ids_from_rows(rows) is None
    assert folders.evaluate(progress=False, pool="thread").result() == fast


def test_json_loads_the_same_with_and_without_orjson(tmp_path, monkeypatch):
    import json

    from panoptic_ros.evaluation import files

    assert files._orjson is not None, "orjson (requirements.txt) should be installed in the test venv"
    doc = {"annotations": [{"image_id": "frame_ü_1", "file_name": "a.png", "segments_info": [
        {"id": 7001, "category_id": 7, "iscrowd": 0, "area": 12, "bbox": [0.5, 1e-7, 3, 2**40]}]}],
        "categories": [{"id": 7, "name": "road", "isthing": 0, "color": [128, 64, 128]}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    fast = files.load_json(path)
    monkeypatch.setattr(files, "_orjson", None)
    assert files.load_json(path) == fast == doc
    with pytest.raises(ValueError):  # both raise json.JSONDecodeError's base class on a broken file
        path.write_text('{"annotations": [')
        files.load_json(path)
    monkeypatch.undo()
    with pytest.raises(ValueError):
        files.load_json(path)
