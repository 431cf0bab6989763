"""Backends run ``PanopticNet.forward`` on a (B, 3, H, W) normalised batch and return its output dict."""
from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this machine (the message says why)."""


class Backend:
    name = "base"
    device = torch.device("cpu")

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def warmup(self, batch: int = 1) -> None:
        self.run(torch.zeros((batch, 3, *self.input_size), device=self.device))

    def describe(self) -> dict:
        return {"backend": self.name, "device": str(self.device), "input_size": list(self.input_size)}


class EagerBackend(Backend):
    """Plain PyTorch: FP32 on the CPU (thread count configurable); channels-last + FP16 autocast on CUDA."""

    def __init__(self, model: torch.nn.Module, input_size, device: str = "cpu", threads: int | None = None):
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("CUDA is not available (torch.cuda.is_available() is False)")
        self.name = device
        self.device = torch.device(device)
        self.input_size = tuple(input_size)
        if threads:
            torch.set_num_threads(int(threads))
        self.model = model.eval().to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.to(self.device)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                out = self.model(images.contiguous(memory_format=torch.channels_last))
            return {k: v.float() for k, v in out.items()}
        return self.model(images)


def _eager(device: str) -> Callable[..., Backend]:
    def make(model, input_size, threads=None, **_):
        return EagerBackend(model, input_size, device, threads)
    return make


FACTORIES: dict[str, Callable[..., Backend]] = {"cpu": _eager("cpu"), "cuda": _eager("cuda")}
AUTO_ORDER = ("tensorrt", "cuda", "onnxruntime", "cpu")


def create_backend(name: str, model: torch.nn.Module, input_size, metadata: dict | None = None,
                   threads: int | None = None) -> Backend:
    """The backend ``name``; ``auto`` tries AUTO_ORDER and logs why each skipped one was skipped."""
    if name != "auto":
        if name not in FACTORIES:
            raise ValueError(f"unknown backend {name!r}; choose one of auto, {', '.join(AUTO_ORDER)}")
        return FACTORIES[name](model, input_size, metadata=metadata, threads=threads)
    reasons = []
    for candidate in AUTO_ORDER:
        if candidate not in FACTORIES:
            reasons.append(f"{candidate}: not built into this install")
            continue
        try:
            backend = FACTORIES[candidate](model, input_size, metadata=metadata, threads=threads)
        except BackendUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
            continue
        log.info("backend auto -> %s (skipped: %s)", candidate, "; ".join(reasons) or "none")
        backend.auto_reasons = reasons
        return backend
    raise BackendUnavailable("no backend works here: " + "; ".join(reasons))
