"""write_report: the files a user opens after an evaluation, and the id re-numbering they are drawn from."""
from __future__ import annotations

import json

import numpy as np
import pytest

from panoptic_ros.evaluation.pq import PQAccumulator
from panoptic_ros.evaluation.report import to_convention, worst_frame_names, write_report
from panoptic_ros.evaluation.synthetic import make_pair
from panoptic_ros.panoptic import category_of, instance_of
from panoptic_ros.taxonomy import Taxonomy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=2000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes, path


def test_to_convention_keeps_categories_and_separates_instances():
    tax = Taxonomy.cityscapes()
    gt, segs, _, _ = make_pair(np.random.default_rng(4), 40, 80, tax)
    ids = to_convention(gt, segs, tax)
    by_id = {s["id"]: s for s in segs}
    for s in segs:
        mask = gt == s["id"]
        assert (category_of(ids[mask]) == s["category_id"]).all()
        thing = tax.by_id[s["category_id"]].is_thing and not s["iscrowd"]
        assert (instance_of(ids[mask]) > 0).all() == thing
    assert (ids[gt == 0] == 0).all()
    things = [s["id"] for s in segs if tax.by_id[s["category_id"]].is_thing and not s["iscrowd"]]
    new_ids = {int(ids[gt == t][0]) for t in things}
    assert len(new_ids) == len(things)  # every instance keeps its own id
    assert set(by_id) >= set(np.unique(gt[gt > 0]).tolist())


def test_write_report_writes_every_file(tmp_path):
    tax = Taxonomy.cityscapes()
    rng = np.random.default_rng(0)
    acc = PQAccumulator(tax)
    frames = []
    for k in range(5):
        gt, gts, pred, preds = make_pair(rng, 48, 96, tax)
        acc.add(pred, preds, gt, gts, name=f"frame{k}")
        frames.append((gt, gts, pred, preds))
    result = acc.result()
    worst = []
    for name in worst_frame_names(acc.frames, 2):
        gt, gts, pred, preds = frames[int(name[5:])]
        pq = next(f["pq"] for f in acc.frames if f["name"] == name)
        image = rng.integers(0, 255, gt.shape + (3,), dtype=np.uint8)
        worst.append((name, image, to_convention(gt, gts, tax), to_convention(pred, preds, tax), pq))
    assert [w[4] for w in worst] == sorted(f["pq"] for f in acc.frames)[:2]
    latencies = rng.gamma(4.0, 10.0, 200)
    paths = write_report(tmp_path / "rep", result, acc.frames, latencies_ms=latencies, worst_frames=worst,
                         title="unit test", taxonomy=tax, extra={"model": "none"})
    for key in ("per_class", "latency", "worst"):
        assert_png(paths[key])
    report = json.loads(paths["json"].read_text())
    for group in ("All", "Things", "Stuff"):
        assert report[group]["pq"] == pytest.approx(result[group]["pq"])
        assert set(report[group]) >= {"pq", "sq", "rq", "n"}
    assert set(report["per_class"]) == set(tax.names())
    assert report["latency_ms"]["p50"] == pytest.approx(float(np.median(latencies)))
    assert report["worst_frames"] == [w[0] for w in worst]
    assert len(report["frames"]) == 5 and report["extra"] == {"model": "none"}
    md = paths["md"].read_text()
    assert "# unit test" in md and "| All |" in md and "p99" in md and "worst_frames.png" in md
    assert f"{100 * result['All']['pq']:.2f}" in md


def test_write_report_without_latencies_or_frames(tmp_path):
    acc = PQAccumulator([{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}])
    gt = np.full((8, 8), 1000, np.int32)
    acc.add(gt, [{"id": 1000, "category_id": 1}], gt, [{"id": 1000, "category_id": 1}], name="a")
    paths = write_report(tmp_path, acc.result(), acc.frames)
    assert set(paths) == {"json", "md", "per_class"}
    assert not (tmp_path / "latency_hist.png").exists() and not (tmp_path / "worst_frames.png").exists()
    report = json.loads(paths["json"].read_text())
    assert report["All"]["pq"] == 1.0 and report["Things"]["n"] == 0 and report["latency_ms"] is None


def test_worst_frames_of_mismatched_sizes_are_refused(tmp_path):
    acc = PQAccumulator(Taxonomy.cityscapes())
    ids = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="sizes differ"):
        write_report(tmp_path, acc.result(), [], worst_frames=[("x", None, ids, ids[:2], 0.0)])
