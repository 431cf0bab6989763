"""mIoU (semantic) and box AP (RetinaNet branch) accumulators."""
from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.evaluation.detection import DetectionAccumulator
from panoptic_ros.evaluation.semantic import SemanticAccumulator
from panoptic_ros.taxonomy import Taxonomy


def brute_force_iou(preds, gts, num_classes, ignore=255):
    out = []
    for c in range(num_classes):
        tp = fp = fn = 0
        for p, g in zip(preds, gts):
            valid = g != ignore
            tp += np.count_nonzero((p == c) & (g == c))
            fp += np.count_nonzero((p == c) & (g != c) & valid)
            fn += np.count_nonzero((p != c) & (g == c))
        out.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    return np.array(out)


def test_miou_matches_a_brute_force_count_with_void_and_unknown():
    rng = np.random.default_rng(0)
    names = ["road", "car", "sky", "never"]
    preds, gts = [], []
    acc = SemanticAccumulator(names)
    for _ in range(4):
        gt = rng.integers(0, 3, (20, 30)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = 255  # void: not evaluated
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 3, gt.shape)).astype(np.uint8)
        pred[rng.random(gt.shape) < 0.05] = 255  # unknown prediction: a miss
        acc.add(pred, gt)
        preds.append(pred)
        gts.append(gt)
    expected = brute_force_iou(preds, gts, 4)
    np.testing.assert_allclose(acc.iou(), expected, rtol=1e-12)
    result = acc.result()
    assert np.isnan(result["per_class"]["never"]["iou"]) and result["n"] == 3
    assert result["miou"] == pytest.approx(np.nanmean(expected))


def test_miou_hand_case_and_errors():
    acc = SemanticAccumulator(Taxonomy.cityscapes())
    gt = np.array([[0, 0, 13, 255]], np.uint8)
    pred = np.array([[0, 13, 13, 0]], np.uint8)
    acc.add(pred, gt)
    r = acc.result()["per_class"]
    assert r["road"]["iou"] == 0.5 and r["car"]["iou"] == 0.5  # road: 1 / (1 + 1 fn); car: 1 / (1 + 1 fp)
    with pytest.raises(ValueError, match="outside"):
        acc.add(pred, np.array([[0, 0, 40, 255]], np.uint8))
    with pytest.raises(ValueError, match="one shape"):
        acc.add(pred[:, :2], gt)


def test_box_ap_perfect_shifted_and_false_positive():
    tax = Taxonomy.cityscapes()
    car, person = tax.by_name["car"].id, tax.by_name["person"].id
    gt_boxes = np.array([[10, 10, 110, 60], [200, 50, 260, 170]], float)
    gt_labels = [car, person]

    perfect = DetectionAccumulator(tax)
    perfect.add(gt_boxes, [0.9, 0.8], gt_labels, gt_boxes, gt_labels)
    r = perfect.result()
    assert r["AP"] == pytest.approx(1.0) and r["per_class"]["car"] == pytest.approx(1.0)
    assert r["per_class"]["bus"] == -1.0  # no ground truth: pycocotools' -1

    shifted = DetectionAccumulator(tax)  # IoU 0.6 for both: counted at 0.5, not at 0.75
    shift = gt_boxes + np.array([[25, 0, 25, 0], [0, 30, 0, 30]], float)
    shifted.add(shift, [0.9, 0.8], gt_labels, gt_boxes, gt_labels)
    r = shifted.result()
    assert r["AP50"] == pytest.approx(1.0) and r["AP75"] == pytest.approx(0.0)

    with_fp = DetectionAccumulator(tax)  # a higher-scored miss before the hit: precision 1/2 at recall 1
    with_fp.add([[300, 300, 340, 340], [10, 10, 110, 60]], [0.95, 0.9], [car, car], gt_boxes[:1], [car])
    assert with_fp.result()["AP50"] == pytest.approx(0.5)

    nothing = DetectionAccumulator(tax)
    nothing.add(np.zeros((0, 4)), [], [], gt_boxes, gt_labels)
    r = nothing.result()
    assert r["AP"] == 0.0 and r["per_class"]["car"] == 0.0 and r["per_class"]["bus"] == -1.0

    with pytest.raises(ValueError, match="not among the categories"):
        with_fp.add(gt_boxes, [1, 1], [car, 7], gt_boxes, gt_labels)
    with pytest.raises(ValueError, match="x2 >= x1"):
        with_fp.add([[10, 10, 5, 20]], [1.0], [car], gt_boxes, gt_labels)
