"""The parameter-free panoptic head of Weber, Luiten, Leibe ("Single-Shot Panoptic Segmentation", IROS 2020).

It fuses the semantic logits ``X`` (C, H, W) with the padded detections (boxes, train-id labels, scores,
valid) of one image into a panoptic id map. Exact semantics (``test/reference_head.py`` implements the same
text with Python loops; the two must agree pixel for pixel):

1. **Box membership.** Pixel (row i, col j) has centre ``(j + 0.5, i + 0.5)`` and lies in box
   ``(x1, y1, x2, y2)`` iff ``x1 <= j + 0.5 < x2`` and ``y1 <= i + 0.5 < y2`` (float32 comparisons). Boxes
   touching or crossing the image border simply cover the pixels whose centres they contain.
2. **Same-class overlaps** are resolved per pixel before the argmax: among the valid detections of class c
   whose boxes contain the pixel exactly one, the *winner*, keeps the pixel; the policy picks it:

   - ``highest_confidence``: the higher score;
   - ``smallest_first``: the smaller box area ``(x2 - x1) * (y2 - y1)`` (float32, the box as given, not
     clipped to the image);
   - ``closest_center``: the smaller squared distance ``dx * dx + dy * dy`` (float32), with
     ``dx = ((j + 0.5) + ox) - (x1 + x2) / 2`` and ``dy = ((i + 0.5) + oy) - (y1 + y2) / 2``, where
     ``(ox, oy)`` is the pixel's predicted centre offset (``centers[:, 0]``, ``centers[:, 1]``), i.e. the
     box whose centre is nearest to the centre the pixel votes for.

   Every tie (equal scores, equal areas, equal distances, including infinite ones) goes to the **lower
   detection index**.
3. **Fusion.** ``Y = [X_s for the stuff train ids s in ascending order; for each detection i = 0..K-1:
   X_{c_i} inside box b_i where i is its class's winner, -inf elsewhere]`` (invalid detections: -inf
   everywhere). The pixel takes the first maximum of ``Y`` (numpy/torch argmax order): stuff channels win
   ties against detections, and among detections of different classes with equal logits the lower index
   wins. Detection i gives id ``category_id(c_i) * 1000 + (i + 1)`` (i is the padded index), stuff s gives
   ``category_id(s) * 1000``. So a false detection whose class logit is below the best stuff logit loses its
   pixels to stuff: the semantic branch corrects the detector.
4. **Unknown** (``unknown=True``): a pixel whose semantic argmax over all C channels of ``X`` (first maximum
   in train-id order) is a thing class c becomes void (id 0) unless step 3 gave it to a detection of class
   c; this includes pixels that step 3 gave to stuff and pixels it gave to a detection of *another* thing
   class. With ``unknown=False`` the result of step 3 stands as it is: such a pixel keeps its best stuff
   channel, or a detection of another class if that class's logit beats every stuff logit there.
5. **Small stuff.** A stuff category covering fewer than ``stuff_area_threshold`` pixels of the image after
   steps 3-4 becomes void (the pixels are not reassigned).
6. A detection that ends with no pixels produces no segment. ``semantic`` is the train id of each pixel's
   category, 255 for void, i.e. ``panoptic.semantic_from_ids(ids)``.

Speed (why not the naive tensor): ``Y`` at 512x1024 with 100 detections is a (11 + 100, H, W) float tensor
(~230 MB), and even the (K, H, W) box masks are 52 M elements, ~0.5 s on one core. The head never builds
them. Box membership is constant on the cells of the grid cut by all box edges (at most (2K + 1)^2 cells),
so for ``highest_confidence`` and ``smallest_first`` (a constant rank per detection) the winner of each
class is found per cell and gathered to the pixels (static shapes throughout). ``closest_center`` depends
on each pixel's offset: the cells give the winner wherever at most one box of a class holds the pixel, and
distances are computed only for the (detection, pixel) pairs of cells contested by >= 2 boxes of a class,
through a flat pair list whose length is data dependent (it exports as an unbacked size; its cost is the
contested area times the overlap depth, at worst K * H * W). The fusion then works on (B, T, H, W) winner
and logit maps of the T thing classes. ``bench/bench_head.py`` measures it against the network.
"""
from __future__ import annotations

