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
(~230 MB), and even the (K, H, W) box masks are 52 M elements. The head never builds them (its only
(T, H, W) tensor is an int64 key table that just the pairs touch). It lists the (detection, pixel) pairs of
the valid boxes (two-level expansion, no division) and first drops every pair whose class logit does not
beat the pixel's best stuff logit: such a detection can never win Y's argmax there, and its same-class
rivals share that logit, so no policy winner changes. On the remaining pairs two scatters do the rest: the
policy winner per (class, pixel) (int64 key ``rank << 32 | index``, or the float32 distance bits for
``closest_center``), then per pixel the class winner with the highest logit, ties to the lower index (key
``orderable(X_c) << 32 | K-1-index``). Dense work is one pass over the stuff channels and one over the thing
channels (for unknown); the padded slots of K cost nothing, and ``closest_center`` costs what the others
cost. The pair count is data dependent (it exports as an unbacked size). ``bench/bench_head.py`` measures
the head against the network.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .numpy_ops import eager_cpu, equal, greater, less, not_equal
from .panoptic import OFFSET, Segment, segments_from_ids
from .taxonomy import VOID_TRAIN_ID, Taxonomy

POLICIES = ("highest_confidence", "smallest_first", "closest_center")

# Reference image area for the stuff area threshold: detectron2's Panoptic FPN (and panopticapi's
# combine_semantic_and_instance_predictions.py, stuff_area_limit = 64 * 64) apply 4096 px to the panoptic
# output at the *original* COCO image size ("height"/"width" of the input dict; detectron2 resizes the
# semantic logits back from the 800-short-side network input before combining), and COCO images are at most
# 640 px on the long side, typically 640 x 480.
COCO_REFERENCE_AREA = 640 * 480
MAX_DETECTIONS = OFFSET - 1  # instance numbers are 1..999 in the panoptic id convention
INT64_MAX, INT64_MIN = 2 ** 63 - 1, -(2 ** 63)


def _orderable(x: torch.Tensor) -> torch.Tensor:
    """int32 that orders like the float32 ``x`` (no NaN): the sign-magnitude bits of a negative float flipped.

    ``+ 0.0`` first turns -0.0 into +0.0, which compare equal as floats but not as bits.
    """
    bits = (x.to(torch.float32) + 0.0).view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


