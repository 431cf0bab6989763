"""Inference backends: one interface (load, warm up, run a batch, describe) over eager torch, ONNX Runtime and
Torch-TensorRT. ``create_backend('auto', ...)`` picks the fastest one that works here and says why."""
from .backends import Backend, BackendUnavailable, EagerBackend, create_backend

__all__ = ["Backend", "BackendUnavailable", "EagerBackend", "create_backend"]
