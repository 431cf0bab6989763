"""Checkpoints: a plain state_dict plus metadata, loadable with ``torch.load(weights_only=True)``.

Layout: ``{"format": FORMAT, "state_dict": ..., "metadata": {...}, "training_state": {...} (optional)}``.
metadata: taxonomy (Taxonomy.to_dict), input_size [H, W], normalization {mean, std} (RGB in [0, 1]),
network (PanopticNet constructor kwargs), training (config), dataset_hash, step, torch_version.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..taxonomy import Taxonomy
from .network import PanopticNet

FORMAT = "panoptic_ros.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, other architecture or other classes."""


def build_metadata(model: PanopticNet, taxonomy: Taxonomy, input_size, normalization: dict,
                   training: dict | None = None, dataset_hash: str = "", step: int = 0) -> dict:
    """The metadata dict stored with the weights (see the module docstring)."""
    return {"taxonomy": taxonomy.to_dict(), "input_size": [int(input_size[0]), int(input_size[1])],
            "normalization": {"mean": [float(v) for v in normalization["mean"]],
                              "std": [float(v) for v in normalization["std"]]},
            "network": dict(model.config), "training": dict(training or {}), "dataset_hash": str(dataset_hash),
            "step": int(step), "torch_version": str(torch.__version__)}


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: dict,
                    training_state: dict | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metadata": metadata}
    if training_state is not None:
        payload["training_state"] = training_state
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The raw checkpoint dict; CheckpointError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an ONNX file; give the checkpoint (.pt) it was exported from: the ONNX "
                              "model is built from it and cached")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / corrupt / non-torch files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {first}") from exc
    if isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values()) and \
            any(k.startswith(("conv1.", "layer1.", "fc.")) for k in payload):
        raise CheckpointError(f"{path} is a torchvision backbone state_dict, not a {FORMAT} checkpoint: give it as "
                              "model.backbone_weights in the training config")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    return payload


def load_checkpoint(path: str | Path, expected_taxonomy: Taxonomy | None = None,
                    map_location="cpu") -> tuple[PanopticNet, dict]:
    """(PanopticNet in eval mode, metadata). Raises CheckpointError with the reason."""
    payload = read_checkpoint(path, map_location)
    metadata = payload["metadata"]
    try:
        taxonomy = Taxonomy.from_dict(metadata["taxonomy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has no valid taxonomy: {exc}") from exc
    if expected_taxonomy is not None and taxonomy != expected_taxonomy:
        raise CheckpointError(f"checkpoint {path} was trained for classes {taxonomy.names()} "
                              f"but {expected_taxonomy.names()} are expected")
    try:
        model = PanopticNet.from_config(metadata["network"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable network config: {exc}") from exc
    if model.num_classes != taxonomy.num_classes or model.thing_train_ids != [int(t) for t in taxonomy.thing_train_ids]:
        raise CheckpointError(f"checkpoint {path}: network classes do not match its taxonomy")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise CheckpointError(f"checkpoint {path} does not fit the {metadata['network'].get('backbone')} "
                              f"PanopticNet it describes (other architecture?): {exc}") from exc
    return model.eval(), metadata
