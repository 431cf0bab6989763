"""Detections to ground-truth instances: the lookup table the trainable fusions' losses go through."""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

MATCH_IOU = 0.5


def match_detections(det_boxes: torch.Tensor, det_labels: torch.Tensor, det_valid: torch.Tensor,
                     gt_boxes: torch.Tensor, gt_labels: torch.Tensor, iou_threshold: float = MATCH_IOU) -> torch.Tensor:
    """Lookup table (N,) int64 of one image: ground-truth instance g -> the detection index it is matched to,
    -1 when none.

    Detections are taken in their slot order (the detector sorts them by score); each takes the unmatched
    ground-truth instance of its own class with the highest box IoU (ties: lower index), if that IoU is at
    least ``iou_threshold`` (COCO's greedy matching). Box IoU by torchvision.
    """
    table = torch.full((len(gt_boxes),), -1, dtype=torch.int64)
    if len(gt_boxes) == 0 or not bool(det_valid.any()):
        return table
    iou = box_iou(det_boxes.float().cpu(), gt_boxes.float().cpu())
    iou = torch.where(det_labels.cpu().view(-1, 1) == gt_labels.cpu().view(1, -1), iou, -1.0)
    for d in torch.nonzero(det_valid.cpu()).flatten().tolist():
        candidates = torch.where(table < 0, iou[d], -1.0)
        best = int(candidates.argmax())
        if float(candidates[best]) >= iou_threshold:
            table[best] = d
    return table
