"""Inference backends: one interface (load, warm up, run a batch, describe) over eager torch, ONNX Runtime,
OpenVINO and Torch-TensorRT. ``create_backend('auto', ...)`` picks the fastest one that works here and says why."""
from .backends import (AUTO_ORDER, FACTORIES, PRECISIONS, Backend, BackendUnavailable, EagerBackend,
                       OnnxRuntimeBackend, TensorRTBackend, create_backend)
from .cache import ArtifactCache, default_cache_dir, model_hash

__all__ = ["AUTO_ORDER", "FACTORIES", "PRECISIONS", "ArtifactCache", "Backend", "BackendUnavailable",
           "EagerBackend", "OnnxRuntimeBackend", "TensorRTBackend", "create_backend", "default_cache_dir",
           "model_hash"]
