"""Offline evaluation: panoptic quality with panopticapi's semantics, mIoU, box AP, and report folders.

    acc = PQAccumulator(taxonomy)                     # or a COCO-panoptic "categories" list
    stats = acc.add(pred_ids, pred_segments, gt_ids, gt_segments, name="frame 7")   # stats.pq per frame
    acc.result()["All"]["pq"]                         # readable at any time; acc.merge(other) for workers
    write_report("out/eval", acc.result(), acc.frames, latencies_ms=..., worst_frames=...)

Folders in COCO-panoptic layout: ``PanopticFolders(gt_json, gt_dir, pred_json, pred_dir).evaluate()`` or
``panoptic-eval coco|cityscapes ...``.
"""
from .detection import DetectionAccumulator
from .files import PanopticFolders, evaluate_folders
from .id_png import read_id_png
from .matching import IdRuns, id_runs
from .pq import FrameStats, PQAccumulator, format_table
from .report import to_convention, worst_frame_names, write_report
from .semantic import SemanticAccumulator

__all__ = ["DetectionAccumulator", "FrameStats", "IdRuns", "PQAccumulator", "PanopticFolders",
           "SemanticAccumulator", "evaluate_folders", "format_table", "id_runs", "read_id_png", "to_convention",
           "worst_frame_names", "write_report"]
