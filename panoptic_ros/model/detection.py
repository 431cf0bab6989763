"""RetinaNet branch over the thing classes, built from torchvision's RetinaNet parts.

Differences from ``torchvision.models.detection.RetinaNet``: anchors come from the static input size (no
ImageList / transform), anchor strides are the true 2**level (torchvision divides the padded image size by
the feature size, which is off for sizes not divisible by 128), and ``detect`` pads to a static K.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Sequence

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from ..numpy_ops import flatnonzero, greater
from .backbone import group_norm, level_sizes


class DetectionBranch(nn.Module):
    """RetinaNet head (GroupNorm variant) with anchors, matcher, box coder, focal loss and postprocessing.

    Args:
        in_channels: FPN width.
        num_classes: number of thing classes T (logit j = j-th thing class).
        levels: pyramid levels the head runs on (default p3..p7 as RetinaNet).
        anchor_scale: anchor base size in units of the level stride (4 -> 32 px on p3, as RetinaNet).
        aspect_ratios: anchor aspect ratios (height / width).
        scales_per_octave: anchor sizes per level, spaced 2**(1/n).
        fg_iou_thresh, bg_iou_thresh: matcher thresholds (0.5 / 0.4).
        box_loss: torchvision's ``_box_loss`` type: ``l1``, ``smooth_l1``, ``giou``, ``ciou``, ``diou``.
        topk_candidates: per-level candidates kept before NMS; nms_thresh: NMS IoU threshold.
    """

    def __init__(self, in_channels: int, num_classes: int, levels: Sequence[int] = (3, 4, 5, 6, 7),
                 anchor_scale: float = 4.0, aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 scales_per_octave: int = 3, fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.4,
                 box_loss: str = "l1", topk_candidates: int = 1000, nms_thresh: float = 0.5):
        super().__init__()
        levels = tuple(int(v) for v in levels)
        if not levels or list(levels) != sorted(set(levels)) or min(levels) < 2 or max(levels) > 7:
            raise ValueError(f"detection levels must be increasing, unique, within 2..7; got {levels}")
        if num_classes < 1:
            raise ValueError("the detection branch needs at least one thing class")
        self.levels = levels
        self.num_classes = num_classes
        # Same construction as torchvision's _default_anchorgen: x, int(x * 2**(1/3)), int(x * 2**(2/3)).
        sizes = tuple(tuple(int(anchor_scale * 2 ** lv * 2 ** (i / scales_per_octave))
                            for i in range(scales_per_octave)) for lv in levels)
        self.anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(levels))
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.head = RetinaNetHead(in_channels, num_anchors, num_classes, norm_layer=group_norm)
        self.head.regression_head._loss_type = box_loss
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.topk_candidates = int(topk_candidates)
        self.nms_thresh = float(nms_thresh)
        # detect's anchors per (image_size, device, dtype): a node runs one input size, and rebuilding them
        # costs more than the rest of the decoding (0.2 ms at 192 x 384 on p3-p7, 0.5 ms with p2). A plain
        # dict, not a buffer: nothing in the state dict, and .to() / training never see it.
        self._detect_anchors: dict[tuple, list[torch.Tensor]] = {}

    @property
    def num_anchors_per_location(self) -> int:
        return self.anchor_generator.num_anchors_per_location()[0]

    def forward(self, pyramid: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pyramid`` = [p2..p7]; returns cls_logits (B, A, T) and bbox_regression (B, A, 4)."""
        return self.head([pyramid[lv - 2] for lv in self.levels])

    def anchors(self, image_size: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
        """(A, 4) xyxy anchors for one image of ``image_size`` (H, W), in head output order."""
        return torch.cat(self.level_anchors(image_size, device, dtype))

    def level_anchors(self, image_size, device=None, dtype=torch.float32) -> list[torch.Tensor]:
        grid_sizes = [list(s) for s in level_sizes(image_size, self.levels)]
        strides = [[torch.tensor(2 ** lv, device=device), torch.tensor(2 ** lv, device=device)]
                   for lv in self.levels]
        self.anchor_generator.set_cell_anchors(dtype, device)
        return self.anchor_generator.grid_anchors(grid_sizes, strides)

    def _cached_level_anchors(self, image_size, device, dtype) -> list[torch.Tensor]:
        """``level_anchors`` built once per (image_size, device, dtype); callers must not modify them."""
        if torch.compiler.is_compiling():  # traced graphs build them inline (no Python state in a graph)
            return self.level_anchors(image_size, device, dtype)
        key = (tuple(int(v) for v in image_size), torch.device(device), dtype)
        cached = self._detect_anchors.get(key)
        if cached is None:
            cached = self._detect_anchors[key] = self.level_anchors(image_size, device, dtype)
        return cached

    def _cached_anchors(self, image_size, device, dtype) -> torch.Tensor:
        """``anchors``, concatenated once per (image_size, device, dtype) like ``_cached_level_anchors``."""
        levels = self._cached_level_anchors(image_size, device, dtype)
        if torch.compiler.is_compiling():
            return torch.cat(levels)
        key = ("all", tuple(int(v) for v in image_size), torch.device(device), dtype)
        cached = self._detect_anchors.get(key)
        if cached is None:
            cached = self._detect_anchors[key] = torch.cat(levels)
        return cached

    def _check(self, outputs: dict, image_size) -> None:
        expected = sum(h * w for h, w in level_sizes(image_size, self.levels)) * self.num_anchors_per_location
        got = outputs["cls_logits"].shape[1]
        if got != expected:
            raise ValueError(f"detection outputs hold {got} anchors but an input of {tuple(image_size)} "
                             f"gives {expected}: image_size must be the network input size")

    def compute_loss(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]],
                     image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """torchvision RetinaNet's loss. ``targets[b]``: boxes (N, 4) xyxy, labels (N,) in 0..T-1."""
        self._check(outputs, image_size)
        anchors = self.anchors(image_size, outputs["cls_logits"].device, outputs["bbox_regression"].dtype)
        matched_idxs = []
        for target in targets:
            if target["boxes"].numel() == 0:
                matched_idxs.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device))
            else:
                matched_idxs.append(self.proposal_matcher(box_iou(target["boxes"], anchors)))
        outputs = {k: v.float() for k, v in outputs.items()}
        return self.head.compute_loss(targets, outputs, [anchors] * len(targets), matched_idxs)

    @torch.no_grad()
    def detect(self, outputs: dict[str, torch.Tensor], image_size: tuple[int, int], score_threshold: float = 0.4,
               max_detections: int = 100) -> dict[str, torch.Tensor]:
        """torchvision RetinaNet's postprocessing, padded to ``max_detections`` slots.

        Returns boxes (B, K, 4) xyxy input pixels, scores (B, K), labels (B, K) class index 0..T-1,
        valid (B, K) bool; padding slots have zeros and valid False. Sorted by score.
        """
        self._check(outputs, image_size)
        cls_logits, regression = outputs["cls_logits"].float(), outputs["bbox_regression"].float()
        device = cls_logits.device
        counts = [h * w * self.num_anchors_per_location for h, w in level_sizes(image_size, self.levels)]
        batch, k = cls_logits.shape[0], int(max_detections)
        boxes = torch.zeros(batch, k, 4, device=device)
        scores = torch.zeros(batch, k, device=device)
        labels = torch.zeros(batch, k, dtype=torch.int64, device=device)
        valid = torch.zeros(batch, k, dtype=torch.bool, device=device)
        anchors = self._cached_anchors(image_size, device, torch.float32)
        sizes = [count * self.num_classes for count in counts]  # scores per level
        probabilities = torch.empty(sum(sizes), device=device)
        for b in range(batch):
            # Per level (torchvision's rule: each level keeps its topk_candidates best), but only the score
            # threshold and the top-k: boxes of all levels are decoded in one call (~5x fewer small ops).
            # Sigmoid per level, as torchvision (its bits depend on where a call's vector loop ends), into one
            # buffer, then one threshold pass and one search for candidates over all levels.
            for logits, out in zip(cls_logits[b].split(counts), probabilities.split(sizes)):
                torch.sigmoid(logits, out=out.view(logits.shape))
            candidates = flatnonzero(greater(probabilities, float(score_threshold)))  # ascending
            bounds = torch.searchsorted(candidates, torch.tensor([0, *accumulate(sizes)], device=device)).tolist()
            level_scores, level_candidates = [], []
            for start, stop in zip(bounds[:-1], bounds[1:]):
                if stop > start:
                    level = candidates[start:stop]
                    scores_l, order = probabilities.index_select(0, level).topk(min(self.topk_candidates, stop - start))
                    level_scores.append(scores_l)
                    level_candidates.append(level.index_select(0, order))
            if not level_scores:
                continue
            all_scores, candidates = torch.cat(level_scores), torch.cat(level_candidates)
            anchor_idx = torch.div(candidates, self.num_classes, rounding_mode="floor")
            decoded = self.box_coder.decode_single(regression[b].index_select(0, anchor_idx),
                                                   anchors.index_select(0, anchor_idx))
            all_boxes = clip_boxes_to_image(decoded, tuple(image_size))
            all_labels = candidates % self.num_classes
            kept = batched_nms(all_boxes, all_scores, all_labels, self.nms_thresh)[:k]
            n = kept.numel()
            boxes[b, :n], scores[b, :n], labels[b, :n] = all_boxes[kept], all_scores[kept], all_labels[kept]
            valid[b, :n] = True
        return {"boxes": boxes, "scores": scores, "labels": labels, "valid": valid}

