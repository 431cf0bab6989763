"""Learned convolutional merge head (Diaz-Zapata, INRIA report): one small CNN per thing class refines each
detection's instance map, then the refined masks are stacked over the semantic prediction as the heuristic
fusion does.

Per valid detection k of class c, score s: the *instance map* is ``s * P_c`` inside its box (the head's pixel
centre rule), 0 outside, with ``P = softmax(semantic_logits)``; it is stacked with the C semantic maps ``P``
(C + 1 channels, whatever the number of detections) and the CNN of class c gives the refined mask:
a channel-wise (depthwise) 3x3 conv, ReLU, a 3x3 conv down to one channel, a sigmoid. Mask = sigmoid > 0.5.
The CNN runs on a grid 4x coarser than the one the fusion is given (the network's own logit grid at head
stride 1: logits average-pooled 4 x 4, boxes / 4), and its mask logits are upsampled bilinearly back: at
full resolution one detection's 20-channel stack is 1.5 M values, too slow to train on this CPU.
As in Mask R-CNN, a refined mask lives in its box: mask = sigmoid > 0.5 at the pixels of the box. The
masks go through detectron2's combine (:func:`.common.combine`, the heuristic fusion's thresholds).

Training (:meth:`compute_loss`) runs on the outputs of the frozen network: each detection is matched to a
ground-truth instance (:func:`.matching.match_detections`); the target is that instance's mask, all zeros for
an unmatched detection (it should vanish); binary cross-entropy averaged over the detections' box pixels
(Mask R-CNN's RoI loss; over the whole image the empty mask wins, an instance being ~1% of it).

Not exported in the network graph: the per-class CNNs run on the valid detections only (a data-dependent
count); the padded-K version would cost K x the CNN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..taxonomy import Taxonomy
from .common import TaxonomyTables, box_masks, combine, neutralise_padding
from .heuristic import DETECTRON2_OVERLAP_THRESHOLD, DETECTRON2_SCORE_THRESHOLD
from .matching import match_detections

COARSE = 4  # the CNN's grid is this many times coarser than the fusion's


class ClassMaskCNN(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, 1, 3, padding=1))


class LearnedConvFusion(nn.Module):
    box_free = False

    def __init__(self, taxonomy: Taxonomy, stuff_area_threshold: int = 0,
                 overlap_threshold: float = DETECTRON2_OVERLAP_THRESHOLD,
                 score_threshold: float = DETECTRON2_SCORE_THRESHOLD):
        super().__init__()
        self.tables = TaxonomyTables(taxonomy)
        self.nets = nn.ModuleList(ClassMaskCNN(taxonomy.num_classes + 1) for _ in taxonomy.thing_train_ids)
        self.stuff_area_threshold = int(stuff_area_threshold)
        self.overlap_threshold, self.score_threshold = float(overlap_threshold), float(score_threshold)

    def mask_logits(self, semantic_logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                    scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) refined mask logits (before the sigmoid); -inf for invalid slots."""
        b, k = labels.shape
        size = semantic_logits.shape[-2:]
        coarse = F.adaptive_avg_pool2d(semantic_logits.float(), (max(1, size[0] // COARSE), max(1, size[1] // COARSE)))
        h, w = coarse.shape[-2:]
        probs = coarse.softmax(1)
        inbox = box_masks(boxes * (w / size[1]), (h, w))
        out = torch.full((b, k, h, w), float("-inf"), device=semantic_logits.device)
        image, slot = torch.nonzero(valid, as_tuple=True)
        if image.numel() == 0:
            return out
        cls = labels[image, slot]
        instance = probs[image, cls] * scores[image, slot].view(-1, 1, 1) * inbox[image, slot]
        stacked = torch.cat([instance.unsqueeze(1), probs[image]], 1)
        refined = torch.empty((len(image), h, w), device=semantic_logits.device)
        thing_slot = self.tables.thing_slot[cls]
        for t, net in enumerate(self.nets):
            pick = torch.nonzero(thing_slot == t).flatten()
            if pick.numel():
                refined[pick] = net(stacked[pick]).squeeze(1)
        return out.index_put((image, slot), refined)

    def forward(self, semantic_logits, boxes, labels, scores, valid, centers=None):
        boxes, labels, scores = neutralise_padding(boxes, labels, scores, valid, int(self.tables.thing_train_ids[0]))
        coarse = self.mask_logits(semantic_logits, boxes, labels, scores.clamp(min=0), valid)
        fine = F.interpolate(coarse.clamp(min=-1e4), size=semantic_logits.shape[-2:], mode="bilinear",
                             align_corners=False)
        masks = (fine > 0) & valid.view(*valid.shape, 1, 1) & box_masks(boxes, semantic_logits.shape[-2:])
        return combine(masks, labels, scores, valid, semantic_logits.argmax(1), self.tables,
                       self.overlap_threshold, self.score_threshold, self.stuff_area_threshold)

    def compute_loss(self, outputs: dict, det: dict, targets: dict) -> dict[str, torch.Tensor]:
        """``outputs`` of the frozen network (1/4 logits), ``det`` its padded detections (input pixels),
        ``targets``: boxes / labels lists and ``instances`` (B, H, W) ground-truth instance index (-1 none)."""
        size = targets["instances"].shape[-2:]
        logits = F.interpolate(outputs["semantic"].detach().float(), size=size, mode="bilinear", align_corners=False)
        boxes, labels, scores = neutralise_padding(det["boxes"], det["labels"], det["scores"], det["valid"],
                                                   int(self.tables.thing_train_ids[0]))
        mask_logits = self.mask_logits(logits, boxes, labels, scores.clamp(min=0), det["valid"])
        coarse = mask_logits.shape[-2:]
        target = F.adaptive_avg_pool2d(mask_targets(det, targets), coarse)  # soft, on the CNN grid
        in_box = F.adaptive_avg_pool2d(box_masks(boxes, size).float(), coarse)  # fraction of each cell in the box
        valid = det["valid"]
        weight = in_box[valid]
        if not bool(valid.any()) or float(weight.sum()) == 0:
            return {"fusion": sum(p.sum() * 0 for p in self.parameters())}
        bce = F.binary_cross_entropy_with_logits(mask_logits[valid], target[valid], reduction="none")
        return {"fusion": (bce * weight).sum() / weight.sum()}


def mask_targets(det: dict, targets: dict) -> torch.Tensor:
    """(B, K, H, W) float: each detection's matched ground-truth instance mask, zeros if unmatched."""
    instances = targets["instances"]
    b, k = det["valid"].shape
    out = torch.zeros((b, k, *instances.shape[-2:]), device=instances.device)
    for i in range(b):
        table = match_detections(det["boxes"][i], det["labels"][i], det["valid"][i], targets["boxes"][i],
                                 targets["labels"][i])
        for g, d in enumerate(table.tolist()):
            if d >= 0:
                out[i, d] = (instances[i] == g).float()
    return out
