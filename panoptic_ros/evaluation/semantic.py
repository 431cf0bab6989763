"""Streaming semantic-segmentation confusion matrix -> per-class IoU and mIoU (Cityscapes' definition).

Ground-truth pixels equal to ``ignore_index`` (255, void) are left out. A prediction outside the class
range (e.g. 255 = unknown) on a labelled pixel is a miss for the true class and a false positive for none.
A class with no ground-truth and no predicted pixel has IoU NaN and is left out of the mean.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..taxonomy import VOID_TRAIN_ID, Taxonomy


class SemanticAccumulator:
    """Args:
        classes: a :class:`Taxonomy` or the class names in train-id order.
        ignore_index: ground-truth value that is not evaluated.
    """

    def __init__(self, classes: Taxonomy | Sequence[str], ignore_index: int = VOID_TRAIN_ID):
        self.names = classes.names() if isinstance(classes, Taxonomy) else [str(c) for c in classes]
        if not self.names:
            raise ValueError("classes is empty")
        self.num_classes = len(self.names)
        self.ignore_index = ignore_index
        # Rows: ground truth; columns: prediction, the last column = prediction outside the classes.
        self.confusion = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        self.num_frames = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Add one frame of (H, W) train-id maps; returns the frame's confusion matrix."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred and gt must have one shape, got {pred.shape} and {gt.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
            raise ValueError(f"semantic maps must hold integer train ids, got {pred.dtype} and {gt.dtype}")
        gt = gt.reshape(-1)
        keep = gt != self.ignore_index
        gt = gt[keep].astype(np.intp)
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_classes):
            bad = np.unique(gt[(gt < 0) | (gt >= self.num_classes)])
            raise ValueError(f"ground truth holds train ids {bad[:10].tolist()} outside 0..{self.num_classes - 1} "
                             f"and not the ignore index {self.ignore_index}")
        pred = pred.reshape(-1)[keep].astype(np.intp)
        pred[(pred < 0) | (pred >= self.num_classes)] = self.num_classes
        frame = np.bincount(gt * (self.num_classes + 1) + pred,
                            minlength=self.num_classes * (self.num_classes + 1))
        frame = frame.reshape(self.num_classes, self.num_classes + 1)
        self.confusion += frame
        self.num_frames += 1
        return frame

    def merge(self, other: "SemanticAccumulator") -> "SemanticAccumulator":
        if self.names != other.names:
            raise ValueError("cannot merge accumulators over different classes")
        self.confusion += other.confusion
        self.num_frames += other.num_frames
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU (NaN for classes absent from both ground truth and prediction)."""
        tp = np.diag(self.confusion[:, : self.num_classes]).astype(np.float64)
        fn = self.confusion.sum(axis=1) - tp
        fp = self.confusion[:, : self.num_classes].sum(axis=0) - tp
        denom = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def result(self) -> dict:
        """``{'miou', 'pixel_accuracy', 'n', 'per_class': {name: {'iou', 'tp', 'fp', 'fn'}}}``."""
        iou = self.iou()
        tp = np.diag(self.confusion[:, : self.num_classes])
        fn = self.confusion.sum(axis=1) - tp
        fp = self.confusion[:, : self.num_classes].sum(axis=0) - tp
        valid = ~np.isnan(iou)
        total = self.confusion.sum()
        return {
            "miou": float(iou[valid].mean()) if valid.any() else float("nan"),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "n": int(valid.sum()),
            "num_frames": self.num_frames,
            "per_class": {name: {"iou": float(iou[k]), "tp": int(tp[k]), "fp": int(fp[k]), "fn": int(fn[k])}
                          for k, name in enumerate(self.names)},
        }