import sys
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .panoptic import OFFSET, Segment, segments_from_ids
from .taxonomy import VOID_TRAIN_ID, Taxonomy

POLICIES = ("highest_confidence", "smallest_first", "closest_center")
# Tensor.index_reduce works (and exports) but warns that its API is beta; it is 20x faster than scatter_reduce.
warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")

# Reference image area for the stuff area threshold: detectron2's Panoptic FPN (and panopticapi's
# combine_semantic_and_instance_predictions.py, stuff_area_limit = 64 * 64) apply 4096 px to the panoptic
# output at the *original* COCO image size ("height"/"width" of the input dict; detectron2 resizes the
# semantic logits back from the 800-short-side network input before combining), and COCO images are at most
# 640 px on the long side, typically 640 x 480.
COCO_REFERENCE_AREA = 640 * 480
MAX_DETECTIONS = OFFSET - 1  # instance numbers are 1..999 in the panoptic id convention


def scale_stuff_area_threshold(height: int, width: int, threshold: float = 4096,
                               reference_area: int = COCO_REFERENCE_AREA) -> int:
    """The stuff area threshold for an ``height`` x ``width`` output, keeping its fraction of the image.

    ``threshold`` pixels at ``reference_area`` (default 640 x 480 = 307,200 px, the typical original COCO
    image, where detectron2's Panoptic FPN applies its 4096 px; see :data:`COCO_REFERENCE_AREA`) become
    ``round(threshold * height * width / reference_area)``: 6,991 px at 512 x 1024, 437 px on its 1/4
    logit grid (128 x 256), 27,962 px at Cityscapes' 1024 x 2048.
    """
    if height <= 0 or width <= 0 or reference_area <= 0 or threshold < 0:
        raise ValueError(f"need positive sizes and a non-negative threshold, got height={height}, "
                         f"width={width}, threshold={threshold}, reference_area={reference_area}")
    return int(round(threshold * height * width / reference_area))


