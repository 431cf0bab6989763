"""ImageNet weights for the ResNet trunk from a local torchvision file (``model.backbone_weights``).

Accepted: a torchvision ResNet ``state_dict`` saved with ``torch.save(model.state_dict(), path)``, or the
``.pth`` file torchvision downloads (e.g. ``resnet50-11ad3fa6.pth``, the same plain state_dict), optionally
wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``. The classifier (``fc.*``) is ignored; every other
tensor must fit the trunk in name and shape, else nothing is loaded.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .backbone import BackboneFPN


class BackboneWeightsError(ValueError):
    """A weights file that does not fit the backbone; the message is one line."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"backbone weights {path} do not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign / corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackboneWeightsError(f"backbone weights {path} are not a torch state_dict file: {first}") from exc
    if isinstance(payload, dict) and payload.get("format", "").startswith("panoptic_ros.checkpoint"):
        raise BackboneWeightsError(f"{path} is a panoptic_ros checkpoint, not torchvision backbone weights: "
                                   "start from it with --init")
    for key in ("state_dict", "model"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
    if not isinstance(payload, dict) or not payload or not all(torch.is_tensor(v) for v in payload.values()):
        raise BackboneWeightsError(f"backbone weights {path} hold no state_dict (a dict of tensors)")
    return payload


def load_backbone_weights(backbone: BackboneFPN, path: str | Path) -> int:
    """Copy ``path``'s tensors into ``backbone``'s ResNet trunk; returns how many were loaded.

    BackboneWeightsError (one line) when a key is missing or extra (``fc.*`` and BatchNorm's
    ``num_batches_tracked`` aside) or a shape differs.
    """
    if backbone.name not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise BackboneWeightsError(f"model.backbone_weights needs a ResNet backbone, not {backbone.name}")
    theirs = {k: v for k, v in read_state_dict(path).items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    ours = {k: v for k, v in backbone.body.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    wrong = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
    if missing or extra or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} trunk tensors missing (first: {missing[0]})")
        if extra:
            problems.append(f"{len(extra)} unexpected (first: {extra[0]})")
        if wrong:
            k = wrong[0]
            problems.append(f"{len(wrong)} of another shape (first: {k} {tuple(theirs[k].shape)}, "
                            f"{backbone.name} needs {tuple(ours[k].shape)})")
        hint = (" (GroupNorm has no running statistics: use model.norm frozen_bn or bn for ImageNet weights)"
                if backbone.norm == "gn" and any(k.endswith("running_mean") for k in extra) else "")
        raise BackboneWeightsError(f"backbone weights {path} do not fit {backbone.name} with norm "
                                   f"{backbone.norm}: {'; '.join(problems)}{hint}")
    missing_keys, unexpected = backbone.body.load_state_dict(theirs, strict=False)
    left = [k for k in missing_keys if not k.endswith("num_batches_tracked")]
    if left or unexpected:  # cannot happen after the checks above; kept so a torchvision change cannot hide
        raise BackboneWeightsError(f"backbone weights {path}: not loaded: {left[:1] or unexpected[:1]}")
    return len(theirs)
