"""Backbones with a feature pyramid: ResNet-18/34/50/101 and MobileNetV3-Large (torchvision) with torchvision's
FeaturePyramidNetwork giving p2..p7.

The ResNet trunk's normalisation is ``gn`` (GroupNorm: training from scratch at small batch), ``bn`` (BatchNorm)
or ``frozen_bn`` (torchvision's FrozenBatchNorm2d: ImageNet statistics kept fixed, as torchvision's and
detectron2's detectors fine-tune). ImageNet weights come from a local torchvision file (:mod:`.pretrained`).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50, resnet101
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

RESNETS = {"resnet18": (resnet18, 1), "resnet34": (resnet34, 1), "resnet50": (resnet50, 4),
           "resnet101": (resnet101, 4)}  # constructor, block expansion
BACKBONES = (*RESNETS, "mobilenet_v3_large")
NORMS = ("gn", "bn", "frozen_bn")
# freeze_at k freezes the first k of these (detectron2's FREEZE_AT: 1 = stem, 2 = stem + layer1, ...).
STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
PYRAMID_LEVELS = (2, 3, 4, 5, 6, 7)


def group_norm(num_channels: int, max_groups: int = 32, min_group_size: int = 4) -> nn.GroupNorm:
    """GroupNorm with the most groups (<= ``max_groups``, >= ``min_group_size`` channels each) dividing the channels.

    We train from scratch at small batch, where BatchNorm statistics are too noisy (Wu & He, 2018). Groups of
    several channels also keep 1x1 maps (p7 of small inputs) normalisable.
    """
    limit = max(1, min(max_groups, num_channels // min_group_size))
    groups = max(g for g in range(1, limit + 1) if num_channels % g == 0)
    return nn.GroupNorm(groups, num_channels)


class MobileNetV3Features(nn.Module):
    """MobileNetV3-Large trunk returning the last feature of each stride 4, 8, 16, 32 (keys '0'..'3').

    torchvision's own mobilenet FPN only taps strides 16/32, too coarse for the semantic branch.
    """

    TAPS = (3, 6, 12, 16)  # indices into ``features`` ending stride 4, 8, 16, 32
    CHANNELS = (24, 40, 112, 960)

    def __init__(self):
        super().__init__()
        self.features = mobilenet_v3_large(weights=None, norm_layer=group_norm).features[: self.TAPS[-1] + 1]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                out[str(self.TAPS.index(index))] = x
        return out


class BackboneFPN(nn.Module):
    """Backbone trunk + FPN; ``forward`` returns the list [p2, p3, p4, p5, p6, p7] (strides 4..128).

    Args:
        name: one of :data:`BACKBONES`.
        fpn_channels: width of every pyramid level (e.g. 64, 128, 256).
        norm: the ResNet trunk's normalisation, one of :data:`NORMS` (the FPN keeps GroupNorm: it starts
            from scratch either way).
        freeze_at: how many of the trunk's stages (stem, layer1..layer4) get no gradient (0 = none).
    """

    def __init__(self, name: str = "resnet50", fpn_channels: int = 256, norm: str = "gn", freeze_at: int = 0):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
        if fpn_channels < 8 or fpn_channels % 8:
            raise ValueError(f"fpn_channels must be a positive multiple of 8, got {fpn_channels}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        if not 0 <= int(freeze_at) <= len(STAGES):
            raise ValueError(f"freeze_at must be 0..{len(STAGES)} (stem, layer1..layer4), got {freeze_at}")
        if name == "mobilenet_v3_large":
            if norm != "gn" or freeze_at:
                raise ValueError("mobilenet_v3_large supports norm gn and freeze_at 0 only")
            self.body = MobileNetV3Features()
            in_channels = list(MobileNetV3Features.CHANNELS)
        else:
            build, expansion = RESNETS[name]
            norm_layer = {"gn": group_norm, "bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}[norm]
            trunk = build(weights=None, norm_layer=norm_layer)
            self.body = IntermediateLayerGetter(
                trunk, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"})
            in_channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
            for stage in STAGES[: int(freeze_at)]:
                for module_name in stage:
                    getattr(self.body, module_name).requires_grad_(False)
        # p6/p7 from p5 (in == out channels), as torchvision's RetinaNet v1.
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels,
                                         extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
                                         norm_layer=group_norm)
        self.name = name
        self.norm = norm
        self.out_channels = fpn_channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.fpn(self.body(images)).values())


def level_sizes(image_size: tuple[int, int], levels=PYRAMID_LEVELS) -> list[tuple[int, int]]:
    """Feature-map size of each pyramid level for an input size: every stride-2 layer rounds up."""
    out = []
    h, w = int(image_size[0]), int(image_size[1])
    for level in range(1, max(levels) + 1):
        h, w = -(-h // 2), -(-w // 2)
        if level in levels:
            out.append((h, w))
    return out
