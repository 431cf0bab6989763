"""Instance-center branch (Weber et al. 2020): per-pixel offset to the centre of its instance's box."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .semantic import PyramidDecoder


class CenterBranch(PyramidDecoder):
    """Two maps (dx, dy) at 1/4: input pixels from each pixel centre to the centre of its instance's box.

    Bilinear upsampling (align_corners=False) of these maps evaluates them at the input pixel centres, so the
    1/4-grid value at cell (i, j) is the offset from input point (4j + 2, 4i + 2).
    """

    def __init__(self, in_channels: int, head_channels: int = 128):
        super().__init__(in_channels, head_channels, 2)

    @staticmethod
    def compute_loss(offsets: torch.Tensor, target_offsets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean L1 over thing pixels. ``target_offsets`` (B, 2, H, W), ``mask`` (B, H, W) bool, input size."""
        offsets = F.interpolate(offsets, size=target_offsets.shape[-2:], mode="bilinear", align_corners=False)
        weight = mask.unsqueeze(1).to(offsets.dtype)
        error = (offsets - target_offsets).abs() * weight
        return error.sum() / (2.0 * weight.sum()).clamp(min=1.0)
