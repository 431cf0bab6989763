"""DetectionBranch.detect: anchors cached per (image size, device, dtype), decoding identical to the plain one."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from panoptic_ros.model.detection import DetectionBranch
from panoptic_ros.model.backbone import level_sizes

SIZES = [(64, 128), (96, 160)]  # the second is not a multiple of 128 (p7 rounds up)


def branch(levels=(3, 4, 5, 6, 7), num_classes=3):
    torch.manual_seed(0)
    return DetectionBranch(16, num_classes, levels=levels).eval()


def random_outputs(det: DetectionBranch, size, batch=2, seed=0):
    """Head outputs with many scores above 0.3, equal logits (ties) and equal boxes (NMS ties)."""
    g = torch.Generator().manual_seed(seed)
    a = sum(h * w for h, w in level_sizes(size, det.levels)) * det.num_anchors_per_location
    logits = torch.randn(batch, a, det.num_classes, generator=g) - 0.5
    logits[:, ::7] = logits[:, 3:4]  # exactly tied scores
    return {"cls_logits": logits, "bbox_regression": torch.randn(batch, a, 4, generator=g) * 0.3}


def plain_detect(det: DetectionBranch, outputs, image_size, score_threshold, max_detections):
    """detect as it was before the cache: anchors built per call, boolean mask indexing per level."""
    cls_logits, regression = outputs["cls_logits"].float(), outputs["bbox_regression"].float()
    per_level = det.level_anchors(image_size, cls_logits.device, torch.float32)
    counts = [x.shape[0] for x in per_level]
    batch, k = cls_logits.shape[0], max_detections
    out = {"boxes": torch.zeros(batch, k, 4), "scores": torch.zeros(batch, k),
           "labels": torch.zeros(batch, k, dtype=torch.int64), "valid": torch.zeros(batch, k, dtype=torch.bool)}
    for b in range(batch):
        boxes, scores, labels = [], [], []
        for logits, deltas, anchors in zip(cls_logits[b].split(counts), regression[b].split(counts), per_level):
            level_scores = torch.sigmoid(logits).flatten()
            keep = level_scores > score_threshold
            level_scores = level_scores[keep]
            candidates = torch.where(keep)[0]
            level_scores, order = level_scores.topk(min(det.topk_candidates, candidates.numel()))
            candidates = candidates[order]
            anchor_idx = torch.div(candidates, det.num_classes, rounding_mode="floor")
            decoded = det.box_coder.decode_single(deltas[anchor_idx], anchors[anchor_idx])
            boxes.append(clip_boxes_to_image(decoded, tuple(image_size)))
            scores.append(level_scores)
            labels.append(candidates % det.num_classes)
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        kept = batched_nms(boxes, scores, labels, det.nms_thresh)[:k]
        n = kept.numel()
        out["boxes"][b, :n], out["scores"][b, :n], out["labels"][b, :n] = boxes[kept], scores[kept], labels[kept]
        out["valid"][b, :n] = True
    return out


@pytest.mark.parametrize("levels", [(3, 4, 5, 6, 7), (2, 3, 4, 5, 6, 7)])
def test_cached_anchors_equal_fresh_ones_and_follow_the_size(levels):
    det = branch(levels)
    for size in SIZES + SIZES:  # the second round is served from the cache
        cached = det._cached_level_anchors(size, torch.device("cpu"), torch.float32)
        fresh = det.level_anchors(size, torch.device("cpu"), torch.float32)
        assert len(cached) == len(fresh) == len(levels)
        for c, f in zip(cached, fresh):
            assert c.dtype == f.dtype and torch.equal(c, f)
    assert len(det._detect_anchors) == len(SIZES)  # one entry per size, nothing stale served for another
    first = det._cached_level_anchors(SIZES[0], torch.device("cpu"), torch.float32)
    assert first[0] is det._cached_level_anchors(SIZES[0], torch.device("cpu"), torch.float32)[0]
    double = det._cached_level_anchors(SIZES[0], torch.device("cpu"), torch.float64)
    assert double[0].dtype == torch.float64 and torch.equal(double[0].float(), first[0])


@pytest.mark.parametrize("levels", [(3, 4, 5, 6, 7), (2, 3, 4, 5, 6, 7)])
def test_detect_equals_the_plain_decoding(levels):
    det = branch(levels)
    for round_ in range(2):
        for i, size in enumerate(SIZES):
            outputs = random_outputs(det, size, seed=10 * round_ + i)
            got = det.detect(outputs, size, score_threshold=0.3, max_detections=40)
            want = plain_detect(det, outputs, size, 0.3, 40)
            assert int(got["valid"].sum()) > 10
            for key in want:
                assert torch.equal(got[key], want[key]), key


def test_cache_is_not_state_and_training_builds_its_own():
    det = branch()
    det.detect(random_outputs(det, SIZES[0]), SIZES[0])
    assert det._detect_anchors and not any("anchor" in k for k in det.state_dict())
    outputs = random_outputs(det, SIZES[0], batch=1)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])}]
    before = det.compute_loss(outputs, targets, SIZES[0])
    det._detect_anchors.clear()
    after = det.compute_loss(outputs, targets, SIZES[0])
    assert not det._detect_anchors  # the loss does not fill (or read) detect's cache
    for k in before:
        assert torch.equal(before[k], after[k])


def test_wrong_size_is_still_refused_with_a_warm_cache():
    det = branch()
    outputs = random_outputs(det, SIZES[0])
    det.detect(outputs, SIZES[0])
    with pytest.raises(ValueError, match="network input size"):
        det.detect(outputs, SIZES[1])