class _BoxPixels(NamedTuple):
    """(detection, pixel) pairs of every valid box, as segments (one row of one box) of consecutive pixels."""

    det: torch.Tensor  # (S,) flat detection index b * K + i of each segment
    row: torch.Tensor  # (S,) its row
    pixel_base: torch.Tensor  # (S,) pair p of segment s is pixel pixel_base[s] + p of its image (row * W + col)
    seg_of_pair: torch.Tensor  # (P,) segment of each pair
    pair: torch.Tensor  # (P,) 0 .. P-1

    def per_pair(self, per_segment: torch.Tensor) -> torch.Tensor:
        return per_segment.index_select(0, self.seg_of_pair)  # index_select: ~5x faster than x[index]

    def select(self, index: torch.Tensor) -> "_BoxPixels":
        """The pairs at ``index`` (pair numbers keep their meaning: pixel = pixel_base + pair)."""
        return self._replace(seg_of_pair=self.seg_of_pair.index_select(0, index),
                             pair=self.pair.index_select(0, index))


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
        check_values: check the inputs' values on every call (no NaN, valid detections of thing classes);
            shapes are always checked. A caller that checked the network outputs itself (the Predictor)
            turns it off and saves a pass over the full-resolution logits.
    """

    def __init__(self, thing_train_ids: Sequence[int], stuff_train_ids: Sequence[int],
                 category_ids: Sequence[int], policy: str = "closest_center", unknown: bool = True,
                 stuff_area_threshold: int = 4096, check_values: bool = True):
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
        self.check_values = bool(check_values)
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
        logits = semantic_logits.to(torch.float32).contiguous()
        # Padding may hold any box, label or score (even NaN, which would upset the sorts): neutralise it.
        boxes = torch.where(valid[..., None], boxes.to(torch.float32), 0.0)
        labels = torch.where(valid, labels.long(), self.thing_train_ids[0])
        best_stuff, stuff_index = self._first_max(self._channels(logits, self.stuff_train_ids, self._stuff_span))
        pairs = self._box_pixels(boxes, valid, logits.shape[-2:])
        # Y's argmax can only go to a detection whose class logit beats every stuff logit (stuff comes first
        # in Y and wins ties); same-class boxes share that logit, so dropping the other pairs changes no
        # policy winner either.
        pixel, logit_offset = self._pair_offsets(logits, labels, pairs)
        logit = logits.reshape(-1).index_select(0, pixel + logit_offset)
        keep = torch.nonzero(greater(logit, best_stuff.reshape(-1).index_select(0, pixel))).squeeze(1)
        pairs = pairs.select(keep)
        pixel, logit = pixel.index_select(0, keep), logit.index_select(0, keep)
        if self.policy == "closest_center":
            key = self._distance_keys(boxes, centers.to(torch.float32), pairs)
        else:
            if self.policy == "highest_confidence":
                rank_key = torch.where(valid, -scores.to(torch.float32), 0.0)
            else:
                rank_key = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
            key = self._rank_keys(rank_key, pairs)
        det = self._winning_detection(labels, pairs, pixel, logit, key, logits.shape[-2:])
        stuff = self._train_ids(stuff_index, self.stuff_train_ids, self._stuff_span)
        return self._fuse(logits, labels, det, best_stuff, stuff)

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
        if not self.check_values or torch.compiler.is_compiling():  # value checks need data; export traces shapes
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

    @staticmethod
    def _box_pixels(boxes: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> "_BoxPixels":
        """Every (valid detection, pixel whose centre its box holds) pair, without division, in two levels:
        a *segment* is one row of one box, and pair p of segment s lies at pixel ``pixel_base[s] + p``."""
        b, k = valid.shape
        h, w = size
        dev = boxes.device
        spans = []
        for lo, hi, n in ((boxes[..., 1], boxes[..., 3], h), (boxes[..., 0], boxes[..., 2], w)):
            centres = torch.arange(n, dtype=torch.float32, device=dev) + 0.5
            first = torch.searchsorted(centres, lo.contiguous())  # first centre >= lo (float32 compare)
            stop = torch.searchsorted(centres, hi.contiguous())  # first centre >= hi
            spans.append((first.reshape(-1), (stop - first).clamp(min=0).reshape(-1)))
        (row0, heights), (col0, widths) = spans
        heights = torch.where(valid.reshape(-1) & (widths > 0), heights, 0)
        # Level 1: one segment per (box, row).
        num_segments = int(heights.sum().item())
        seg_det = torch.repeat_interleave(torch.arange(b * k, device=dev), heights, output_size=num_segments)
        seg_first = (torch.cumsum(heights, 0) - heights).index_select(0, seg_det)
        seg_row = row0.index_select(0, seg_det) + torch.arange(num_segments, device=dev) - seg_first
        # Level 2: pair p of segment s is column col0 + p - (first pair of s).
        seg_width = widths.index_select(0, seg_det)
        num_pairs = int(seg_width.sum().item())
        seg_of_pair = torch.repeat_interleave(torch.arange(num_segments, device=dev), seg_width,
                                              output_size=num_pairs)
        pixel_base = seg_row * w + col0.index_select(0, seg_det) - (torch.cumsum(seg_width, 0) - seg_width)
        return _BoxPixels(seg_det, seg_row, pixel_base, seg_of_pair, torch.arange(num_pairs, device=dev))

    @staticmethod
    def _pair_offsets(logits: torch.Tensor, labels: torch.Tensor,
                      pairs: "_BoxPixels") -> tuple[torch.Tensor, torch.Tensor]:
        """(P,) flat pixel index ``b * H * W + row * W + col`` of each pair, and what to add to it to index
        the pair's class logit in the flat (B, C, H, W) logits."""
        _, c, h, w = logits.shape
        k = labels.shape[1]
        hw = h * w
        image = torch.div(pairs.det, k, rounding_mode="floor")
        pixel = pairs.per_pair(image * hw + pairs.pixel_base) + pairs.pair
        seg_label = labels.reshape(-1).index_select(0, pairs.det)
        return pixel, pairs.per_pair(image * (hw * (c - 1)) + seg_label * hw)

    @staticmethod
    def _rank_keys(rank_key: torch.Tensor, pairs: "_BoxPixels") -> torch.Tensor:
        """(P,) int64 policy key of each pair, ``rank << 32 | index``, for a per-box key (lower wins, ties to
        the lower index)."""
        b, k = rank_key.shape
        order = torch.sort(rank_key, dim=1, stable=True).indices  # stable: ties to the lower index
        arange = torch.arange(k, device=rank_key.device).expand(b, k)
        rank = torch.empty_like(order).scatter_(1, order, arange)
        det_key = (rank << 32) | arange
        return pairs.per_pair(det_key.reshape(-1).index_select(0, pairs.det))

    @staticmethod
    def _distance_keys(boxes: torch.Tensor, centers: torch.Tensor, pairs: "_BoxPixels") -> torch.Tensor:
        """(P,) int64 policy key of each pair, ``distance bits << 32 | index``: the bits of a non-negative
        float32 order like its value, so the key orders by distance, then by the lower index."""
        k = boxes.shape[1]
        h, w = centers.shape[-2:]
        image = torch.div(pairs.det, k, rounding_mode="floor")
        box_cx = ((boxes[..., 0] + boxes[..., 2]) / 2).reshape(-1).index_select(0, pairs.det)
        box_cy = ((boxes[..., 1] + boxes[..., 3]) / 2).reshape(-1).index_select(0, pairs.det)
        col_shift = pairs.pixel_base - pairs.row * w  # + p = the pair's column
        flat_centers = centers.contiguous().reshape(-1)
        offset_index = pairs.per_pair(image * (2 * h * w) + pairs.pixel_base) + pairs.pair
        cols = pairs.per_pair(col_shift) + pairs.pair
        dx = (cols.to(torch.float32) + 0.5 + flat_centers.index_select(0, offset_index)) - pairs.per_pair(box_cx)
        dy = ((pairs.per_pair(pairs.row.to(torch.float32) + 0.5) + flat_centers.index_select(0, offset_index + h * w))
              - pairs.per_pair(box_cy))
        dist = dx * dx + dy * dy
        return (dist.view(torch.int32).to(torch.int64) << 32) | pairs.per_pair(pairs.det - image * k)

    def _winning_detection(self, labels: torch.Tensor, pairs: "_BoxPixels", pixel: torch.Tensor,
                           logit: torch.Tensor, key: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, H, W) int32 index of the detection that wins Y's argmax at each pixel, K where none does.

        Two scatters over the pairs: the policy winner per (class, pixel) (lowest key), then among the class
        winners the highest logit, ties to the lower index, through the key ``orderable(X_c) << 32 | K-1-i``.
        """
        b, k = labels.shape
        h, w = size
        num_things = len(self.thing_train_ids)
        hw = h * w
        image = torch.div(pairs.det, k, rounding_mode="floor")
        seg_slot = self.thing_slot.index_select(0, labels.reshape(-1).index_select(0, pairs.det))
        class_pixel = pixel + pairs.per_pair(image * (hw * (num_things - 1)) + seg_slot * hw)
        # Only the entries the pairs touch are ever read: initialise just those (the table is T x the image).
        best_key = torch.empty((b * num_things * hw,), dtype=torch.int64, device=labels.device)
        best_key.index_fill_(0, class_pixel, INT64_MAX)
        best_key.scatter_reduce_(0, class_pixel, key, "amin")
        is_winner = equal(best_key.index_select(0, class_pixel), key)  # keys are unique per (pixel, detection)
        reverse_index = pairs.per_pair((k - 1) - (pairs.det - image * k))
        order_key = torch.where(is_winner, (_orderable(logit).to(torch.int64) << 32) | reverse_index, INT64_MIN)
        best = torch.full((b * hw,), INT64_MIN, dtype=torch.int64, device=labels.device)
        best.scatter_reduce_(0, pixel, order_key, "amax")
        det = torch.where(not_equal(best, INT64_MIN), (k - 1) - (best & 0xFFFFFFFF), k)
        return det.to(torch.int32).reshape(b, h, w)

    @staticmethod
    def _channels(x: torch.Tensor, train_ids: torch.Tensor, span: tuple[int, int] | None) -> torch.Tensor:
        """x[:, train_ids]; a free view when they are the contiguous range ``span`` = (first, count)."""
        return x.narrow(1, *span) if span is not None else x.index_select(1, train_ids)

    @staticmethod
    def _first_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Max over dim 1 and the first channel reaching it (numpy argmax order), the latter as uint8 / int16.

        ``torch.argmax(dim=1)`` on NCHW is ~15x slower on CPU than this amax + compare (it cannot vectorise).
        ``x >= best`` is ``x == best`` (best is the maximum; NaN fails both) and ~1.5x cheaper on CPU; in
        eager CPU inference the compare and the rest run in numpy, in place (~2.5x cheaper than in torch:
        :mod:`panoptic_ros.numpy_ops`).
        """
        n = x.shape[1]
        best = x.amax(1, keepdim=True)
        if n <= 255 and eager_cpu(x):
            reached = np.greater_equal(x.numpy(), best.numpy()).view(np.uint8)
            np.multiply(reached, np.arange(n - 1, -1, -1, dtype=np.uint8).reshape(1, n, 1, 1), out=reached)
            first = reached.max(1)
            np.subtract(np.uint8(n - 1), first, out=first)
            return best.squeeze(1), torch.from_numpy(first)
        dtype = torch.int16 if n > 255 else torch.uint8
        reverse = torch.arange(n - 1, -1, -1, dtype=dtype, device=x.device).view(1, n, 1, 1)
        first = (n - 1) - ((x >= best).to(dtype) * reverse).amax(1)
        return best.squeeze(1), first

    @staticmethod
    def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """table[index] through index_select (~5x faster on CPU than advanced indexing)."""
        return table.index_select(0, index.reshape(-1).int()).reshape(index.shape)

    def _train_ids(self, first: torch.Tensor, train_ids: torch.Tensor, span: tuple[int, int] | None) -> torch.Tensor:
        """Train ids (int32) of the channel positions ``first`` among ``train_ids``."""
        return first.to(torch.int32) + span[0] if span is not None else self._lookup(train_ids.int(), first)

    def _fuse(self, logits: torch.Tensor, labels: torch.Tensor, det: torch.Tensor, best_stuff: torch.Tensor,
              stuff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and semantic from the winning detection per pixel (K = none: the best stuff channel ``stuff``),
        then unknown and small stuff."""
        b, _, h, w = logits.shape
        k = labels.shape[1]
        is_det = less(det, k)
        # Each image's labels and a dummy for index K (no detection; only read where not is_det).
        label_table = torch.cat([labels, labels.new_zeros(b, 1)], 1).to(torch.int32).reshape(-1)
        image_base = (torch.arange(b, dtype=torch.int32, device=det.device) * (k + 1)).view(b, 1, 1)
        det_train = self._lookup(label_table, det + image_base)
        train = torch.where(is_det, det_train, stuff)
        void = torch.zeros_like(is_det)
        if self.unknown:
            # The semantic argmax over all C channels is a thing iff the best thing logit beats the best stuff
            # logit or ties it on a lower train id; where a detection won, it is the first best thing.
            raw_thing_logits = self._channels(logits, self.thing_train_ids, self._thing_span)
            best_raw_thing, first_thing = self._first_max(raw_thing_logits)
            first_thing = self._train_ids(first_thing, self.thing_train_ids, self._thing_span)
            sem_is_thing = greater(best_raw_thing, best_stuff) | (equal(best_raw_thing, best_stuff)
                                                                   & less(first_thing, stuff))
            void = sem_is_thing & ~(is_det & equal(det_train, first_thing))
        if self.stuff_area_threshold > 0:
            is_stuff = ~(is_det | void)
            num_rows = self.num_classes + 1  # row C of each image collects its non-stuff pixels
            counted = torch.where(is_stuff, train, self.num_classes)
            if b > 1:
                counted = counted + (torch.arange(b, dtype=torch.int32, device=det.device) * num_rows).view(b, 1, 1)
            flat = counted.reshape(-1).long()
            area = torch.zeros(b * num_rows, dtype=torch.int32, device=logits.device)
            area.scatter_add_(0, flat, torch.ones(1, dtype=torch.int32, device=det.device).expand(flat.shape))
            void = void | (is_stuff & less(self._lookup(area, counted), self.stuff_area_threshold))
        ids = self._lookup(self.category_ids.to(torch.int32) * OFFSET, train) + (det + 1) * is_det
        ids = ids.masked_fill(void, 0)
        semantic = train.to(torch.uint8).masked_fill(void, VOID_TRAIN_ID)
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
    segments = _segments_by_counting(ids, taxonomy)
    if segments is None:
        segments = segments_from_ids(ids, taxonomy)
    for seg in segments:
        if seg.is_thing:
            instance = seg.id % OFFSET
            if not 1 <= instance <= len(scores):
                raise ValueError(f"thing segment {seg.id} has no detection among the {len(scores)} scores")
            seg.score = float(scores[instance - 1])
    return segments


def _segments_by_counting(ids: np.ndarray, taxonomy: Taxonomy) -> list[Segment] | None:
    """``segments_from_ids`` from the horizontal runs of equal ids (a head output has a few thousand at
    192 x 384, against 73,728 pixels), ~3x faster than bincounts over the pixels and ~20x faster than
    np.unique + ufunc.at over them; None when an id is negative or of a category outside the taxonomy (the
    general function then says which)."""
    h, w = ids.shape
    flat = np.ascontiguousarray(ids).reshape(-1)
    if flat.size == 0 or flat.min() < 0 or flat.max() >= len(taxonomy.id_to_train) * OFFSET:
        return None
    change = np.empty(flat.size, dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::w] = True  # every row starts a run
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=flat.size)
    present, first, label = np.unique(flat[starts], return_index=True, return_inverse=True)
    train_of_present = taxonomy.id_to_train[present // OFFSET]
    if np.any((train_of_present >= taxonomy.num_classes) & (present != 0)):
        return None  # an id of an unknown category (void, 0, is the only id without one)
    n = len(present)
    row = starts // w
    col = starts - row * w
    area = np.bincount(label, weights=lengths, minlength=n)
    # Runs are in row-major order: a segment's first run has its top row, its last run its bottom row.
    last = len(starts) - 1 - np.unique(label[::-1], return_index=True)[1]
    x0, x1 = np.full(n, w), np.full(n, -1)
    np.minimum.at(x0, label, col)
    np.maximum.at(x1, label, col + lengths - 1)
    y0, y1 = row[first], row[last]
    out = []
    for j, (seg_id, train_id) in enumerate(zip(present.tolist(), train_of_present.tolist())):
        if seg_id == 0:
            continue
        category_id = int(taxonomy.ids[train_id])
        out.append(Segment(category_id * OFFSET + seg_id % OFFSET, category_id, bool(taxonomy.is_thing[train_id]),
                           int(area[j]), (int(x0[j]), int(y0[j]), int(x1[j] - x0[j] + 1), int(y1[j] - y0[j] + 1))))
    return sorted(out, key=lambda seg: seg.id)


def coco_segments_info(segments: Sequence[Segment]) -> list[dict]:
    """COCO-panoptic ``segments_info`` (id, category_id, area, bbox, iscrowd) of a segment table."""
    return [seg.to_coco() for seg in segments]
