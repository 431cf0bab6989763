"""INT8 post-training static quantization of the network for CPU backends (OpenVINO and ONNX Runtime).

One artefact serves both: the FP32 ONNX export quantized by NNCF into a QDQ ONNX model (QuantizeLinear /
DequantizeLinear pairs around each quantized op: OpenVINO turns them into its INT8 kernels, ONNX Runtime
into QLinear ops). Calibration batches are data-set frames through the Predictor's own preprocessing
(resize + normalise), so the activation ranges are those the network sees at run time.

Accuracy control: the layers the panoptic head is most sensitive to can stay in floating point
(``keep_float``): ``first`` = the first convolution (raw normalised pixels in), ``heads`` = the last
convolution before each network output (semantic logits, centre offsets, class logits, box deltas: the
head's inputs directly). Which ones are kept is a measured choice (README: held-out PQ per setting);
:data:`DEFAULT_KEEP_FLOAT` is what the measurement chose.

The INT8 model lives in :class:`~panoptic_ros.runtime.cache.ArtifactCache` (kind ``int8``) keyed by model hash,
input shape, opset and ``keep_float``; it can only be built with calibration data (``panoptic-export --int8
--calibration DATA``), so a backend asked for INT8 without one says how to make it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .cache import ArtifactCache, model_hash

log = logging.getLogger(__name__)

KEEP_FLOAT_CHOICES = ("first", "heads")
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("heads",)  # held-out PQ +0.10 vs FP32; nothing kept: -0.31 (README)
INT8_KIND = "int8"
HOW_TO_CALIBRATE = ("no INT8 model calibrated for this checkpoint and input size in the cache: run "
                    "panoptic-export CHECKPOINT --int8 --calibration DATA --out DIR")


def int8_identity(model: torch.nn.Module, input_size: Sequence[int], opset: int,
                  keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT) -> dict:
    return {"model": model_hash(model), "input_shape": [1, 3, *(int(v) for v in input_size)], "opset": int(opset),
            "keep_float": sorted(keep_float), "scheme": "nncf-qdq-v1"}


def int8_environment() -> dict:
    import nncf
    import onnx

    return {"torch": torch.__version__, "onnx": onnx.__version__, "nncf": nncf.__version__}


def sensitive_nodes(onnx_model, keep_float: Sequence[str]) -> list[str]:
    """Names of the ONNX Conv nodes ``keep_float`` names (see the module docstring), found from the graph's
    structure: the first Conv fed by the graph input, and the last Conv on the path to each graph output."""
    unknown = set(keep_float) - set(KEEP_FLOAT_CHOICES)
    if unknown:
        raise ValueError(f"keep_float: unknown {sorted(unknown)}; choose from {KEEP_FLOAT_CHOICES}")
    graph = onnx_model.graph
    producer = {out: node for node in graph.node for out in node.output}
    names: list[str] = []
    if "first" in keep_float:
        inputs = {i.name for i in graph.input}
        names += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    if "heads" in keep_float:
        for output in graph.output:
            stack, seen = [output.name], set()
            while stack:  # walk upstream until a Conv on every path (reshapes, concats, sigmoids in between)
                node = producer.get(stack.pop())
                if node is None or node.name in seen:
                    continue
                seen.add(node.name)
                if node.op_type == "Conv":
                    names.append(node.name)
                else:
                    stack.extend(node.input)
    return sorted(set(names))


def quantize_onnx(fp32_path: Path, batches: Iterable[np.ndarray], out_path: Path,
                  keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT, input_name: str = "images") -> Path:
    """NNCF post-training static quantization (QDQ, symmetric INT8 weights per channel, bias correction) of
    the ONNX model at ``fp32_path`` over ``batches`` (normalised (1, 3, H, W) float32 arrays)."""
    import nncf
    import onnx

    model = onnx.load(str(fp32_path))
    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
    if not batches:
        raise ValueError("INT8 calibration needs at least one batch")
    ignored = sensitive_nodes(model, keep_float)
    log.info("INT8 calibration on %d frames; kept in float: %s", len(batches), ", ".join(ignored) or "nothing")
    quantized = nncf.quantize(model, nncf.Dataset(batches, lambda b: {input_name: b}), subset_size=len(batches),
                              ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None)
    onnx.save(quantized, str(out_path))
    return out_path


def int8_onnx(model: torch.nn.Module, input_size: Sequence[int], fp32_onnx: Path, cache_dir=None, opset: int = 18,
              calibration: Iterable | None = None, keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT):
    """(path of the cached INT8 ONNX model, CacheOutcome); built from ``calibration`` (normalised tensors or
    arrays) when the cache has none; without calibration a missing entry raises BackendUnavailable."""
    from .backends import BackendUnavailable

    try:
        environment = int8_environment()
    except ImportError as exc:
        raise BackendUnavailable(f"INT8 quantization needs nncf and onnx ({exc})") from exc
    cache = ArtifactCache(cache_dir)

    def build(path):
        if calibration is None:
            raise BackendUnavailable(HOW_TO_CALIBRATE)
        quantize_onnx(fp32_onnx, (torch.as_tensor(b).numpy() for b in calibration), path, keep_float)

    return cache.fetch_or_build(INT8_KIND, int8_identity(model, input_size, opset, keep_float), environment,
                                "network_int8.onnx", build, lambda path: path,
                                what=f"INT8 ONNX model of the network at {input_size[0]}x{input_size[1]}")


def calibration_batches(data_dir: Path, preprocess, frames: int, skip: int = 0):
    """``frames`` normalised (1, 3, H, W) tensors from a COCO-panoptic data-set folder (``annotations.json`` +
    ``images/``, as ``panoptic-world generate`` writes), spread evenly over the set, through ``preprocess``
    (``Predictor.preprocess``)."""
    from ..data.coco import CocoPanopticReader

    reader = CocoPanopticReader(Path(data_dir) / "annotations.json")
    if len(reader) == 0:
        raise ValueError(f"{data_dir} has no frames")
    picks = np.unique(np.linspace(skip, len(reader) - 1, num=min(frames, len(reader) - skip)).round().astype(int))
    return [preprocess([reader[int(i)].image]) for i in picks]


def heldout_pq(predictor, data_dir: Path, frames: int | None = None) -> dict:
    """PQ / SQ / RQ (percent) of ``predictor`` on a COCO-panoptic folder (the first ``frames`` frames)."""
    from ..data.coco import CocoPanopticReader
    from ..evaluation.pq import PQAccumulator

    reader = CocoPanopticReader(Path(data_dir) / "annotations.json")
    if reader.taxonomy != predictor.taxonomy:
        raise ValueError(f"the data set's categories in {data_dir} are not the model's")
    pq = PQAccumulator(predictor.taxonomy)
    n = len(reader) if frames is None else min(frames, len(reader))
    for k in range(n):
        sample = reader[k]
        result = predictor.predict(sample.image)
        pq.add(result.panoptic, result.segments, sample.panoptic, sample.segments, name=sample.name or str(k))
    out = pq.result()
    return {"frames": n, **{g.lower(): round(100 * out[g]["pq"], 2) for g in ("All", "Things", "Stuff")}}
