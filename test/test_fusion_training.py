"""The trainable fusions: the detection <-> ground-truth lookup table on hand-made cases, the panoptic
targets, inference on hand-made cases, and losses that fall on a tiny overfit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.fusion import build_fusion
from panoptic_ros.fusion.common import TaxonomyTables
from panoptic_ros.fusion.hps import IGNORE, HPSFusion, panoptic_targets
from panoptic_ros.fusion.learned_conv import LearnedConvFusion
from panoptic_ros.fusion.matching import match_detections
from panoptic_ros.fusion.train import FusionDataset
from panoptic_ros.data.frame import Sample
from panoptic_ros.panoptic import Segment
from panoptic_ros.taxonomy import Taxonomy

CITY = Taxonomy.cityscapes()
ROAD, SKY, PERSON, CAR = (CITY.train_id(n) for n in ("road", "sky", "person", "car"))
NUM_STUFF = len(CITY.stuff_train_ids)


def test_matching_greedy_by_slot_same_class_iou():
    gt_boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=torch.float32)
    gt_labels = torch.tensor([CAR, CAR, PERSON])
    det_boxes = torch.tensor([[1, 0, 10, 10],     # car on gt 0 (IoU 0.9)
                              [0, 0, 10, 10],     # car, also best on gt 0, which is taken -> nothing >= 0.5
                              [40, 0, 50, 10],    # car on the person: wrong class
                              [21, 0, 31, 10],    # car on gt 1 (IoU 9/11)
                              [40, 0, 50, 10]], dtype=torch.float32)  # person: invalid slot
    det_labels = torch.tensor([CAR, CAR, CAR, CAR, PERSON])
    valid = torch.tensor([True, True, True, True, False])
    table = match_detections(det_boxes, det_labels, valid, gt_boxes, gt_labels)
    assert table.tolist() == [0, 3, -1]
    valid[4] = True
    assert match_detections(det_boxes, det_labels, valid, gt_boxes, gt_labels).tolist() == [0, 3, 4]
    assert match_detections(det_boxes, det_labels, valid, gt_boxes[:0], gt_labels[:0]).tolist() == []


def test_panoptic_targets_through_the_lookup_table():
    semantic = torch.full((1, 2, 6), ROAD)
    semantic[0, 1] = SKY
    semantic[0, 0, 5] = 255
    semantic[0, :, 0:2] = CAR
    semantic[0, :, 2:4] = CAR
    instances = torch.full((1, 2, 6), -1)
    instances[0, :, 0:2] = 0
    instances[0, :, 2:4] = 1
    targets = {"semantic": semantic, "instances": instances,
               "boxes": [torch.tensor([[0, 0, 2, 2], [2, 0, 4, 2]], dtype=torch.float32)],
               "labels": [torch.tensor([CAR, CAR])]}
    det_boxes = torch.tensor([[[2, 0, 4, 2], [9, 9, 10, 10]]], dtype=torch.float32)  # matches gt 1 only
    out = panoptic_targets(targets, det_boxes, torch.tensor([[CAR, CAR]]), torch.tensor([[True, True]]),
                           TaxonomyTables(CITY))
    stuff = CITY.stuff_train_ids.tolist()
    expected = torch.tensor([[IGNORE, IGNORE, NUM_STUFF + 0, NUM_STUFF + 0, stuff.index(ROAD), IGNORE],
                             [IGNORE, IGNORE, NUM_STUFF + 0, NUM_STUFF + 0, stuff.index(SKY), stuff.index(SKY)]])
    assert torch.equal(out[0], expected)


def test_hps_inference_overlap_goes_to_the_higher_score_and_weak_boxes_lose_to_stuff():
    logits = torch.zeros(1, CITY.num_classes, 4, 8)
    logits[0, ROAD] = 1.0
    logits[0, CAR, :, :6] = 2.0
    boxes = torch.tensor([[[0, 0, 4, 4], [2, 0, 6, 4], [6, 0, 8, 4]]], dtype=torch.float32)
    scores = torch.tensor([[0.5, 0.9, 0.99]])
    ids, semantic = HPSFusion(CITY)(logits, boxes, torch.tensor([[CAR, CAR, CAR]]), scores,
                                    torch.ones(1, 3, dtype=torch.bool))
    ids = ids[0]
    assert (ids[:, 0:2] == 26001).all()  # 2 + log 0.5 = 1.31 > road 1
    assert (ids[:, 2:6] == 26002).all()  # overlap: 2 + log 0.9 beats 2 + log 0.5
    assert (ids[:, 6:8] == 7000).all()  # car logit 0 + log 0.99 < road
    assert (semantic[0, :, 6:] == ROAD).all()


def _tiny_case(seed=0, size=(16, 32)):
    """Fixed detections and ground truth on a 16 x 32 image: two cars and a person on road / sky."""
    h, w = size
    semantic = torch.full((1, h, w), ROAD)
    semantic[0, :4] = SKY
    instances = torch.full((1, h, w), -1)
    gt = [(CAR, (2, 6, 10, 14)), (CAR, (12, 5, 22, 15)), (PERSON, (25, 4, 29, 14))]
    for g, (label, (x1, y1, x2, y2)) in enumerate(gt):
        semantic[0, y1:y2, x1:x2] = label
        instances[0, y1:y2, x1:x2] = g
    targets = {"semantic": semantic, "instances": instances,
               "boxes": [torch.tensor([b for _, b in gt], dtype=torch.float32)],
               "labels": [torch.tensor([label for label, _ in gt])]}
    det = {"boxes": torch.tensor([[[2, 6, 11, 14], [11, 5, 22, 15], [24, 4, 29, 14], [0, 0, 6, 4]]],
                                 dtype=torch.float32),
           "labels": torch.tensor([[CAR, CAR, PERSON, CAR]]), "scores": torch.tensor([[0.9, 0.8, 0.7, 0.6]]),
           "valid": torch.ones(1, 4, dtype=torch.bool)}
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, CITY.num_classes, h // 4, w // 4, generator=g)
    return logits, det, targets


def _overfit(parameters, loss_fn, steps=40, lr=0.05):
    optimizer = torch.optim.Adam(parameters, lr=lr)
    first = None
    for _ in range(steps):
        loss = loss_fn()
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, float(loss_fn())


def test_hps_loss_falls_when_the_logits_train():
    logits, det, targets = _tiny_case()
    param = torch.nn.Parameter(logits.clone())
    fusion = HPSFusion(CITY)
    first, last = _overfit([param], lambda: fusion.compute_loss({"semantic": param}, det, targets)["fusion"])
    assert last < 0.5 * first


def test_hps_isi_loss_falls_and_inference_uses_the_refined_logits():
    logits, det, targets = _tiny_case()
    fusion = build_fusion("hps_isi", CITY).train()
    features = torch.randn(1, 64, *logits.shape[-2:])
    fusion._captured = {"features": features, "logits": logits}

    def loss():
        losses = fusion.compute_loss({"semantic": logits}, det, targets)
        return losses["fusion"] + losses["isi_semantic"]
    first, last = _overfit(fusion.parameters(), loss, lr=0.01)
    assert last < 0.7 * first
    fusion.eval()
    refined = fusion.refined_logits(det["boxes"], det["labels"], det["scores"], det["valid"], 32.0)
    assert not torch.allclose(refined, logits)  # the ISI head learned something
    ids_fused, _ = fusion(torch.nn.functional.interpolate(logits, size=(16, 32), mode="bilinear"),
                          det["boxes"], det["labels"], det["scores"], det["valid"])
    ids_plain, _ = HPSFusion(CITY)(torch.nn.functional.interpolate(refined, size=(16, 32), mode="bilinear"),
                                   det["boxes"], det["labels"], det["scores"], det["valid"])
    assert torch.equal(ids_fused, ids_plain)


def test_isi_is_the_score_weighted_average_of_the_holding_boxes():
    fusion = HPSFusion(CITY, isi=True)
    logits = torch.zeros(1, CITY.num_classes, 1, 3)  # uniform probabilities 1/19
    boxes = torch.tensor([[[0, 0, 2, 1], [1, 0, 3, 1]]], dtype=torch.float32)
    isi = fusion.isi_image(logits, boxes, torch.tensor([[CAR, CAR]]), torch.tensor([[0.8, 0.4]]),
                           torch.ones(1, 2, dtype=torch.bool))
    car = CITY.thing_train_ids.tolist().index(CAR)
    p = 1 / CITY.num_classes
    expected = torch.tensor([0.8, (0.8 * 0.8 + 0.4 * 0.4) / 1.2, 0.4]) * p
    assert torch.allclose(isi[0, car, 0], expected)
    assert isi[0, :car].abs().sum() == 0 and isi[0, car + 1:].abs().sum() == 0


def test_learned_conv_loss_falls_and_masks_follow_it():
    _, det, targets = _tiny_case()
    # Logits that say where the classes are (coarse one-hot of the ground truth + noise): the CNN can learn
    # the mask from them (from random logits only the box is known and the loss plateaus).
    one_hot = torch.nn.functional.one_hot(targets["semantic"][0], CITY.num_classes).permute(2, 0, 1).float()
    logits = torch.nn.functional.avg_pool2d(one_hot[None] * 4, 4) + 0.3 * torch.randn(1, CITY.num_classes, 4, 8,
                                                                                     generator=torch.Generator().manual_seed(1))
    fusion = LearnedConvFusion(CITY).train()
    first, last = _overfit(fusion.parameters(),
                           lambda: fusion.compute_loss({"semantic": logits}, det, targets)["fusion"], steps=150)
    # The coarse targets are soft (cells the mask edge crosses), so the loss cannot reach 0: its floor is
    # their weighted binary entropy. The loss must close most of the gap to it.
    from panoptic_ros.fusion.common import box_masks
    from panoptic_ros.fusion.learned_conv import mask_targets

    target = torch.nn.functional.adaptive_avg_pool2d(mask_targets(det, targets), (4, 8))[0]
    weight = torch.nn.functional.adaptive_avg_pool2d(box_masks(det["boxes"], (16, 32)).float(), (4, 8))[0]
    entropy = torch.nn.functional.binary_cross_entropy(target, target, reduction="none")
    floor = float((entropy * weight).sum() / weight.sum())
    assert last - floor < 0.2 * (first - floor)
    fusion.eval()
    fine = torch.nn.functional.interpolate(logits, size=(16, 32), mode="bilinear", align_corners=False)
    ids, _ = fusion(fine, det["boxes"], det["labels"], det["scores"], det["valid"])
    assert (ids[0, 7:13, 4:9] == 26001).float().mean() > 0.8  # the first car's mask, learned from random logits


def test_fusion_dataset_instances_index_the_boxes():
    tax = CITY
    ids = np.full((20, 40), 7000, np.int32)
    ids[2:8, 3:9] = 26001
    ids[10:15, 20:30] = 24002
    ids[1:3, 30:35] = 26005
    segments = [Segment(7000, 7, False, 0, (0, 0, 1, 1)), Segment(26001, 26, True, 0, (0, 0, 1, 1)),
                Segment(24002, 24, True, 0, (0, 0, 1, 1)), Segment(26005, 26, True, 0, (0, 0, 1, 1), iscrowd=1)]
    reader = [Sample(np.zeros((20, 40, 3), np.uint8), ids, segments, "a")]
    item = FusionDataset(reader, tax, (20, 40), augment=False)[0]
    instances, boxes = item["instances"], item["boxes"]
    assert len(boxes) == 2 and int(instances.max()) == 1
    for g, box in enumerate(boxes.tolist()):
        rows, cols = torch.nonzero(instances == g, as_tuple=True)
        assert box == [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]
    assert (instances[1:3, 30:35] == -1).all()  # crowd
