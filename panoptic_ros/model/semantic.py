"""Semantic branch (Weber et al. 2020, after Panoptic FPN): p2..p5 brought to 1/4 and summed, 1x1 to logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..taxonomy import VOID_TRAIN_ID
from .backbone import group_norm


class ConvNormUp(nn.Sequential):
    """conv3x3 + GroupNorm + ReLU, optionally followed by 2x bilinear upsampling."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool):
        layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), group_norm(out_channels),
                  nn.ReLU(inplace=True)]
        if upsample:
            layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
        super().__init__(*layers)


class PyramidDecoder(nn.Module):
    """Brings p2..p5 to stride 4 and sums them, then a 1x1 conv to ``out_channels`` maps.

    Level p_k gets max(1, k-2) conv blocks, the last k-2 of which upsample 2x.

    Args:
        in_channels: FPN width.
        head_channels: width of the conv blocks (128 in Panoptic FPN).
        out_channels: number of output maps.
        num_levels: how many pyramid levels from p2 are used (4 = p2..p5).
    """

    def __init__(self, in_channels: int, head_channels: int, out_channels: int, num_levels: int = 4):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for k in range(num_levels):
            blocks = [ConvNormUp(in_channels if i == 0 else head_channels, head_channels, upsample=k > 0)
                      for i in range(max(1, k))]
            self.scale_heads.append(nn.Sequential(*blocks))
        self.predictor = nn.Conv2d(head_channels, out_channels, 1)
        self.num_levels = num_levels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.scale_heads[0](features[0])
        for k in range(1, self.num_levels):
            y = self.scale_heads[k](features[k])
            # Odd input sizes round up per level, so crop to p2's grid (a no-op for sizes divisible by 32).
            x = x + y[..., : x.shape[-2], : x.shape[-1]]
        return self.predictor(x)


class SemanticBranch(PyramidDecoder):
    """Per-pixel logits over all classes (stuff and things) at 1/4 of the input."""

    def __init__(self, in_channels: int, num_classes: int, head_channels: int = 128):
        super().__init__(in_channels, head_channels, num_classes)
        self.num_classes = num_classes

    @staticmethod
    def compute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against (B, H, W) train ids at input resolution (255 ignored)."""
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        if not (targets != VOID_TRAIN_ID).any():
            return logits.sum() * 0.0  # keeps the graph (DDP) instead of NaN from an empty mean
        return F.cross_entropy(logits, targets.long(), ignore_index=VOID_TRAIN_ID)
