"""``backend: auto``: the fastest correct backend and precision on this machine.

Order and rules:

1. GPU: ``tensorrt``, then ``cuda``: the first that works is taken without a probe (nothing here can time a
   GPU; on a machine with one these were always chosen first).
2. CPU, probed: every candidate of :data:`CPU_CANDIDATES` that can be built here (``openvino`` int8 / bf16 /
   fp32, ``onnxruntime`` int8 / fp32, ``cpu`` fp32) runs one warm-up, then :data:`PROBE_RUNS` timed forwards of
   one fixed input, the candidates taking turns (so a change in the machine's load hits all of them alike); a candidate is *correct* when every output is finite and within :data:`TOLERANCE` (relative
   RMS error per output, by precision) of eager torch FP32 on that input. The fastest correct one by median
   time wins; ties within the noise go to the earlier in the list.
   INT8 candidates are only built from a calibrated INT8 model already in the cache (``panoptic-export --int8
   --calibration DATA`` puts it there, with its held-out PQ printed); without one they are skipped with that
   reason, and a bf16 or fp32 path is chosen.
3. A ``precision`` other than ``auto`` keeps only the candidates of that precision.

The decision (winner, every timing, every reason) is cached in :class:`~.cache.ArtifactCache` (kind ``auto``)
keyed by model hash, input size, threads, requested precision and whether an INT8 model exists, and rebuilt
when the CPU, the core count or a library version changes: a restart builds only the winner. The reasons go
to the log and to ``describe()`` (``skipped`` and ``auto``), which the node shows in /diagnostics.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from .backends import FACTORIES, Backend, BackendUnavailable
from .cache import ArtifactCache, model_hash

log = logging.getLogger(__name__)

GPU_ORDER = ("tensorrt", "cuda")
CPU_CANDIDATES = (("openvino", "int8"), ("openvino", "bf16"), ("openvino", "fp32"), ("onnxruntime", "int8"),
                  ("onnxruntime", "fp32"), ("cpu", "fp32"))
PROBE_RUNS = 5
# Relative RMS error ||got - eager|| / ||eager|| per output on the probe input. fp32: reordered float sums
# (measured ~1e-6); bf16: 8-bit mantissas (measured ~2e-3 .. 1e-2 on the shipped model); int8: quantization
# noise (measured ~3e-2 .. 0.1); the bounds leave ~3x margin and still catch a broken conversion (error ~1).
TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "int8": 0.3}
TIE = 0.03  # 3 %: medians closer than this are noise on a shared machine; keep the earlier candidate


def label(name: str, precision: str) -> str:
    return f"{name}/{precision}"


def machine() -> dict:
    """What makes a timing of this machine differ from another's: CPU model, its cores, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"torch": torch.__version__}
    for module in ("onnxruntime", "openvino"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent: part of the key, so installing it re-probes
            versions[module] = None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), **versions}


def relative_error(got: dict, want: dict) -> float:
    """Largest relative RMS error over the outputs; inf when an output is not finite or has another shape."""
    worst = 0.0
    for key, ref in want.items():
        out = got[key].float()
        if out.shape != ref.shape or not torch.isfinite(out).all():
            return math.inf
        worst = max(worst, float((out - ref).norm() / ref.norm().clamp_min(1e-12)))
    return worst


