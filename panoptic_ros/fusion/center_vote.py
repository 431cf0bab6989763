"""Box-free fusion: Panoptic-DeepLab's grouping of thing pixels around voted instance centres.

Exact semantics (``test/reference_fusions.py`` implements the same text with Python loops):

1. **Semantic.** ``a`` = the first argmax of the logits over all C classes; a pixel is a *thing pixel* iff
   ``a`` is a thing class.
2. **Votes.** Thing pixel (row i, col j) votes for the point ``(x, y) = ((j + 0.5) + dx, (i + 0.5) + dy)``
   (float32; ``(dx, dy)`` = ``centers[:, 0], centers[:, 1]``, the predicted offset to its box centre); the
   vote lands in cell ``(floor(y), floor(x))`` if that is inside the image. ``N`` = votes per cell.
3. **Vote map.** ``V`` = the sum of ``N`` over the ``vote_window`` x ``vote_window`` cells around each cell
   (zeros outside the image): votes of one instance scatter over a few cells.
4. **Centres.** Cells are ranked by ``V``, ties to the lower row-major index (key ``V * H * W + (H * W - 1 -
   index)``, exact in float64). A cell is a centre iff its key is the maximum within the ``nms_kernel`` x
   ``nms_kernel`` window around it (Panoptic-DeepLab's max-pool NMS; the unique key keeps one cell of a
   plateau) and ``V >= min_votes``; the ``top_k`` highest keys are kept, rank r gets instance ``r + 1``.
5. **Grouping.** Every thing pixel joins the centre nearest to its voted point (squared float32 distance to
   the centre cell's centre ``(cx + 0.5, cy + 0.5)``; ties to the lower rank); with no centre it is void.
6. **Class.** An instance takes the majority semantic class of its pixels (ties: lower train id); all its
   pixels get it (Panoptic-DeepLab's merge).
7. **Stuff.** A pixel whose ``a`` is stuff keeps it; a stuff class covering fewer than
   ``stuff_area_threshold`` pixels becomes void.

No boxes are used (``box_free``): the Predictor gives its instances score 1. All shapes are static (K =
``top_k``), so it exports with torch.export / ONNX.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..taxonomy import Taxonomy
from .common import TaxonomyTables, assemble_ids, stuff_area_filter


class CenterVoteFusion(nn.Module):
    box_free = True

    def __init__(self, taxonomy: Taxonomy, vote_window: int = 5, nms_kernel: int = 7, min_votes: int = 16,
                 top_k: int = 100, stuff_area_threshold: int = 0):
        super().__init__()
        if vote_window % 2 == 0 or nms_kernel % 2 == 0 or top_k < 1 or top_k > 999 or min_votes < 1:
            raise ValueError(f"need odd vote_window / nms_kernel, 1 <= top_k <= 999 and min_votes >= 1, got "
                             f"{vote_window}, {nms_kernel}, {top_k}, {min_votes}")
        self.tables = TaxonomyTables(taxonomy)
        self.vote_window, self.nms_kernel = int(vote_window), int(nms_kernel)
        self.min_votes, self.top_k = int(min_votes), int(top_k)
        self.stuff_area_threshold = int(stuff_area_threshold)

    def extra_repr(self) -> str:
        return (f"vote_window={self.vote_window}, nms_kernel={self.nms_kernel}, min_votes={self.min_votes}, "
                f"top_k={self.top_k}, stuff_area_threshold={self.stuff_area_threshold}")

    def forward(self, semantic_logits: torch.Tensor, boxes: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, scores: torch.Tensor | None = None,
                valid: torch.Tensor | None = None,
                centers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if centers is None:
            raise ValueError("center_vote needs the centers offsets")
        b, _, h, w = semantic_logits.shape
        hw = h * w
        dev = semantic_logits.device
        argmax = semantic_logits.argmax(1)
        thing = self.tables.is_thing[argmax]
        centers = centers.to(torch.float32)
        vx = (torch.arange(w, dtype=torch.float32, device=dev) + 0.5) + centers[:, 0]
        vy = (torch.arange(h, dtype=torch.float32, device=dev) + 0.5).view(h, 1) + centers[:, 1]
        cx, cy = torch.floor(vx), torch.floor(vy)
        lands = thing & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        cell = torch.where(lands, cy.clamp(0, h - 1).long() * w + cx.clamp(0, w - 1).long(), 0)
        counts = torch.zeros((b, hw), dtype=torch.float32, device=dev)
        counts.scatter_add_(1, cell.reshape(b, -1), lands.reshape(b, -1).to(torch.float32))
        window = torch.ones((1, 1, self.vote_window, self.vote_window), dtype=torch.float32, device=dev)
        # Whole numbers below 2 ** 24 add exactly in float32 in any order (float32: ONNX Runtime has no
        # float64 Conv); the key needs float64.
        votes = F.conv2d(counts.view(b, 1, h, w), window, padding=self.vote_window // 2).to(torch.float64)
        flat = torch.arange(hw, dtype=torch.float64, device=dev).view(1, 1, h, w)
        key = votes * hw + (hw - 1 - flat)
        pooled = F.max_pool2d(key, self.nms_kernel, stride=1, padding=self.nms_kernel // 2)
        peak = (key == pooled) & (votes >= self.min_votes)
        ranked = torch.where(peak, key, -1.0).view(b, hw)
        k = min(self.top_k, hw)
        if not torch.compiler.is_compiling():  # eager: only as many slots as centres (same result, less work)
            k = max(1, min(k, int(peak.view(b, -1).sum(1).max())))
        top_key, top_index = ranked.topk(k, dim=1)  # descending keys: rank order
        is_centre = top_key >= 0
        centre_x = (top_index % w).to(torch.float32) + 0.5
        centre_y = torch.div(top_index, w, rounding_mode="floor").to(torch.float32) + 0.5
        dx = vx.view(b, 1, hw) - centre_x.view(b, k, 1)
        dy = vy.view(b, 1, hw) - centre_y.view(b, k, 1)
        dist = torch.where(is_centre.view(b, k, 1), dx * dx + dy * dy, float("inf"))
        nearest = dist.argmin(1)  # (B, HW), first minimum: the lower rank
        grouped = thing.view(b, hw) & is_centre.any(1, keepdim=True)
        # Majority class per instance: counts of (instance, thing slot).
        slots = self.tables.thing_train_ids.numel()
        slot = self.tables.thing_slot[argmax].view(b, hw).clamp(min=0)
        votes_by_class = torch.zeros((b, k * slots), dtype=torch.int64, device=dev)
        votes_by_class.scatter_add_(1, nearest * slots + slot, grouped.long())
        instance_class = self.tables.thing_train_ids[votes_by_class.view(b, k, slots).argmax(2)]  # (B, K)
        train = torch.where(grouped, torch.gather(instance_class, 1, nearest), argmax.view(b, hw)).view(b, h, w)
        stuff = stuff_area_filter(~thing, argmax, self.tables.num_classes, self.stuff_area_threshold)
        return assemble_ids(train, (nearest + 1).view(b, h, w), grouped.view(b, h, w), stuff, self.tables)
