"""Backends run ``PanopticNet.forward`` on a (B, 3, H, W) normalised batch and return its output dict.

- ``tensorrt``: Torch-TensorRT (dynamo) compile of the strict ``torch.export`` program at the static input
  shape; FP16 (default), FP32 or INT8 (ModelOpt post-training calibration); cached on disk.
- ``cuda``: eager PyTorch, channels-last, FP16 autocast.
- ``onnxruntime``: the exported ONNX model (cached on disk) on the TensorRT / CUDA execution providers when
  this onnxruntime has them, else the CPU one.
- ``openvino``: the ONNX export compiled by OpenVINO for the CPU, FP32 / BF16 / INT8
  (:mod:`.openvino_backend`; ``openvino`` is an optional dependency, imported only here).
- ``cpu``: eager PyTorch FP32.
- ``auto``: a GPU backend if one works, else the fastest correct CPU backend and precision by a short timed
  probe, cached per machine and model (:mod:`.auto`); ``describe()['skipped']`` and ``describe()['auto']``
  say why the others were not chosen (also logged).

INT8 on the CPU backends runs the calibrated model of :mod:`.quantize`; threads: :mod:`.threads`.

Compiled artefacts live in :class:`~panoptic_ros.runtime.cache.ArtifactCache` (``cache_dir`` argument,
``$PANOPTIC_ROS_CACHE`` or ``~/.cache/panoptic_ros``); a stale or corrupt entry is rebuilt with a log message.
"""
from __future__ import annotations

import copy
import inspect
import logging
from typing import Callable, Iterable

import torch

from .cache import ArtifactCache, CacheOutcome, model_hash
from .threads import apply_torch_threads, resolve_threads

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "bf16", "int8")


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this machine (the message says why)."""


class Backend:
    """Interface: ``run(images) -> dict`` of float tensors on ``device``; ``describe()`` for logs/diagnostics."""

    name = "base"
    device = torch.device("cpu")
    input_size: tuple[int, int] = (0, 0)
    skipped: dict[str, str] = {}  # auto only: backend name -> why it was not chosen
    cache_outcome: CacheOutcome | None = None

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def warmup(self, batch: int = 1) -> None:
        self.run(torch.zeros((batch, 3, *self.input_size), device=self.device))

    def compile_head(self, head: torch.nn.Module, example_inputs: tuple) -> Callable:
        """The panoptic head as this backend runs it best; eager here (only TensorRT compiles it)."""
        return head

    def describe(self) -> dict:
        info = {"backend": self.name, "device": str(self.device), "input_size": list(self.input_size),
                "skipped": dict(self.skipped)}
        if self.cache_outcome is not None:
            info["cache"] = self.cache_outcome.as_dict()
        if getattr(self, "auto", None):
            info["auto"] = self.auto  # auto's decision: the probe's timings, errors and reasons
        return info

    def _check_input(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, *self.input_size):
            raise ValueError(f"backend {self.name} was built for (B, 3, {self.input_size[0]}, {self.input_size[1]}) "
                             f"images, got {tuple(images.shape)}")


class EagerBackend(Backend):
    """Plain PyTorch: FP32 on the CPU (thread count configurable); channels-last + FP16 autocast on CUDA."""

    def __init__(self, model: torch.nn.Module, input_size, device: str = "cpu", threads: int | None = None):
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("CUDA is not available (torch.cuda.is_available() is False)")
        self.name = device
        self.device = torch.device(device)
        self.input_size = tuple(input_size)
        if device == "cpu":
            apply_torch_threads(resolve_threads(threads))
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

    def describe(self) -> dict:
        info = super().describe()
        if self.device.type == "cpu":
            info.update(threads=torch.get_num_threads(), precision="fp32")
        else:
            info.update(gpu=torch.cuda.get_device_name(self.device), precision="fp16 autocast")
        return info


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The model on the CPU for exporting, without moving the caller's model."""
    if next(model.parameters()).device.type == "cpu":
        return model.eval()
    return copy.deepcopy(model).cpu().eval()


