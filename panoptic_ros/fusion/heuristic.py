"""Heuristic fusion: Panoptic FPN's / detectron2's ``combine_semantic_and_instance_outputs``.

This network has no mask head, so the instance mask of a detection is defined from its box and the semantic
branch: **the pixels whose centre lies in its box (the head's rule, :func:`.common.box_masks`) and whose
semantic argmax over all C classes (first maximum) is the detection's class**. The combine step is
detectron2's (:func:`.common.combine`): instances by descending score (ties: lower index), skipped below
``score_threshold`` (detectron2's ``INSTANCES_CONFIDENCE_THRESH`` 0.5; the Predictor's detection threshold
applies before), skipped when more than ``overlap_threshold`` (0.5) of the mask is already taken, else it
takes its free pixels; then each stuff class of the semantic argmax covers its free pixels if at least
``stuff_area_threshold`` of them; the rest (thing argmax no instance took, small stuff) is void.

Exports (ONNX / torch.export): the loop over the K padded slots unrolls at a static K; all shapes static.
"""
from __future__ import annotations

import torch
from torch import nn

from ..taxonomy import Taxonomy
from .common import TaxonomyTables, box_masks, combine, neutralise_padding, trim_slots

DETECTRON2_OVERLAP_THRESHOLD = 0.5  # MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH
DETECTRON2_SCORE_THRESHOLD = 0.5  # MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH


class HeuristicFusion(nn.Module):
    box_free = False

    def __init__(self, taxonomy: Taxonomy, overlap_threshold: float = DETECTRON2_OVERLAP_THRESHOLD,
                 score_threshold: float = DETECTRON2_SCORE_THRESHOLD, stuff_area_threshold: int = 0):
        super().__init__()
        self.tables = TaxonomyTables(taxonomy)
        self.overlap_threshold = float(overlap_threshold)
        self.score_threshold = float(score_threshold)
        self.stuff_area_threshold = int(stuff_area_threshold)

    def extra_repr(self) -> str:
        return (f"overlap_threshold={self.overlap_threshold}, score_threshold={self.score_threshold}, "
                f"stuff_area_threshold={self.stuff_area_threshold}")

    def forward(self, semantic_logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                scores: torch.Tensor, valid: torch.Tensor,
                centers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        k = trim_slots(valid)
        valid = valid[:, :k]
        boxes, labels, scores = neutralise_padding(boxes[:, :k], labels[:, :k], scores[:, :k], valid,
                                                   int(self.tables.thing_train_ids[0]))
        argmax = semantic_logits.argmax(1)  # first maximum (torch's documented tie rule)
        masks = box_masks(boxes, semantic_logits.shape[-2:]) & (argmax.unsqueeze(1) == labels[..., None, None])
        return combine(masks, labels, scores, valid, argmax, self.tables, self.overlap_threshold,
                       self.score_threshold, self.stuff_area_threshold)