class PanopticHead(nn.Module):
    """Parameter-free panoptic fusion of semantic logits and box detections (see the module docstring).

    Args:
        thing_train_ids: train ids of the thing classes (the classes detections may have).
        stuff_train_ids: train ids of the stuff classes; things and stuff together are exactly 0..C-1.
        category_ids: dataset category id of each train id (``Taxonomy.ids``), used in the panoptic ids.
        policy: how a pixel in several boxes of one class picks one: ``"highest_confidence"``,
            ``"smallest_first"`` or ``"closest_center"`` (needs the ``centers`` offsets in forward).
        unknown: void the pixels whose semantic argmax is a thing class that no detection of that class
            claims (the paper's unknown class); otherwise they keep the plain argmax over Y.
        stuff_area_threshold: stuff categories smaller than this many pixels (of the logit grid the head
            runs on) become void; see :func:`scale_stuff_area_threshold`. 0 disables it.
    """

    def __init__(self, thing_train_ids: Sequence[int], stuff_train_ids: Sequence[int],
                 category_ids: Sequence[int], policy: str = "closest_center", unknown: bool = True,
                 stuff_area_threshold: int = 4096):
        super().__init__()
        things = sorted(int(t) for t in thing_train_ids)
        stuff = sorted(int(s) for s in stuff_train_ids)
        cats = [int(c) for c in category_ids]
        num_classes = len(cats)
        if not things or not stuff or sorted(things + stuff) != list(range(num_classes)):
            raise ValueError(f"thing_train_ids {things} and stuff_train_ids {stuff} must both be non-empty and "
                             f"split the train ids 0..{num_classes - 1} of category_ids")
        if len(set(cats)) != num_classes or min(cats) < 1 or max(cats) * OFFSET + MAX_DETECTIONS >= 2 ** 31:
            raise ValueError(f"category_ids must be distinct, >= 1 and fit int32 panoptic ids, got {cats}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if int(stuff_area_threshold) != stuff_area_threshold or stuff_area_threshold < 0:
            raise ValueError(f"stuff_area_threshold must be a non-negative integer, got {stuff_area_threshold}")
        self.policy = policy
        self.unknown = bool(unknown)
        self.stuff_area_threshold = int(stuff_area_threshold)
        self.num_classes = num_classes
        # Contiguous train-id ranges (Cityscapes: stuff 0-10, things 11-18) are sliced instead of gathered.
        self._thing_span = (things[0], len(things)) if things == list(range(things[0], things[-1] + 1)) else None
        self._stuff_span = (stuff[0], len(stuff)) if stuff == list(range(stuff[0], stuff[-1] + 1)) else None
        slot = torch.full((num_classes,), len(things), dtype=torch.int64)  # train id -> thing slot (T = stuff)
        slot[torch.tensor(things)] = torch.arange(len(things))
        self.register_buffer("thing_train_ids", torch.tensor(things, dtype=torch.int64), persistent=False)
        self.register_buffer("stuff_train_ids", torch.tensor(stuff, dtype=torch.int64), persistent=False)
        self.register_buffer("category_ids", torch.tensor(cats, dtype=torch.int64), persistent=False)
        self.register_buffer("thing_slot", slot, persistent=False)

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy, **kwargs) -> "PanopticHead":
        """The head for ``taxonomy`` (its thing / stuff split and category ids); kwargs as the constructor."""
        return cls([int(t) for t in taxonomy.thing_train_ids], [int(s) for s in taxonomy.stuff_train_ids],
                   [int(c) for c in taxonomy.ids], **kwargs)

    def extra_repr(self) -> str:
        return (f"things={self.thing_train_ids.tolist()}, policy={self.policy!r}, unknown={self.unknown}, "
                f"stuff_area_threshold={self.stuff_area_threshold}")

    # -- forward --------------------------------------------------------------------------------------
    def forward(self, semantic_logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                scores: torch.Tensor, valid: torch.Tensor,
                centers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Panoptic ids (B, H, W) int32 and semantic train ids (B, H, W) uint8 (255 void).

        ``semantic_logits`` (B, C, H, W); ``boxes`` (B, K, 4) xyxy in the pixel coordinates of that grid;
        ``labels`` (B, K) thing train ids; ``scores`` (B, K); ``valid`` (B, K) bool (padding is False);
        ``centers`` (B, 2, H, W) offsets (dx, dy) from each pixel centre to its box centre, or None.
        """
        self._check(semantic_logits, boxes, labels, scores, valid, centers)
        # Padding may hold any box, label or score (even NaN, which would upset the sorts): neutralise it.
        boxes = torch.where(valid[..., None], boxes.to(torch.float32), 0.0)
        labels = torch.where(valid, labels.long(), self.thing_train_ids[0])
        slots = torch.where(valid, self.thing_slot[labels], len(self.thing_train_ids))
        if self.policy == "closest_center":
            winners = self._closest_center_winners(boxes, slots, centers.to(torch.float32),
                                                   semantic_logits.shape[-2:])
        else:
            if self.policy == "highest_confidence":
                key = torch.where(valid, -scores.to(torch.float32), 0.0)
            else:
                key = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
            winners = self._ranked_winners(boxes, slots, key, semantic_logits.shape[-2:])
        return self._fuse(semantic_logits, labels, winners)

    def _check(self, logits, boxes, labels, scores, valid, centers) -> None:
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"semantic_logits must be (B, {self.num_classes}, H, W), got {tuple(logits.shape)}")
        b, _, h, w = logits.shape
        if boxes.dim() != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
            raise ValueError(f"boxes must be (B={b}, K, 4), got {tuple(boxes.shape)}")
        k = boxes.shape[1]
        for name, t in (("labels", labels), ("scores", scores), ("valid", valid)):
            if tuple(t.shape) != (b, k):
                raise ValueError(f"{name} must be (B, K) = {(b, k)}, got {tuple(t.shape)}")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool tensor, got {valid.dtype}")
        if k > MAX_DETECTIONS:
            raise ValueError(f"at most {MAX_DETECTIONS} detections fit the panoptic id convention, got K={k}")
        if centers is None and self.policy == "closest_center":
            raise ValueError("policy 'closest_center' needs the centers offsets (B, 2, H, W)")
        if centers is not None and tuple(centers.shape) != (b, 2, h, w):
            raise ValueError(f"centers must be (B, 2, H, W) = {(b, 2, h, w)}, got {tuple(centers.shape)}")
        if torch.compiler.is_compiling():  # value checks need data; export traces shapes only
            return
        lab = labels[valid].long()
        is_thing = (lab >= 0) & (lab < self.num_classes)
        is_thing &= self.thing_slot[lab.clamp(0, self.num_classes - 1)] < len(self.thing_train_ids)
        if not bool(is_thing.all()):
            raise ValueError(f"valid detections must have thing train ids {self.thing_train_ids.tolist()}, "
                             f"got {sorted(set(lab.tolist()))}")
        for name, t in (("semantic_logits", logits), ("boxes", boxes[valid]), ("scores", scores[valid]),
                        ("centers", centers)):
            if t is not None and t.numel() and torch.isnan(t.amax()):  # amax propagates NaN, one cheap pass
                raise ValueError(f"{name} contains NaN")

    def _ranked_winners(self, boxes: torch.Tensor, slots: torch.Tensor, key: torch.Tensor,
                        size: tuple[int, int]) -> torch.Tensor:
        """(B, T, H, W) int32 index of the winning detection per thing class (K = none) for a per-box key
        (lower wins, ties to the lower index)."""
        in_y, row_cell, in_x, col_cell = self._cells(boxes, size)
        winners = self._cell_winners(in_y, in_x, slots, key)
        return self._at_pixels(winners, row_cell, col_cell, in_x.shape[-1])

    @staticmethod
    def _cells(boxes: torch.Tensor, size: tuple[int, int]):
        """Cut each axis into cells on which box membership is constant: (in_y (B, K, Gy), row_cell (B, H),
        in_x (B, K, Gx), col_cell (B, W)), which cells each box covers and the cell of each pixel line.

        Cutting at all 2K box edges gives 2K + 1 cells: cell c holds the pixel centres with exactly c edges
        <= centre, so no edge falls inside it, and ``lo <= centre < hi`` holds on it iff rank(lo) <= c <
        rank(hi), where rank(e) counts the edges <= e. An axis with no more pixel lines than that uses the
        lines themselves as cells.
        """
        out = []
        for lo, hi, n in ((boxes[..., 1], boxes[..., 3], size[0]), (boxes[..., 0], boxes[..., 2], size[1])):
            b, k = lo.shape
            centres = torch.arange(n, dtype=torch.float32, device=lo.device) + 0.5
            if n <= 2 * k + 1:
                inside = (lo[..., None] <= centres) & (centres < hi[..., None])
                out += [inside, torch.arange(n, device=lo.device).expand(b, n).contiguous()]
                continue
            edges = torch.sort(torch.cat([lo, hi], 1), dim=1).values
            cell = torch.arange(2 * k + 1, device=lo.device)
            lo_rank = torch.searchsorted(edges, lo.contiguous(), right=True)[..., None]
            hi_rank = torch.searchsorted(edges, hi.contiguous(), right=True)[..., None]
            line_cell = torch.searchsorted(edges, centres.expand(b, n).contiguous(), right=True)
            out += [(lo_rank <= cell) & (cell < hi_rank), line_cell]
        return out

    def _cell_winners(self, in_y: torch.Tensor, in_x: torch.Tensor, slots: torch.Tensor,
                      key: torch.Tensor) -> torch.Tensor:
        """(B, T, Gy * Gx) int32 winner per thing class and cell: the lowest key, ties to the lower index."""
        b, k = slots.shape
        cells = in_y.shape[-1] * in_x.shape[-1]
        num_things = len(self.thing_train_ids)
        order = torch.sort(key, dim=1, stable=True).indices  # rank 0 = best; stable: ties to the lower index
        arange = torch.arange(k, dtype=torch.int32, device=key.device).expand(b, k)
        rank = torch.empty_like(arange).scatter_(1, order, arange)[..., None]
        # A box's rank on the cells it covers and K elsewhere, as the max of per-axis values: no (K, G, G) mask.
        rank_y = torch.where(in_y & (slots < num_things)[..., None], rank, k)
        rank_x = torch.where(in_x, rank, k)
        cell_rank = torch.maximum(rank_y[..., :, None], rank_x[..., None, :]).reshape(b * k, cells)
        best = torch.full((b * (num_things + 1), cells), k, dtype=torch.int32, device=key.device)
        best = best.index_reduce(0, self._class_rows(slots), cell_rank, "amin")
        best = best.reshape(b, num_things + 1, cells)[:, :num_things]
        rank_to_index = torch.cat([arange.gather(1, order), torch.full((b, 1), k, dtype=torch.int32,
                                                                       device=key.device)], 1)
        return rank_to_index.gather(1, best.reshape(b, -1).long()).reshape(b, num_things, cells)

    def _class_rows(self, slots: torch.Tensor) -> torch.Tensor:
        """(B * K,) row of each detection in a (B * (T + 1), ...) per-image, per-class table (row T: invalid).

        Row-wise index_reduce / index_add / index_select are ~10x faster than element-wise scatter / gather.
        """
        b = slots.shape[0]
        num_rows = len(self.thing_train_ids) + 1
        return (slots + torch.arange(b, device=slots.device)[:, None] * num_rows).reshape(-1)

    @staticmethod
    def _at_pixels(per_cell: torch.Tensor, row_cell: torch.Tensor, col_cell: torch.Tensor,
                   x_cells: int) -> torch.Tensor:
        """(B, T, Gy * Gx) cell values -> (B, T, H, W) pixel values."""
        b, t = per_cell.shape[:2]
        pixel_cell = (row_cell[:, :, None] * x_cells + col_cell[:, None, :]).reshape(b, 1, -1)
        out = per_cell.gather(2, pixel_cell.expand(b, t, pixel_cell.shape[-1]))
        return out.reshape(b, t, row_cell.shape[1], col_cell.shape[1])

    def _closest_center_winners(self, boxes: torch.Tensor, slots: torch.Tensor, centers: torch.Tensor,
                                size: tuple[int, int]) -> torch.Tensor:
        """(B, T, H, W) int32 winners by distance of each pixel's voted centre to the box centres.

        Where at most one box of a class holds a pixel, that box (the lowest index) wins, found per cell.
        Distances are computed only on contested cells (>= 2 boxes of one class): each (box, contested cell)
        rectangle is expanded to (box, pixel) pairs without division, in two levels (rectangle -> row
        segments -> pixels); per-pair quantities are a per-segment value plus the running pair number.
        """
        b, k = slots.shape
        h, w = size
        num_things = len(self.thing_train_ids)
        dev = boxes.device
        in_y, row_cell, in_x, col_cell = self._cells(boxes, size)
        y_cells, x_cells = in_y.shape[-1], in_x.shape[-1]
        cells = y_cells * x_cells
        index_key = torch.arange(k, dtype=torch.float32, device=dev).expand(b, k)
        first_box = self._at_pixels(self._cell_winners(in_y, in_x, slots, index_key), row_cell, col_cell,
                                    x_cells)
        # Depth of each class on each cell; a (box, cell) is contested when its class has >= 2 boxes there.
        in_y = in_y & (slots < num_things)[..., None]
        covers = (in_y[..., :, None] & in_x[..., None, :]).reshape(b, k, cells)
        rows = self._class_rows(slots)
        depth = torch.zeros(b * (num_things + 1), cells, dtype=torch.int32, device=dev)
        depth = depth.index_add(0, rows, covers.reshape(b * k, cells).to(torch.int32))
        contested = covers & (depth.index_select(0, rows) >= 2).reshape(b, k, cells)
        image, det, cell = contested.nonzero(as_tuple=True)
        # Pixel rectangle of each contested (box, cell): cells are runs of rows / columns.
        y_ids = torch.arange(y_cells, device=dev).expand(b, y_cells).contiguous()
        x_ids = torch.arange(x_cells, device=dev).expand(b, x_cells).contiguous()
        gy, gx = torch.div(cell, x_cells, rounding_mode="floor"), cell % x_cells
        row0 = torch.searchsorted(row_cell, y_ids)[image, gy]
        col0 = torch.searchsorted(col_cell, x_ids)[image, gx]
        heights = torch.searchsorted(row_cell, y_ids, right=True)[image, gy] - row0
        widths = torch.searchsorted(col_cell, x_ids, right=True)[image, gx] - col0
        heights = torch.where(widths > 0, heights, 0)
        # Level 1: one row segment per (rectangle, row).
        num_segments = int(heights.sum().item())
        seg_rect = torch.repeat_interleave(torch.arange(len(heights), device=dev), heights,
                                           output_size=num_segments)
        rect_first = torch.cumsum(heights, 0) - heights
        seg_row = row0[seg_rect] + torch.arange(num_segments, device=dev) - rect_first[seg_rect]
        seg_width = widths[seg_rect]
        seg_image, seg_det = image[seg_rect], det[seg_rect]
        # Level 2: pair p of segment s sits in column col0 + p - first_pair(s) =: p + col_shift(s).
        num_pairs = int(seg_width.sum().item())
        seg_of_pair = torch.repeat_interleave(torch.arange(num_segments, device=dev), seg_width,
                                              output_size=num_pairs)
        col_shift = col0[seg_rect] - (torch.cumsum(seg_width, 0) - seg_width)
        pixel_base = seg_row * w + col_shift  # + p = the pair's pixel index within its image
        offset_base = seg_image * (2 * h * w) + pixel_base
        target_base = (seg_image * num_things + slots[seg_image, seg_det]) * (h * w) + pixel_base
        box_cx = ((boxes[..., 0] + boxes[..., 2]) / 2)[seg_image, seg_det]
        box_cy = ((boxes[..., 1] + boxes[..., 3]) / 2)[seg_image, seg_det]
        row_centre = seg_row.to(torch.float32) + 0.5

        def per_pair(per_segment: torch.Tensor) -> torch.Tensor:
            return per_segment.index_select(0, seg_of_pair)  # index_select: ~5x faster than x[index]

        pair = torch.arange(num_pairs, device=dev)
        flat_centers = centers.reshape(-1)
        offset_index = per_pair(offset_base) + pair
        cols = per_pair(col_shift) + pair
        dx = (cols.to(torch.float32) + 0.5 + flat_centers.index_select(0, offset_index)) - per_pair(box_cx)
        dy = (per_pair(row_centre) + flat_centers.index_select(0, offset_index + h * w)) - per_pair(box_cy)
        dist = dx * dx + dy * dy
        # One scatter for (distance, index): the bits of a non-negative float32 order like its value, so the
        # int64 (bits << 32 | index) orders by distance, then by the lower index. Uncontested pixels start
        # with a key above every distance (top word 0x7fffffff > +inf's bits) whose low word is their winner.
        key = (dist.view(torch.int32).to(torch.int64) << 32) | per_pair(seg_det)
        low_word = 0 if sys.byteorder == "little" else 1
        words = torch.empty(b * num_things * h * w, 2, dtype=torch.int32, device=dev)
        words[:, low_word] = first_box.reshape(-1)
        words[:, 1 - low_word] = 0x7FFFFFFF
        best = words.view(torch.int64).reshape(-1).scatter_reduce(0, per_pair(target_base) + pair, key, "amin")
        return best.view(torch.int32).reshape(b, num_things, h, w, 2)[..., low_word]

    @staticmethod
    def _channels(x: torch.Tensor, train_ids: torch.Tensor, span: tuple[int, int] | None) -> torch.Tensor:
        """x[:, train_ids]; a free view when they are the contiguous range ``span`` = (first, count)."""
        return x.narrow(1, *span) if span is not None else x.index_select(1, train_ids)

    @staticmethod
    def _first_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Max over dim 1 and the first channel reaching it (numpy argmax order).

        ``torch.argmax(dim=1)`` on NCHW is ~15x slower on CPU than this amax + compare (it cannot vectorise).
        """
        n = x.shape[1]
        best = x.amax(1, keepdim=True)
        dtype = torch.int16 if n > 255 else torch.uint8
        reverse = torch.arange(n - 1, -1, -1, dtype=dtype, device=x.device).view(1, n, 1, 1)
        first = (n - 1) - ((x == best).to(dtype) * reverse).amax(1).long()
        return best.squeeze(1), first

    def _fuse(self, logits: torch.Tensor, labels: torch.Tensor,
              winners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax over Y from the per-class winners, then unknown, small stuff, ids and semantic.

        On the (B, T, H, W) maps, masks are applied arithmetically: torch.where is ~4x slower on CPU.
        """
        b, _, h, w = logits.shape
        k = labels.shape[1]
        # X_c where class c has a winner (index < K), else -inf, as min(X_c, +inf or -inf): exact, never NaN.
        cap = (k - 0.5 - winners.to(logits.dtype)) * float("inf")
        raw_thing_logits = self._channels(logits, self.thing_train_ids, self._thing_span)
        thing_logits = torch.minimum(raw_thing_logits, cap)
        best_thing = thing_logits.amax(1)
        # Among classes tied at the best logit, the lower detection index wins (first maximum of Y); untied
        # classes are pushed to >= K. (A tie at -inf may pick a class without winner: is_det is False there.)
        tied = thing_logits == best_thing[:, None]
        det = (winners + k * (~tied).to(winners.dtype)).amin(1).clamp(max=k).long()
        stuff_logits = self._channels(logits, self.stuff_train_ids, self._stuff_span)
        best_stuff, stuff_index = self._first_max(stuff_logits)
        stuff = self.stuff_train_ids[stuff_index]
        is_det = best_thing > best_stuff
        # Index K (no detection) reads a dummy label; it is only used where is_det.
        padded_labels = torch.cat([labels, labels.new_zeros(b, 1)], 1)
        det_train = padded_labels.gather(1, det.reshape(b, -1)).reshape(b, h, w)
        train = torch.where(is_det, det_train, stuff)
        void = torch.zeros_like(is_det)
        if self.unknown:
            # The semantic argmax over all C channels is a thing iff the best thing logit beats the best stuff
            # logit or ties it on a lower train id; where a detection won, it is the first best thing.
            best_raw_thing, first_thing = self._first_max(raw_thing_logits)
            first_thing = self.thing_train_ids[first_thing]
            sem_is_thing = (best_raw_thing > best_stuff) | ((best_raw_thing == best_stuff)
                                                            & (first_thing < stuff))
            void = sem_is_thing & ~(is_det & (det_train == first_thing))
        if self.stuff_area_threshold > 0:
            is_stuff = ~is_det & ~void
            counted = torch.where(is_stuff, train, self.num_classes)  # index C collects the non-stuff pixels
            counted = counted + torch.arange(b, device=logits.device)[:, None, None] * (self.num_classes + 1)
            area = torch.zeros(b * (self.num_classes + 1), dtype=torch.int64, device=logits.device)
            area = area.scatter_add(0, counted.reshape(-1), torch.ones_like(counted.reshape(-1)))
            void = void | (is_stuff & (area[counted] < self.stuff_area_threshold))
        ids = self.category_ids[train] * OFFSET + torch.where(is_det, det + 1, 0)
        ids = torch.where(void, 0, ids).to(torch.int32)
        semantic = torch.where(void, VOID_TRAIN_ID, train).to(torch.uint8)
        return ids, semantic


# -- segment table ------------------------------------------------------------------------------------
def segments_from_output(ids, scores, taxonomy: Taxonomy) -> list[Segment]:
    """The segment table of one head output: id, category, is-thing, area, bbox and score per segment.

    ``ids`` (H, W) panoptic ids of one image (numpy or torch); ``scores`` (K,) the detection scores of that
    image in the head's padded order (thing segment with instance k has score ``scores[k - 1]``; stuff 1.0).
    Segments are sorted by id; void (0) has none; a detection without pixels has none.
    """
    ids = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    scores = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if ids.ndim != 2 or scores.ndim != 1:
        raise ValueError(f"need ids (H, W) and scores (K,), got {ids.shape} and {scores.shape}")
    segments = segments_from_ids(ids, taxonomy)
    for seg in segments:
        if seg.is_thing:
            instance = seg.id % OFFSET
            if not 1 <= instance <= len(scores):
                raise ValueError(f"thing segment {seg.id} has no detection among the {len(scores)} scores")
            seg.score = float(scores[instance - 1])
    return segments


def coco_segments_info(segments: Sequence[Segment]) -> list[dict]:
    """COCO-panoptic ``segments_info`` (id, category_id, area, bbox, iscrowd) of a segment table."""
    return [seg.to_coco() for seg in segments]
