"""The ``openvino`` backend: the network's ONNX export compiled by OpenVINO for the CPU.

Precisions: ``fp32``; ``bf16`` where the CPU has BF16 units (OpenVINO's ``OPTIMIZATION_CAPABILITIES`` lists
``BF16``: AVX512-BF16 / AMX), as OpenVINO's inference precision hint (weights and activations in bfloat16,
accumulation in float32); ``int8``: the NNCF-quantized QDQ model of :mod:`.quantize` (calibrated beforehand),
its remaining float layers in float32.

The compiled model (OpenVINO's ``export_model`` blob: one file, loads in a fraction of a second) is cached in
:class:`~.cache.ArtifactCache` keyed by the source ONNX file's checksum (so by model hash, input size, opset,
INT8 calibration), the precision, and rebuilt when the OpenVINO version or the CPU changes. The thread count is
applied when loading, so it is not part of the key.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .backends import Backend, BackendUnavailable, fp32_onnx
from .cache import ArtifactCache, file_sha256
from .export import DEFAULT_OPSET, OUTPUT_NAMES
from .quantize import DEFAULT_KEEP_FLOAT, int8_onnx
from .threads import resolve_threads

log = logging.getLogger(__name__)

OPENVINO_PRECISIONS = ("fp32", "bf16", "int8")
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
_TYPES = {"f32": "float32", "bf16": "bfloat16"}  # how compiled models report the hint back


def import_openvino():
    """The ``openvino`` module, or BackendUnavailable saying it is missing (it is an optional dependency)."""
    try:
        import openvino
    except Exception as exc:  # ImportError, or a broken install's OSError
        raise BackendUnavailable(f"openvino cannot be imported ({type(exc).__name__}: {exc}); "
                                 "pip install openvino (panoptic_ros[openvino])") from exc
    return openvino


def cpu_capabilities(core) -> list[str]:
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


class OpenVINOBackend(Backend):
    """The network in an OpenVINO CPU infer request (batch 1, static shape).

    Args:
        model: the ``PanopticNet`` (its weights key the cache entries).
        input_size: (H, W).
        precision: ``fp32``, ``bf16`` (needs BF16 units) or ``int8`` (needs a calibrated INT8 model: from
            ``calibration`` batches, or one already in the cache).
        threads: inference threads (None / 0: the physical cores).
        cache_dir: cache root.
        calibration: INT8 only: normalised (1, 3, H, W) batches, used when the cache has no INT8 model yet.
        keep_float: INT8 only: layers kept in floating point (see :mod:`.quantize`).
    """

    name = "openvino"

    def __init__(self, model: torch.nn.Module, input_size, precision: str = "fp32", threads: int | None = None,
                 cache_dir=None, opset: int | None = None, calibration: Iterable | None = None,
                 keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT):
        if precision not in OPENVINO_PRECISIONS:
            raise BackendUnavailable(f"openvino runs {', '.join(OPENVINO_PRECISIONS)}, not {precision}")
        ov = import_openvino()
        core = ov.Core()
        capabilities = cpu_capabilities(core)
        if precision == "bf16" and "BF16" not in capabilities:
            raise BackendUnavailable("this CPU has no BF16 units (OpenVINO's CPU capabilities: "
                                     f"{', '.join(capabilities)})")
        if precision == "int8" and "INT8" not in capabilities:
            raise BackendUnavailable(f"OpenVINO has no INT8 kernels on this CPU ({', '.join(capabilities)})")
        self.precision = precision
        self.input_size = tuple(int(v) for v in input_size)
        self.threads = resolve_threads(threads)
        opset = int(opset or DEFAULT_OPSET)
        source, _ = fp32_onnx(model, self.input_size, cache_dir, opset)
        if precision == "int8":
            source, _ = int8_onnx(model, self.input_size, source, cache_dir, opset, calibration, keep_float)
        self.cpu = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        self.environment = {"openvino": str(ov.__version__), "cpu": self.cpu, "capabilities": capabilities}
        identity = {"source": file_sha256(Path(source)), "input_shape": [1, 3, *self.input_size],
                    "precision": precision}
        # ENABLE_CPU_PINNING off: the node's worker, DDS and other processes share these cores; pinned
        # threads cannot move away from a busy one. One stream: frames come one at a time.
        # The precision hint goes to import_model too: the CPU plugin recompiles the stored graph on import, and
        # without the hint it would pick bf16 on a BF16 CPU for an fp32 request.
        self.config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                       "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": _HINTS[precision]}

        def build(path):
            compiled = core.compile_model(core.read_model(str(source)), "CPU", self.config)
            Path(path).write_bytes(compiled.export_model().getvalue())

        def load(path):
            compiled = core.import_model(Path(path).read_bytes(), "CPU", self.config)
            names = tuple(o.get_any_name() for o in compiled.outputs)
            hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            if _TYPES[_HINTS[precision]] not in hint:
                raise ValueError(f"OpenVINO compiled the {precision} model with precision {hint}")
            if names != OUTPUT_NAMES:
                raise ValueError(f"OpenVINO model outputs {names}, expected {OUTPUT_NAMES}")
            return compiled

        self.compiled, self.cache_outcome = ArtifactCache(cache_dir).fetch_or_build(
            "openvino", identity, self.environment, "network.blob", build, load,
            what=f"OpenVINO {precision} model of the network at {self.input_size[0]}x{self.input_size[1]}")
        self.request = self.compiled.create_infer_request()

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images run one at a time through the batch-1 model and are stacked."""
        self._check_input(images)
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
        per_image = []
        for i in range(batch.shape[0]):
            self.request.infer({0: batch[i:i + 1]})
            # copies: the request reuses its output buffers on the next call
            per_image.append([np.array(self.request.get_output_tensor(j).data) for j in range(len(OUTPUT_NAMES))])
        return {name: torch.from_numpy(np.concatenate([o[j] for o in per_image]) if len(per_image) > 1
                                       else per_image[0][j]) for j, name in enumerate(OUTPUT_NAMES)}

    def describe(self) -> dict:
        return dict(super().describe(), precision=self.precision, threads=self.threads, **self.environment)
