"""PanopticNet: the single-shot panoptic network of Weber, Luiten, Leibe (IROS 2020)."""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
from torch import nn

from ..taxonomy import Taxonomy
from .backbone import BackboneFPN
from .center import CenterBranch
from .detection import DetectionBranch
from .semantic import SemanticBranch


class PanopticNet(nn.Module):
    """Backbone + FPN with a semantic, an instance-center and a RetinaNet branch.

    ``forward`` has no data-dependent control flow (exports with ``torch.export`` / ONNX at static shape);
    box decoding and NMS are in :meth:`detect`, outside the exported graph.

    Args:
        num_classes: C, semantic classes (stuff and things), i.e. train ids 0..C-1.
        thing_train_ids: train ids of the thing classes, in detection-logit order.
        backbone: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``mobilenet_v3_large``.
        fpn_channels: FPN width.
        norm: the trunk's normalisation, ``gn`` (default), ``bn`` or ``frozen_bn`` (see :class:`BackboneFPN`).
        freeze_at: trunk stages without gradient (0 = none, 1 = stem, 2 = stem + layer1, ...).
        head_channels: width of the semantic / center branch conv blocks.
        detection_levels: pyramid levels of the RetinaNet branch.
        anchor_scale, box_loss, fg_iou_thresh, bg_iou_thresh, topk_candidates, nms_thresh: see
            :class:`DetectionBranch`.
        lambda_o, lambda_s, lambda_i: loss weights of detection, semantic and center (paper: 0.5, 0.5, 0.01).
    """

    def __init__(self, num_classes: int, thing_train_ids: Sequence[int], backbone: str = "resnet50",
                 fpn_channels: int = 256, head_channels: int = 128, norm: str = "gn", freeze_at: int = 0,
                 detection_levels: Sequence[int] = (3, 4, 5, 6, 7), anchor_scale: float = 4.0,
                 box_loss: str = "l1", fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.4,
                 topk_candidates: int = 1000, nms_thresh: float = 0.5,
                 lambda_o: float = 0.5, lambda_s: float = 0.5, lambda_i: float = 0.01):
        super().__init__()
        thing_train_ids = [int(t) for t in thing_train_ids]
        if num_classes < 1 or not thing_train_ids or len(set(thing_train_ids)) != len(thing_train_ids) \
                or min(thing_train_ids) < 0 or max(thing_train_ids) >= num_classes:
            raise ValueError(f"thing_train_ids must be distinct train ids in 0..{num_classes - 1}, "
                             f"got {thing_train_ids}")
        self.config = {k: v for k, v in locals().items() if k in inspect.signature(PanopticNet).parameters}
        self.config["detection_levels"] = [int(v) for v in detection_levels]
        self.num_classes = num_classes
        self.thing_train_ids = thing_train_ids
        self.loss_weights = {"detection": float(lambda_o), "semantic": float(lambda_s), "center": float(lambda_i)}
        self.backbone = BackboneFPN(backbone, fpn_channels, norm=norm, freeze_at=freeze_at)
        self.semantic_branch = SemanticBranch(fpn_channels, num_classes, head_channels)
        self.center_branch = CenterBranch(fpn_channels, head_channels)
        self.detection_branch = DetectionBranch(
            fpn_channels, len(thing_train_ids), detection_levels, anchor_scale=anchor_scale, box_loss=box_loss,
            fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh, topk_candidates=topk_candidates,
            nms_thresh=nms_thresh)
        # train id -> detection class index (-1 for stuff); class index -> train id.
        to_index = torch.full((num_classes,), -1, dtype=torch.int64)
        to_index[torch.tensor(thing_train_ids)] = torch.arange(len(thing_train_ids))
        self.register_buffer("train_to_thing", to_index, persistent=False)
        self.register_buffer("thing_to_train", torch.tensor(thing_train_ids, dtype=torch.int64), persistent=False)

    @classmethod
    def from_config(cls, cfg: dict | None = None, taxonomy: Taxonomy | None = None, **kwargs) -> "PanopticNet":
        """Build from a config dict (constructor kwargs; unknown keys are an error) and/or keyword arguments.

        With ``taxonomy``, ``num_classes`` and ``thing_train_ids`` are taken from it.
        """
        args = dict(cfg or {}, **kwargs)
        if taxonomy is not None:
            for key, value in (("num_classes", taxonomy.num_classes),
                               ("thing_train_ids", [int(t) for t in taxonomy.thing_train_ids])):
                given = args.get(key, value)
                if (list(given) if key == "thing_train_ids" else given) != value:
                    raise ValueError(f"{key}={args[key]} contradicts the taxonomy ({value})")
                args[key] = value
        unknown = set(args) - set(inspect.signature(cls).parameters)
        if unknown:
            raise ValueError(f"unknown PanopticNet config keys {sorted(unknown)}")
        return cls(**args)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) normalised images -> semantic, centers, cls_logits, bbox_regression."""
        pyramid = self.backbone(images)
        out = {"semantic": self.semantic_branch(pyramid), "centers": self.center_branch(pyramid)}
        out.update(self.detection_branch(pyramid))
        return out

    @torch.no_grad()
    def detect(self, outputs: dict[str, torch.Tensor], image_size: tuple[int, int], score_threshold: float = 0.4,
               max_detections: int = 100) -> dict[str, torch.Tensor]:
        """Padded detections: boxes (B, K, 4) xyxy input pixels, scores, labels (train ids), valid."""
        det = self.detection_branch.detect(outputs, image_size, score_threshold, max_detections)
        det["labels"] = self.thing_to_train.to(det["labels"].device)[det["labels"]]
        return det

    def compute_loss(self, outputs: dict[str, torch.Tensor], targets: dict) -> dict[str, torch.Tensor]:
        """Losses and their weighted ``total``.

        ``targets``: semantic (B, H, W) train ids (255 ignored), center_offsets (B, 2, H, W),
        center_mask (B, H, W) bool, boxes list of (N, 4) xyxy, labels list of (N,) train ids; H, W = input.
        """
        image_size = tuple(targets["semantic"].shape[-2:])
        det_targets = []
        for boxes, labels in zip(targets["boxes"], targets["labels"]):
            index = self.train_to_thing.to(labels.device)[labels.long()]
            if (index < 0).any():
                raise ValueError(f"box labels must be thing train ids {self.thing_train_ids}, got {labels.tolist()}")
            det_targets.append({"boxes": boxes.float(), "labels": index})
        det = self.detection_branch.compute_loss(outputs, det_targets, image_size)
        losses = {"focal": det["classification"], "box": det["bbox_regression"],
                  "semantic": SemanticBranch.compute_loss(outputs["semantic"].float(), targets["semantic"]),
                  "center": CenterBranch.compute_loss(outputs["centers"].float(), targets["center_offsets"],
                                                      targets["center_mask"])}
        w = self.loss_weights
        losses["total"] = (w["detection"] * (losses["focal"] + losses["box"]) + w["semantic"] * losses["semantic"]
                           + w["center"] * losses["center"])
        return losses