def probe_input(input_size) -> torch.Tensor:
    """A fixed, image-like probe: smooth random colour fields (normalised), not white noise, so the network's
    activations (and INT8 ranges) look like a real frame's."""
    g = torch.Generator().manual_seed(25)
    h, w = (int(v) for v in input_size)
    coarse = torch.randn(1, 3, max(1, h // 16), max(1, w // 16), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)



def _build(name: str, precision: str, model, input_size, options: dict) -> Backend:
    backend = FACTORIES[name](model, input_size, precision=precision, **options)
    backend.skipped = {}
    return backend


def probe(model, input_size, candidates, options: dict) -> dict:
    """Build and time each candidate; {'chosen': label | None, 'ms': {label: ms}, 'error': {label: rel err},
    'reasons': {label: why not}}."""
    x = probe_input(input_size)
    with torch.no_grad():
        want = {k: v.float() for k, v in model.eval()(x.to(next(model.parameters()).device)).items()}
        want = {k: v.cpu() for k, v in want.items()}
    ms, errors, reasons, correct = {}, {}, {}, {}
    for name, precision in candidates:  # build, warm up and check each
        key = label(name, precision)
        try:
            backend = _build(name, precision, model, input_size, options)
            out = backend.run(x)  # also the warm-up (first-call allocations)
        except BackendUnavailable as exc:
            reasons[key] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is not chosen, the others can
            reasons[key] = f"failed in the probe: {type(exc).__name__}: {exc}"
            continue
        errors[key] = relative_error({k: v.cpu() for k, v in out.items()}, want)
        if errors[key] > TOLERANCE[precision]:
            reasons[key] = (f"wrong: relative error {errors[key]:.3g} vs eager torch fp32 "
                            f"(tolerance {TOLERANCE[precision]:g} for {precision})")
            continue
        correct[key] = backend
    # Timed round-robin: on a shared machine the load changes from second to second; taking turns puts every
    # candidate through the same stretches, so the medians compare the candidates, not the moments.
    times: dict[str, list[float]] = {key: [] for key in correct}
    for _ in range(PROBE_RUNS):
        for key, backend in correct.items():
            t0 = time.perf_counter()
            backend.run(x)
            times[key].append(1e3 * (time.perf_counter() - t0))
    correct.clear()
    ms = {key: round(statistics.median(v), 2) for key, v in times.items()}
    chosen = None
    for key, value in ms.items():  # candidates' order: an earlier one wins a tie
        if chosen is None or value < ms[chosen] * (1 - TIE):
            chosen = key
    for key, value in ms.items():
        if key != chosen:
            reasons[key] = f"slower in the probe: {value:.1f} ms vs {chosen} {ms[chosen]:.1f} ms"
    return {"chosen": chosen, "ms": ms, "error": {k: float(f"{v:.3g}") for k, v in errors.items()},
            "reasons": reasons}


def _int8_available(model, input_size, options) -> bool:
    """Whether the cache holds a calibrated INT8 model for this model and input size (part of the decision's
    key: calibrating after a probe makes the next start probe again)."""
    from .export import DEFAULT_OPSET
    from .quantize import DEFAULT_KEEP_FLOAT, INT8_KIND, int8_identity

    keep = options.get("keep_float") or DEFAULT_KEEP_FLOAT
    folder = ArtifactCache(options.get("cache_dir")).entry_dir(
        INT8_KIND, int8_identity(model, input_size, options.get("opset") or DEFAULT_OPSET, keep))
    return (folder / "network_int8.onnx").is_file()


def choose_backend(model, input_size, metadata=None, threads: int = 1, precision: str = "auto",
                   **options) -> Backend:
    options = dict(options, threads=threads, metadata=metadata)
    reasons: dict[str, str] = {}
    for name in GPU_ORDER:
        try:
            backend = _build(name, precision, model, input_size, options)
        except BackendUnavailable as exc:
            reasons[name] = str(exc)
            continue
        return _chosen(backend, reasons, {"chosen": name, "rule": "first GPU backend that works"})
    candidates = [c for c in CPU_CANDIDATES if precision in ("auto", c[1])]
    if not candidates:
        raise BackendUnavailable(f"no backend runs {precision} here; " +
                                 "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    input_size = tuple(int(v) for v in input_size)
    identity = {"model": model_hash(model), "input_shape": [1, 3, *input_size], "threads": threads,
                "precision": precision, "candidates": [label(*c) for c in candidates],
                "int8_model": _int8_available(model, input_size, options)}
    decision = {}

    def build(path):
        log.info("backend auto: probing %s (%d timed runs each)", ", ".join(identity["candidates"]), PROBE_RUNS)
        decision.update(probe(model, input_size, candidates, options))
        Path(path).write_text(json.dumps(decision, indent=1))

    result, outcome = ArtifactCache(options.get("cache_dir")).fetch_or_build(
        "auto", identity, machine(), "decision.json", build, lambda path: json.loads(Path(path).read_text()),
        what="backend auto's probe")
    reasons.update(result["reasons"])
    info = {**result, "decision": "probed now" if outcome.status != "hit" else f"cached ({outcome.path})"}
    if result["chosen"] is not None:
        name, chosen_precision = result["chosen"].split("/")
        try:
            backend = _build(name, chosen_precision, model, input_size, options)
        except BackendUnavailable as exc:  # gone since the probe (e.g. the INT8 entry was deleted): probe again
            if outcome.status == "hit":
                outcome.path.parent.joinpath("decision.json").unlink(missing_ok=True)
                log.warning("backend auto: the cached choice %s is unavailable now (%s): probing again",
                            result["chosen"], exc)
                return choose_backend(model, input_size, metadata, threads, precision, **{
                    k: v for k, v in options.items() if k not in ("threads", "metadata")})
            raise
        return _chosen(backend, reasons, info)
    raise BackendUnavailable("no backend works here: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))


def _chosen(backend: Backend, reasons: dict, info: dict) -> Backend:
    skipped = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "none"
    precision = getattr(backend, "precision", "fp32")
    log.info("backend auto -> %s %s (%s; others: %s)", backend.name, precision,
             info.get("rule") or f"fastest correct in the probe, {info.get('decision')}", skipped)
    backend.skipped = dict(reasons)
    backend.auto_reasons = [f"{k}: {v}" for k, v in reasons.items()]
    backend.auto = info
    return backend
