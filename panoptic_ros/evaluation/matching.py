"""PQ sums of a batch of frames, following panopticapi's ``pq_compute_single_core`` rule by rule.

Pixels enter only as runs of equal (gt id, pred id) pairs (:class:`IdRuns`); a batch of frames is one set
of arrays (every segment gets a global index, every (gt, pred) pair of a frame a bin of one ``bincount``),
so numpy's per-call cost is paid once per batch, not once per frame. The rules:

- a (gt, pred) pair of one category matches when IoU > 0.5 strictly, where the union leaves out the
  prediction's pixels on ground-truth void (id 0); crowd ground truth never matches;
- unmatched non-crowd ground truth is a false negative; an unmatched prediction is a false positive unless
  more than half of it lies on void plus the crowd region of its own category (the last crowd segment of
  that category in the segment list);
- ground-truth areas come from the segment table (JSON ``area``) when given, prediction areas from pixels;
  ground-truth ids missing from the table are labelled pixels of no segment (not void).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

VOID_ID = 0
MISSING_ROW = np.iinfo(np.int64).max  # local row of an id that is not in its frame's segment table


class IdRuns(NamedTuple):
    """Runs of equal (gt id, pred id) pixels; ``length`` counts the pixels of each (a run may stand for the
    same span on several rows); ``frame`` numbers the frames of a batch. Order does not matter."""

    gt: np.ndarray
    pred: np.ndarray
    length: np.ndarray
    frame: np.ndarray | None = None  # None: one frame


def id_runs(gt_ids: np.ndarray, pred_ids: np.ndarray) -> IdRuns:
    """Runs of two (H, W) integer id maps of one size (one pass over the pixels)."""
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape or gt_ids.ndim != 2:
        raise ValueError(f"gt and pred id maps must be (H, W) of one size, got {gt_ids.shape} and {pred_ids.shape}")
    for role, ids in (("gt", gt_ids), ("pred", pred_ids)):
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{role} id map must hold integers, got dtype {ids.dtype}")
    gt, pred = gt_ids.reshape(-1), pred_ids.reshape(-1)
    if gt.size == 0:
        return IdRuns(gt.astype(np.int64), pred.astype(np.int64), np.zeros(0, np.int64))
    change = gt[1:] != gt[:-1]
    change |= pred[1:] != pred[:-1]
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    return IdRuns(gt[starts], pred[starts], np.diff(starts, append=gt.size))


def concat_runs(runs: Sequence[IdRuns]) -> IdRuns:
    """One batch from the runs of single frames (frame k = ``runs[k]``)."""
    sizes = [len(r.length) for r in runs]
    return IdRuns(np.concatenate([r.gt.astype(np.int64, copy=False) for r in runs]),
                  np.concatenate([r.pred.astype(np.int64, copy=False) for r in runs]),
                  np.concatenate([r.length for r in runs]), np.repeat(np.arange(len(runs)), sizes))


def _field(segment: Any, name: str, default: Any = None) -> Any:
    if isinstance(segment, Mapping):
        return segment.get(name, default)
    return getattr(segment, name, default)


@dataclass
class SegmentTables:
    """The segment lists of a batch of frames, concatenated in order."""

    ids: np.ndarray  # int64
    category_ids: np.ndarray  # int64
    crowd: np.ndarray  # bool
    areas: np.ndarray  # int64 area from the table, -1 where it gave none
    frame: np.ndarray  # frame of each segment
    start: np.ndarray  # (frames + 1,) first segment of each frame

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[Any]], role: str, names: Sequence[str]) -> "SegmentTables":
        """From lists of ``panoptic.Segment`` objects or COCO ``segments_info`` dicts (``id``,
        ``category_id``, optional ``iscrowd`` and ``area``), one list per frame."""
        lists = [list(segments) for segments in lists]
        flat = [seg for segments in lists for seg in segments]
        try:
            if all(type(seg) is dict for seg in flat):  # COCO segments_info: the fast, common case
                fields = [(seg["id"], seg["category_id"], seg.get("iscrowd", 0), seg.get("area", -1)) for seg in flat]
                ids, cats, crowd, areas = zip(*fields) if fields else ((), (), (), ())
                crowd = [c or 0 for c in crowd]
            else:
                ids = [_field(seg, "id") for seg in flat]
                cats = [_field(seg, "category_id") for seg in flat]
                crowd = [_field(seg, "iscrowd", 0) or 0 for seg in flat]
                areas = [_field(seg, "area", -1) for seg in flat]
            counts = [len(segments) for segments in lists]
            tables = cls(np.array(ids, dtype=np.int64).reshape(-1), np.array(cats, dtype=np.int64).reshape(-1),
                         np.array(crowd, dtype=np.int64).reshape(-1) == 1,
                         np.array([-1 if a is None else a for a in areas], dtype=np.int64).reshape(-1),
                         np.repeat(np.arange(len(lists)), counts), np.concatenate(([0], np.cumsum(counts))))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{role} segments need integer 'id' and 'category_id' ({err!r})") from None
        bad = np.flatnonzero(tables.ids <= VOID_ID)
        if len(bad):
            raise ValueError(f"{frame_prefix(names, tables.frame[bad[0]])}{role} segment ids must be > 0 (0 is void); "
                             f"got {tables.ids[bad].tolist()[:10]}")
        order = np.lexsort((tables.ids, tables.frame))
        repeated = np.flatnonzero((np.diff(tables.ids[order]) == 0) & (np.diff(tables.frame[order]) == 0))
        if len(repeated):
            k = order[repeated[0]]
            raise ValueError(f"{frame_prefix(names, tables.frame[k])}{role} segment ids must be unique; "
                             f"{tables.ids[k]} is repeated")
        return tables


def frame_prefix(names: Sequence[str], frame: int) -> str:
    """``"image 'name': "`` for error messages (nothing for one unnamed frame)."""
    return f"image {names[frame]!r}: " if len(names) > 1 or names[0] else ""


def segment_rows(values: np.ndarray, frames: np.ndarray, tables: SegmentTables) -> np.ndarray:
    """Position + 1 of each (frame, id) in its frame's segment list; 0 for void; ``MISSING_ROW`` if unlisted."""
    values = values.astype(np.int64, copy=False)
    if not len(tables.ids):
        return np.where(values == VOID_ID, 0, MISSING_ROW)
    span = int(max(values.max(initial=0), tables.ids.max())) + 1  # keys of different frames never collide
    n_frames = len(tables.start) - 1
    if n_frames > 1 and span > (1 << 62) // n_frames:
        raise ValueError("segment ids too large to batch frames; evaluate them one at a time")
    table_keys = tables.frame * span + tables.ids
    order = np.argsort(table_keys)
    sorted_keys = table_keys[order]
    keys = frames * span + values
    pos = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
    rows = np.where(sorted_keys[pos] == keys, order[pos] - tables.start[frames] + 1, MISSING_ROW)
    rows[values == VOID_ID] = 0
    return rows


