"""Streaming panoptic quality (PQ, SQ, RQ) with exactly the semantics of panopticapi's ``pq_compute``.

:class:`PQAccumulator` sums IoU / TP / FP / FN per category over frames (the matching rules live in
:mod:`.matching`); averages skip categories with TP + FP + FN = 0, as panopticapi's ``pq_average``.

Written by hand rather than with panopticapi / hotcoco because neither streams in-memory frames (both read
PNG folders) and panopticapi loops over segment pairs in Python.

Deliberate difference: a *ground-truth* segment with a category that is not in ``categories`` is a
``ValueError`` here (panopticapi silently counts it in a category it never reports).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..taxonomy import Taxonomy
from .matching import IdRuns, SegmentTables, batch_sums, frame_prefix, id_runs

GROUPS = (("All", None), ("Things", True), ("Stuff", False))


@dataclass
class FrameStats:
    """PQ sums of one frame per category (arrays in the accumulator's category order)."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    name: str = ""

    @property
    def pq(self) -> float:
        """Mean PQ over the categories this frame has any TP / FP / FN in (NaN for none)."""
        counted = (self.tp + self.fp + self.fn) > 0
        if not counted.any():
            return float("nan")
        return float(np.mean(self.iou[counted] / (self.tp + 0.5 * self.fp + 0.5 * self.fn)[counted]))

    def summary(self) -> dict:
        return {"name": self.name, "pq": self.pq, "tp": int(self.tp.sum()), "fp": int(self.fp.sum()),
                "fn": int(self.fn.sum())}


class PQAccumulator:
    """Sums PQ statistics frame by frame; :meth:`result` may be read at any time; :meth:`merge` joins the
    accumulators of parallel workers.

    Args:
        categories: a :class:`Taxonomy` or a COCO-panoptic ``categories`` list (``id``, ``name``,
            ``isthing``); the averages run over exactly these categories.
        keep_frames: keep each frame's :meth:`FrameStats.summary` in :attr:`frames` (for reports).
    """

    def __init__(self, categories: Taxonomy | Sequence[Mapping[str, Any]], keep_frames: bool = True):
        if isinstance(categories, Taxonomy):
            cats = [(c.id, c.name, c.is_thing) for c in categories.categories]
        else:
            cats = [(int(c["id"]), str(c["name"]), int(c.get("isthing", 0)) == 1) for c in categories]
        if not cats:
            raise ValueError("categories is empty")
        ids = [c[0] for c in cats]
        names = [c[1] for c in cats]
        if len(set(ids)) != len(ids) or len(set(names)) != len(names):
            raise ValueError("category ids and names must be unique")
        if min(ids) < 0:
            raise ValueError(f"category ids must be >= 0, got {ids}")
        self.category_ids = np.array(ids, dtype=np.int64)
        self.names = names
        self.is_thing = np.array([c[2] for c in cats], dtype=bool)
        self._class_of = np.full(max(ids) + 1, -1, dtype=np.intp)  # category id -> class index
        self._class_of[ids] = np.arange(len(ids))
        n = len(cats)
        self.iou = np.zeros(n, dtype=np.float64)
        self.tp = np.zeros(n, dtype=np.int64)
        self.fp = np.zeros(n, dtype=np.int64)
        self.fn = np.zeros(n, dtype=np.int64)
        self.num_frames = 0
        self.keep_frames = keep_frames
        self.frames: list[dict] = []

    # -- per frame ------------------------------------------------------------------------------------
    def _classes(self, tables: SegmentTables, role: str, names: Sequence[str]) -> np.ndarray:
        cats = tables.category_ids
        known = (cats >= 0) & (cats < len(self._class_of))
        classes = np.where(known, self._class_of[np.where(known, cats, 0)], -1)
        bad = np.flatnonzero(classes < 0)
        if len(bad):
            raise ValueError(f"{frame_prefix(names, tables.frame[bad[0]])}{role} segment has category_id "
                             f"{cats[bad[0]]}, which is not in the categories {self.category_ids.tolist()}")
        return classes

    def evaluate_batch(self, runs: IdRuns, pred_segments: Sequence[Iterable[Any]],
                       gt_segments: Sequence[Iterable[Any]], names: Sequence[str]) -> list[FrameStats]:
        """Statistics of several frames at once, without adding them (thread-safe; see :meth:`add_stats`).

        ``runs`` holds all frames (``runs.frame`` numbers them in list order); the segment lists and
        names are per frame.
        """
        if not (len(pred_segments) == len(gt_segments) == len(names)):
            raise ValueError("one segment list per frame for prediction and ground truth, and one name")
        gt = SegmentTables.from_lists(gt_segments, "gt", names)
        pred = SegmentTables.from_lists(pred_segments, "pred", names)
        for role, run in (("gt", runs.gt), ("pred", runs.pred)):
            if np.issubdtype(run.dtype, np.signedinteger) and run.size and run.min() < 0:
                raise ValueError(f"{role} id map holds negative ids")
        iou, tp, fp, fn = batch_sums(runs, gt, pred, self._classes(gt, "gt", names),
                                     self._classes(pred, "pred", names), len(self.names), names)
        return [FrameStats(iou[f], tp[f], fp[f], fn[f], str(name)) for f, name in enumerate(names)]

    def evaluate_runs(self, runs: IdRuns, pred_segments: Iterable[Any], gt_segments: Iterable[Any],
                      name: str = "") -> FrameStats:
        """One frame's statistics from its :class:`IdRuns` (e.g. read straight from PNG bytes)."""
        return self.evaluate_batch(runs._replace(frame=None), [pred_segments], [gt_segments], [name])[0]

    def evaluate_frame(self, pred_ids: np.ndarray, pred_segments: Iterable[Any], gt_ids: np.ndarray,
                       gt_segments: Iterable[Any], name: str = "") -> FrameStats:
        """One frame's statistics without adding them (thread-safe; pair with :meth:`add_stats`)."""
        return self.evaluate_runs(id_runs(gt_ids, pred_ids), pred_segments, gt_segments, name)

    def add_stats(self, stats: FrameStats) -> FrameStats:
        self.iou += stats.iou
        self.tp += stats.tp
        self.fp += stats.fp
        self.fn += stats.fn
        self.num_frames += 1
        if self.keep_frames:
            self.frames.append(stats.summary())
        return stats

    def add(self, pred_ids: np.ndarray, pred_segments: Iterable[Any], gt_ids: np.ndarray,
            gt_segments: Iterable[Any], name: str = "") -> FrameStats:
        """Add one frame. Id maps are (H, W) integer arrays with any non-negative segment ids (0 = void);
        segments are ``panoptic.Segment`` objects or COCO ``segments_info`` dicts. Returns the frame's
        statistics (``.pq`` ranks frames)."""
        return self.add_stats(self.evaluate_frame(pred_ids, pred_segments, gt_ids, gt_segments, name))

    def merge(self, other: "PQAccumulator") -> "PQAccumulator":
        """Add another accumulator's sums (same categories) into this one."""
        if (not np.array_equal(self.category_ids, other.category_ids)
                or not np.array_equal(self.is_thing, other.is_thing)):
            raise ValueError("cannot merge accumulators over different categories")
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.num_frames += other.num_frames
        self.frames.extend(other.frames)
        return self

    # -- results --------------------------------------------------------------------------------------
    def result(self) -> dict:
        """``{'All'|'Things'|'Stuff': {pq, sq, rq, n, tp, fp, fn}, 'per_class': {name: {...}}, 'num_frames'}``.

        Fractions (0..1) as panopticapi; a group without counted categories has ``n = 0`` and zeros.
        """
        tp, fp, fn, iou = self.tp, self.fp, self.fn, self.iou
        counted = (tp + fp + fn) > 0
        denom = np.where(counted, tp + 0.5 * fp + 0.5 * fn, 1.0)
        pq = np.where(counted, iou / denom, 0.0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
        rq = np.where(counted, tp / denom, 0.0)
        out: dict[str, Any] = {}
        for group, thing in GROUPS:
            member = counted & (True if thing is None else self.is_thing == thing)
            n = int(member.sum())
            in_group = np.ones_like(member) if thing is None else self.is_thing == thing
            out[group] = {"pq": float(pq[member].sum() / n) if n else 0.0,
                          "sq": float(sq[member].sum() / n) if n else 0.0,
                          "rq": float(rq[member].sum() / n) if n else 0.0, "n": n,
                          "tp": int(tp[in_group].sum()), "fp": int(fp[in_group].sum()),
                          "fn": int(fn[in_group].sum())}
        out["per_class"] = {
            name: {"id": int(self.category_ids[k]), "isthing": bool(self.is_thing[k]), "pq": float(pq[k]),
                   "sq": float(sq[k]), "rq": float(rq[k]), "n": int(counted[k]), "tp": int(tp[k]),
                   "fp": int(fp[k]), "fn": int(fn[k]), "iou": float(iou[k])}
            for k, name in enumerate(self.names)}
        out["num_frames"] = self.num_frames
        return out


def format_table(result: dict, per_class: bool = False) -> str:
    """panopticapi's printed table (percent), optionally preceded by cityscapesscripts' per-class rows."""
    lines = []
    if per_class:
        lines.append("{:14s}| {:>5s}  {:>5s}  {:>5s}".format("Category", "PQ", "SQ", "RQ"))
        for name, r in result["per_class"].items():
            lines.append("{:14s}| {:5.1f}  {:5.1f}  {:5.1f}".format(name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"]))
        lines.append("-" * 41)
    lines.append("{:14s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"))
    lines.append("-" * (14 + 7 * 4))
    for group, _ in GROUPS:
        r = result[group]
        lines.append("{:14s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(group, 100 * r["pq"], 100 * r["sq"],
                                                                   100 * r["rq"], r["n"]))
    return "\n".join(lines)
