"""Pieces the fusions share: class tables, box masks (the head's pixel-centre rule), detectron2's combine."""
from __future__ import annotations

import torch
from torch import nn

from ..panoptic import OFFSET
from ..taxonomy import VOID_TRAIN_ID, Taxonomy


class TaxonomyTables(nn.Module):
    """Buffers every fusion needs: train id -> category id, is-thing, thing slot, the stuff / thing train ids."""

    def __init__(self, taxonomy: Taxonomy):
        super().__init__()
        things = sorted(int(t) for t in taxonomy.thing_train_ids)
        stuff = sorted(int(s) for s in taxonomy.stuff_train_ids)
        num_classes = taxonomy.num_classes
        is_thing = torch.zeros(num_classes, dtype=torch.bool)
        is_thing[things] = True
        slot = torch.full((num_classes,), -1, dtype=torch.int64)
        slot[things] = torch.arange(len(things))
        self.num_classes = num_classes
        self.register_buffer("category_ids", torch.tensor([int(c) for c in taxonomy.ids], dtype=torch.int32),
                             persistent=False)
        self.register_buffer("is_thing", is_thing, persistent=False)
        self.register_buffer("thing_slot", slot, persistent=False)
        self.register_buffer("thing_train_ids", torch.tensor(things, dtype=torch.int64), persistent=False)
        self.register_buffer("stuff_train_ids", torch.tensor(stuff, dtype=torch.int64), persistent=False)


def trim_slots(valid: torch.Tensor) -> int:
    """How many padded slots matter: up to the last valid one in any image. Eager only (a data-dependent
    size); under torch.export / ONNX all K stay, with the same result."""
    if torch.compiler.is_compiling() or valid.numel() == 0:
        return valid.shape[1]
    any_valid = valid.any(0)
    return int(torch.nonzero(any_valid).max()) + 1 if bool(any_valid.any()) else 1


def box_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, H, W) bool: pixel (i, j) is in box (x1, y1, x2, y2) iff ``x1 <= j + 0.5 < x2`` and
    ``y1 <= i + 0.5 < y2`` (float32), the rule of :mod:`panoptic_ros.head`."""
    h, w = size
    boxes = boxes.to(torch.float32)
    cols = torch.arange(w, dtype=torch.float32, device=boxes.device) + 0.5
    rows = torch.arange(h, dtype=torch.float32, device=boxes.device) + 0.5
    in_x = (boxes[..., 0:1] <= cols) & (cols < boxes[..., 2:3])  # (B, K, W)
    in_y = (boxes[..., 1:2] <= rows) & (rows < boxes[..., 3:4])  # (B, K, H)
    return in_y.unsqueeze(-1) & in_x.unsqueeze(-2)


def neutralise_padding(boxes, labels, scores, valid, first_thing: int):
    """Padding slots may hold anything (NaN, garbage labels): zero boxes, a thing label, score -inf."""
    boxes = torch.where(valid[..., None], boxes.to(torch.float32), 0.0)
    labels = torch.where(valid, labels.long(), first_thing)
    scores = torch.where(valid, scores.to(torch.float32), float("-inf"))
    return boxes, labels, scores


def combine(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor,
            semantic_argmax: torch.Tensor, tables: TaxonomyTables, overlap_threshold: float,
            score_threshold: float, stuff_area_threshold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """detectron2's ``combine_semantic_and_instance_outputs`` (Panoptic FPN) on (B, K, H, W) instance masks.

    1. Instances in descending score order (ties: lower index first); stop at a score below
       ``score_threshold``; skip an empty mask; skip it when ``intersection / mask area > overlap_threshold``
       (float64, intersection with the pixels already taken); else it takes its untaken mask pixels.
    2. Each stuff class of the semantic argmax covers its untaken pixels if they are at least
       ``stuff_area_threshold`` (detectron2's ``mask_area < stuff_area_thresh: continue``); a thing argmax is
       detectron2's single "things" class of its semantic head and is never stuff.
    3. The rest is void. Ids: instance of padded index k -> ``category * 1000 + k + 1``.
    """
    b, k, h, w = masks.shape
    taken = torch.zeros((b, h, w), dtype=torch.int64, device=masks.device)  # detection index + 1, 0 = free
    # Rank of each slot: higher score first, ties to the lower index (a stable sort, written as counts
    # because ONNX has no stable sort; K is at most a few hundred).
    before = (scores.unsqueeze(1) > scores.unsqueeze(2)) | (
        (scores.unsqueeze(1) == scores.unsqueeze(2)) & torch.ones(k, k, dtype=torch.bool, device=masks.device).tril(-1))
    rank = before.sum(2)  # (B, K): rank[b, d] = slots that come before d
    batch = torch.arange(b, device=masks.device)
    for r in range(k):
        index = (rank == r).to(torch.int64).argmax(1)
        mask = masks[batch, index]
        area = mask.sum((1, 2))
        overlap = (mask & (taken > 0)).sum((1, 2))
        ok = valid[batch, index] & (scores[batch, index] >= score_threshold) & (area > 0)
        ok = ok & ~(overlap.double() / area.clamp(min=1).double() > overlap_threshold)
        taken = torch.where(ok.view(b, 1, 1) & mask & (taken == 0), (index + 1).view(b, 1, 1), taken)
    label_table = torch.cat([labels.new_zeros(b, 1), labels], 1)  # index 0: no detection
    det_train = torch.gather(label_table, 1, taken.reshape(b, -1)).reshape(b, h, w)
    is_det = taken > 0
    is_stuff = stuff_area_filter(~is_det & ~tables.is_thing[semantic_argmax], semantic_argmax,
                                 tables.num_classes, stuff_area_threshold)
    return assemble_ids(torch.where(is_det, det_train, semantic_argmax), taken, is_det, is_stuff, tables)


def assemble_ids(train: torch.Tensor, instance: torch.Tensor, is_thing: torch.Tensor, is_stuff: torch.Tensor,
                 tables: TaxonomyTables) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids ``category(train) * 1000 + instance`` where ``is_thing``, ``category * 1000`` where ``is_stuff``,
    0 elsewhere; and the semantic train ids (255 void)."""
    train = train.long().clamp(0, tables.num_classes - 1)
    category = tables.category_ids[train].to(torch.int32) * OFFSET
    ids = torch.where(is_thing, category + instance.to(torch.int32), torch.where(is_stuff, category, 0))
    semantic = torch.where(is_thing | is_stuff, train, VOID_TRAIN_ID).to(torch.uint8)
    return ids.to(torch.int32), semantic


def stuff_area_filter(stuff_pixel: torch.Tensor, semantic_argmax: torch.Tensor, num_classes: int,
                      threshold: int) -> torch.Tensor:
    """``stuff_pixel`` without the stuff classes covering fewer than ``threshold`` of its pixels per image."""
    b = stuff_pixel.shape[0]
    area = torch.zeros((b, num_classes), dtype=torch.int64, device=stuff_pixel.device)
    area.scatter_add_(1, semantic_argmax.reshape(b, -1), stuff_pixel.reshape(b, -1).long())
    big = torch.gather(area, 1, semantic_argmax.reshape(b, -1)).reshape(stuff_pixel.shape) >= threshold
    return stuff_pixel & big