def fp32_onnx(model: torch.nn.Module, input_size, cache_dir=None, opset: int | None = None):
    """(path of the cached FP32 ONNX export of ``model`` at ``input_size``, CacheOutcome): shared by the
    onnxruntime and openvino backends and by INT8 quantization."""
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable(f"onnx is not installed ({exc})") from exc
    from .export import DEFAULT_OPSET, export_onnx

    input_size = tuple(int(v) for v in input_size)
    opset = int(opset or DEFAULT_OPSET)
    identity = {"model": model_hash(model), "input_shape": [1, 3, *input_size], "opset": opset}
    environment = {"torch": torch.__version__, "onnx": onnx.__version__}
    cpu_model = _cpu_copy(model)

    def build(path):
        try:
            export_onnx(cpu_model, input_size, path, opset=opset)
        except Exception as exc:  # an export failure makes the ONNX backends unusable, not the program
            raise BackendUnavailable(f"exporting the network to ONNX failed: {type(exc).__name__}: {exc}") from exc

    return ArtifactCache(cache_dir).fetch_or_build("onnx", identity, environment, "network.onnx", build,
                                                   lambda path: path,
                                                   what=f"ONNX model of the network at {input_size[0]}x{input_size[1]}")


class OnnxRuntimeBackend(Backend):
    """The network exported to ONNX (cached) in an onnxruntime session.

    Args:
        model: the ``PanopticNet`` to export (its weights key the cache entry).
        input_size: (H, W) static network input size.
        threads: intra-op threads of the session (None / 0: the physical cores, see :mod:`.threads`).
        cache_dir: cache root (see :mod:`panoptic_ros.runtime.cache`).
        providers: execution providers in preference order; default: TensorRT, CUDA (when this
            onnxruntime build has them), then CPU.
        opset: ONNX opset of the export.
        precision: ``fp32`` (CPU default), ``fp16`` (TensorRT execution provider only) or ``int8`` (the
            calibrated QDQ model of :mod:`.quantize`: from ``calibration`` batches or the cache).
    """

    name = "onnxruntime"

    def __init__(self, model: torch.nn.Module, input_size, threads: int | None = None, cache_dir=None,
                 providers: Iterable[str] | None = None, opset: int | None = None, precision: str = "fp16",
                 calibration: Iterable | None = None, keep_float=None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime / onnx are not installed ({exc})") from exc
        from .export import DEFAULT_OPSET, OUTPUT_NAMES

        if precision not in ("fp16", "fp32", "int8"):
            raise BackendUnavailable(f"onnxruntime runs fp32, int8 (and fp16 on its TensorRT provider), not {precision}")
        self.input_size = tuple(int(v) for v in input_size)
        self.threads = resolve_threads(threads)
        available = ort.get_available_providers()
        wanted = list(providers) if providers else [
            p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailable(f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(available)})")
        opset = int(opset or DEFAULT_OPSET)
        path, self.cache_outcome = fp32_onnx(model, self.input_size, cache_dir, opset)
        if precision == "int8":
            from .quantize import DEFAULT_KEEP_FLOAT, int8_onnx

            path, self.cache_outcome = int8_onnx(model, self.input_size, path, cache_dir, opset, calibration,
                                                 DEFAULT_KEEP_FLOAT if keep_float is None else keep_float)
        # fp16 only means something on the TensorRT provider; on the CPU provider the session runs FP32.
        self.precision = "fp16" if precision == "fp16" and "TensorrtExecutionProvider" in wanted else \
            ("int8" if precision == "int8" else "fp32")
        self.output_names = OUTPUT_NAMES
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Idle ORT threads otherwise spin after each run and steal the cores the head runs on next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_list = []
        for p in wanted:
            if p == "TensorrtExecutionProvider":  # ORT keeps its own engine cache next to our entry
                provider_list.append((p, {"trt_fp16_enable": precision == "fp16",
                                          "trt_int8_enable": precision == "int8",
                                          "trt_engine_cache_enable": True,
                                          "trt_engine_cache_path": str(path.parent / "ort_trt")}))
            else:
                provider_list.append(p)
        self.session = ort.InferenceSession(str(path), options, providers=provider_list)
        names = tuple(o.name for o in self.session.get_outputs())
        if names != OUTPUT_NAMES:
            raise BackendUnavailable(f"ONNX model outputs {names}, expected {OUTPUT_NAMES}")
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images run one at a time through the batch-1 program (static shape) and are stacked."""
        self._check_input(images)
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
        per_image = [self.session.run(None, {self.input_name: batch[i:i + 1]}) for i in range(batch.shape[0])]
        return {name: torch.from_numpy(per_image[0][j]) if len(per_image) == 1
                else torch.cat([torch.from_numpy(o[j]) for o in per_image]) for j, name in enumerate(self.output_names)}

    def describe(self) -> dict:
        return dict(super().describe(), providers=list(self.providers), threads=self.threads,
                    precision=self.precision)


def _import_torch_tensorrt():
    """torch_tensorrt, or BackendUnavailable naming every reason it cannot run here."""
    problems = []
    module = None
    try:
        import torch_tensorrt as module  # noqa: F811 - lazily: absent on CPU machines, heavy to import
    except Exception as exc:  # ImportError, or OSError/RuntimeError from a missing libnvinfer
        problems.append(f"torch_tensorrt cannot be imported ({type(exc).__name__}: {exc})")
    if not torch.cuda.is_available():
        problems.append("CUDA is not available (torch.cuda.is_available() is False)")
    if problems:
        raise BackendUnavailable("; ".join(problems))
    return module


def _tensorrt_version() -> str:
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - only used in the cache key
        return "unknown"


class TensorRTBackend(Backend):
    """Torch-TensorRT (dynamo) compile of the network's strict ``torch.export`` program at a static shape.

    The compiled program is saved in the cache keyed by model hash, input shape, precision, the torch /
    torch_tensorrt / TensorRT versions and the GPU name; another setup or a corrupt file rebuilds it.

    Args:
        model: the ``PanopticNet``.
        input_size: (H, W).
        precision: ``fp16`` (default), ``fp32`` or ``int8`` (needs ``nvidia-modelopt`` and ``calibration``).
        cache_dir: cache root.
        calibration: INT8 only: an iterable of normalised (B, 3, H, W) batches for post-training calibration.
    """

    name = "tensorrt"

    def __init__(self, model: torch.nn.Module, input_size, precision: str = "fp16", cache_dir=None,
                 calibration: Iterable[torch.Tensor] | None = None, **_):
        if precision not in ("fp16", "fp32", "int8"):
            raise BackendUnavailable(f"tensorrt runs fp16, fp32 or int8, not {precision}")
        if precision == "int8":  # checked before the GPU: a wrong calibration set is the caller's error anywhere
            calibration = check_calibration(calibration, input_size)
        self.trt = _import_torch_tensorrt()
        self.device = torch.device("cuda")
        self.precision = precision
        self.input_size = tuple(int(v) for v in input_size)
        self.cache = ArtifactCache(cache_dir)
        gpu = torch.cuda.get_device_name(self.device)
        self.environment = {"torch": torch.__version__, "torch_tensorrt": str(self.trt.__version__),
                            "tensorrt": _tensorrt_version(), "gpu": gpu}
        identity = {"model": model_hash(model), "input_shape": [1, 3, *self.input_size], "precision": precision}
        self.input_dtype = torch.float16 if precision == "fp16" else torch.float32

        def build(path):
            self._compile_and_save(model, path, calibration)

        self.program, self.cache_outcome = self.cache.fetch_or_build(
            "tensorrt", identity, self.environment, "network.ep", build,
            lambda path: torch.export.load(str(path)).module(),
            what=f"TensorRT {precision} program of the network at {self.input_size[0]}x{self.input_size[1]} on {gpu} "
                 "(takes minutes)")

    def _compile_settings(self) -> dict:
        params = inspect.signature(self.trt.dynamo.compile).parameters
        if self.precision == "int8":
            return {"enabled_precisions": {torch.int8}} if "enabled_precisions" in params else {}
        if "use_explicit_typing" in params:  # TensorRT >= 10.12 is strongly typed: precision lives in the graph
            return {"use_explicit_typing": True}
        return {"enabled_precisions": {self.input_dtype}}

    def _compile_and_save(self, model: torch.nn.Module, path, calibration) -> None:
        from .export import export_network

        net = copy.deepcopy(model).eval().to(self.device)
        if self.precision == "fp16":
            net = net.half()
        example = torch.zeros(1, 3, *self.input_size, device=self.device, dtype=self.input_dtype)
        if self.precision == "int8":
            try:
                import modelopt.torch.quantization as mtq
                from modelopt.torch.quantization.utils import export_torch_mode
            except ImportError as exc:
                raise BackendUnavailable(f"INT8 calibration needs nvidia-modelopt ({exc})") from exc

            mtq.quantize(net, mtq.INT8_DEFAULT_CFG, forward_loop=calibration_loop(calibration, self.device))
            with export_torch_mode():
                program = torch.export.export(net, (example,), strict=False)
        else:
            program = export_network(net, self.input_size) if self.precision == "fp32" else \
                torch.export.export(net, (example,), strict=True)
        compiled = self.trt.dynamo.compile(program, arg_inputs=[example], **self._compile_settings())
        self._save(compiled, path, [example])

    def _save(self, compiled, path, inputs: list) -> None:
        """torch_tensorrt.save as an ExportedProgram (``arg_inputs`` since 2.5, ``inputs`` before)."""
        name = "arg_inputs" if "arg_inputs" in inspect.signature(self.trt.save).parameters else "inputs"
        self.trt.save(compiled, str(path), **{name: inputs})

    @torch.inference_mode()
    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_input(images)
        images = images.to(self.device, self.input_dtype)
        outs = [self.program(images[i:i + 1]) for i in range(images.shape[0])]  # batch-1 engine
        return {k: torch.cat([o[k] for o in outs]).float() for k in outs[0]}

    def compile_head(self, head: torch.nn.Module, example_inputs: tuple) -> Callable:
        """The head compiled with TensorRT where its ops convert (unsupported ones stay in PyTorch); eager if
        compiling fails (the closest-centre pair list has a data-dependent length)."""
        from .export import export_head

        inputs = tuple(t.to(self.device) for t in example_inputs)
        identity = {"head": repr(head), "shapes": [list(t.shape) for t in inputs]}

        def build(path):
            program = export_head(head.to(self.device), inputs)
            compiled = self.trt.dynamo.compile(program, arg_inputs=list(inputs), require_full_compilation=False)
            self._save(compiled, path, list(inputs))

        try:
            compiled, _ = self.cache.fetch_or_build("tensorrt_head", identity, self.environment, "head.ep", build,
                                                    lambda path: torch.export.load(str(path)).module(),
                                                    what="TensorRT program of the panoptic head")
            return compiled
        except Exception as exc:  # noqa: BLE001 - the eager head is always correct, only slower
            log.warning("the panoptic head stays eager on %s: TensorRT could not compile it (%s: %s)",
                        self.name, type(exc).__name__, exc)
            return head.to(self.device)

    def describe(self) -> dict:
        return dict(super().describe(), precision=self.precision, **self.environment)


def check_calibration(calibration, input_size) -> list[torch.Tensor]:
    """The INT8 calibration set as a list of float (B, 3, H, W) tensors at ``input_size``, or ValueError."""
    if calibration is None:
        raise ValueError("INT8 needs calibration batches (calibration=[normalised (B, 3, H, W) tensors]; "
                         "panoptic-export --int8 --calibration DATA makes them from a data-set folder)")
    batches = [torch.as_tensor(b) for b in calibration]
    if not batches:
        raise ValueError("INT8 calibration set is empty")
    want = (3, *(int(v) for v in input_size))
    for i, b in enumerate(batches):
        if b.dim() != 4 or tuple(b.shape[1:]) != want or not b.is_floating_point():
            raise ValueError(f"INT8 calibration batch {i} is {b.dtype} {tuple(b.shape)}, expected float (B, {want[0]}, "
                             f"{want[1]}, {want[2]}) normalised as the Predictor does")
    return batches


def calibration_loop(batches: list[torch.Tensor], device) -> Callable[[torch.nn.Module], None]:
    """ModelOpt's ``forward_loop``: every calibration batch through the model once, float32 on ``device``,
    without gradients (the quantizers record activation ranges in these forwards)."""
    def forward_loop(model: torch.nn.Module) -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch.to(device, torch.float32))
    return forward_loop


def _eager(device: str) -> Callable[..., Backend]:
    def make(model, input_size, threads=None, precision="auto", **_):
        if precision not in ("auto", "fp32") and not (device == "cuda" and precision == "fp16"):
            raise BackendUnavailable(f"the {device} backend runs "
                                     f"{'fp16 autocast' if device == 'cuda' else 'fp32'} only, not {precision}")
        return EagerBackend(model, input_size, device, threads)
    return make


def _onnxruntime(model, input_size, threads=None, cache_dir=None, providers=None, opset=None, precision="auto",
                 calibration=None, keep_float=None, **_):
    return OnnxRuntimeBackend(model, input_size, threads=threads, cache_dir=cache_dir, providers=providers,
                              opset=opset, precision="fp16" if precision == "auto" else precision,
                              calibration=calibration, keep_float=keep_float)


def _openvino(model, input_size, threads=None, cache_dir=None, opset=None, precision="auto", calibration=None,
              keep_float=None, **_):
    from .openvino_backend import OpenVINOBackend  # imports openvino lazily, inside
    from .quantize import DEFAULT_KEEP_FLOAT

    return OpenVINOBackend(model, input_size, precision="fp32" if precision == "auto" else precision,
                           threads=threads, cache_dir=cache_dir, opset=opset, calibration=calibration,
                           keep_float=DEFAULT_KEEP_FLOAT if keep_float is None else keep_float)


def _tensorrt(model, input_size, precision="auto", cache_dir=None, calibration=None, **_):
    return TensorRTBackend(model, input_size, precision="fp16" if precision == "auto" else precision,
                           cache_dir=cache_dir, calibration=calibration)


FACTORIES: dict[str, Callable[..., Backend]] = {"tensorrt": _tensorrt, "cuda": _eager("cuda"),
                                                "openvino": _openvino, "onnxruntime": _onnxruntime,
                                                "cpu": _eager("cpu")}
# Every backend name, in auto's order of preference (see create_backend).
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "onnxruntime", "cpu")


def create_backend(name: str, model: torch.nn.Module, input_size, metadata: dict | None = None,
                   threads: int | None = None, precision: str = "auto", **options) -> Backend:
    """The backend ``name`` at ``precision``; ``auto``: see :func:`.auto.choose_backend` (a GPU backend if one
    works, else the fastest CPU backend and precision by a timed probe, cached per machine and model).

    ``threads`` (None / 0 = the physical cores) sizes the pool of the library that runs the network (see
    :mod:`.threads`); torch, which runs the panoptic head on every backend, gets :func:`head_torch_threads`. ``precision``: ``auto`` (the backend's default:
    tensorrt and onnxruntime-on-TensorRT fp16, the others fp32), ``fp32``, ``fp16``, ``bf16`` (openvino),
    ``int8`` (openvino / onnxruntime: a calibrated model from the cache or ``calibration``; tensorrt:
    ``calibration`` batches). ``options`` go to the factories: ``cache_dir``, ``calibration``,
    ``keep_float``, ``providers`` and ``opset`` (onnxruntime). ``metadata`` is the checkpoint metadata.
    """
    if precision not in ("auto",) + PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}")
    threads = resolve_threads(threads)
    if name == "auto":
        from .auto import choose_backend

        backend = choose_backend(model, input_size, metadata=metadata, threads=threads, precision=precision,
                                 **options)
    elif name not in FACTORIES:
        raise ValueError(f"unknown backend {name!r}; choose one of auto, {', '.join(AUTO_ORDER)}")
    else:
        backend = FACTORIES[name](model, input_size, metadata=metadata, threads=threads, precision=precision,
                                  **options)
        backend.skipped = {}
    apply_torch_threads(head_torch_threads(backend.name, threads))
    return backend


# Backends whose network does not run in torch: torch then only runs the panoptic head.
NON_TORCH_BACKENDS = ("openvino", "onnxruntime")


def head_torch_threads(backend_name: str, threads: int) -> int:
    """torch's intra-op threads next to ``backend_name``: ``threads`` where torch runs the network, else 1.
    The head's ops are small (one frame's maps at the input size): a second torch thread gains little on an
    idle machine, and on a shared one its team waits at every op for a descheduled member while the
    network library's own pool is parked on the same cores. Measured here under load (openvino bf16 network,
    20 frames x 2, interleaved): head 10.5 ms with 1 torch thread, 324 ms with 2."""
    return 1 if backend_name in NON_TORCH_BACKENDS else int(threads)