def batch_sums(runs: IdRuns, gt: SegmentTables, pred: SegmentTables, gt_class: np.ndarray,
               pred_class: np.ndarray, num_classes: int, names: Sequence[str]):
    """Per frame and class (arrays ``(frames, num_classes)``): IoU sum, TP, FP, FN."""
    n_frames, C = len(gt.start) - 1, num_classes
    frames = np.zeros(len(runs.length), np.intp) if runs.frame is None else runs.frame
    n_gt, n_pred = np.diff(gt.start), np.diff(pred.start)
    cols = n_pred + 1  # pred void + segments
    block = np.concatenate(([0], np.cumsum((n_gt + 2) * cols)))  # gt void + segments + unlisted rows

    pred_row = segment_rows(runs.pred, frames, pred)
    if (pred_row == MISSING_ROW).any():
        bad = np.flatnonzero(pred_row == MISSING_ROW)
        raise ValueError(f"{frame_prefix(names, frames[bad[0]])}prediction ids "
                         f"{np.unique(runs.pred[bad][frames[bad] == frames[bad[0]]])[:10].tolist()} "
                         "are in the id map but not in its segments")
    gt_row = segment_rows(runs.gt, frames, gt)
    gt_row = np.where(gt_row == MISSING_ROW, n_gt[frames] + 1, gt_row)
    counts = np.bincount(block[frames] + gt_row * cols[frames] + pred_row, weights=runs.length,
                         minlength=block[-1]).astype(np.int64)

    on_pred = pred_row > 0
    pred_index = pred.start[frames[on_pred]] + pred_row[on_pred] - 1
    pred_area = np.bincount(pred_index, weights=runs.length[on_pred], minlength=len(pred.ids)).astype(np.int64)
    on_void = np.bincount(pred_index, weights=runs.length[on_pred] * (gt_row[on_pred] == 0),
                          minlength=len(pred.ids)).astype(np.int64)
    empty = np.flatnonzero(pred_area == 0)
    if len(empty):
        raise ValueError(f"{frame_prefix(names, pred.frame[empty[0]])}prediction segments "
                         f"{pred.ids[empty][pred.frame[empty] == pred.frame[empty[0]]].tolist()} "
                         "are listed but have no pixels")
    gt_area = gt.areas
    if (gt_area < 0).any():  # no area in the table: count pixels
        listed = (gt_row > 0) & (gt_row <= n_gt[frames])
        pixels = np.bincount(gt.start[frames[listed]] + gt_row[listed] - 1, weights=runs.length[listed],
                             minlength=len(gt.ids)).astype(np.int64)
        gt_area = np.where(gt_area >= 0, gt_area, pixels)

    # Every (gt segment, pred segment) pair that shares pixels.
    pair_bin = np.flatnonzero(counts)
    pair_frame = np.searchsorted(block, pair_bin, side="right") - 1
    row, col = np.divmod(pair_bin - block[pair_frame], cols[pair_frame])
    real = (row >= 1) & (row <= n_gt[pair_frame]) & (col >= 1)
    j = gt.start[pair_frame[real]] + row[real] - 1
    k = pred.start[pair_frame[real]] + col[real] - 1
    inter = counts[pair_bin[real]]
    candidate = (gt_class[j] == pred_class[k]) & ~gt.crowd[j]
    j, k, inter = j[candidate], k[candidate], inter[candidate]
    iou = inter / (pred_area[k] + gt_area[j] - inter - on_void[k])
    match = iou > 0.5
    j, k, iou = j[match], k[match], iou[match]
    key = gt.frame[j] * C + gt_class[j]
    tp = np.bincount(key, minlength=n_frames * C)
    iou_sum = np.bincount(key, weights=iou, minlength=n_frames * C)
    gt_matched = np.zeros(len(gt.ids), bool)
    gt_matched[j] = True
    pred_matched = np.zeros(len(pred.ids), bool)
    pred_matched[k] = True

    missed = ~gt_matched & ~gt.crowd
    fn = np.bincount(gt.frame[missed] * C + gt_class[missed], minlength=n_frames * C)

    ignored = on_void.copy()  # pixels of each prediction that may not make it a false positive
    crowd = np.flatnonzero(gt.crowd)
    if len(crowd):
        last_crowd = np.full(n_frames * C, -1, np.int64)  # the last crowd segment of each frame and class
        np.maximum.at(last_crowd, gt.frame[crowd] * C + gt_class[crowd], crowd)
        own = last_crowd[pred.frame * C + pred_class]
        has = np.flatnonzero(own >= 0)
        f = pred.frame[has]
        crowd_row = own[has] - gt.start[f] + 1
        pred_col = has - pred.start[f] + 1
        ignored[has] += counts[block[f] + crowd_row * cols[f] + pred_col]
    false_pos = ~pred_matched & ~(ignored / pred_area > 0.5)
    fp = np.bincount(pred.frame[false_pos] * C + pred_class[false_pos], minlength=n_frames * C)
    shape = (n_frames, C)
    return iou_sum.reshape(shape), tp.reshape(shape), fp.reshape(shape), fn.reshape(shape)
