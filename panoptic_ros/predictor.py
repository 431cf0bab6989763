"""Predictor: an RGB image of any size in, a panoptic result at that size out.

Stages (each timed, in ``PanopticResult.timings_ms``): ``preprocess`` (resize to the network's input size,
normalise), ``network`` (backend forward), ``head`` (box decoding + NMS + parameter-free panoptic head on the
network grid), ``postprocess`` (ids back to the input size, segment table). No per-pixel Python.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .fusion import TRAINABLE, build_fusion, check_fusion
from .head import PanopticHead, scale_stuff_area_threshold, segments_from_output
from .panoptic import PanopticResult, semantic_from_ids
from .taxonomy import Taxonomy

PAPER_SCORE_THRESHOLD = 0.4  # Weber et al. 2020
HEAD_STRIDES = (1, 2, 4)  # the head grids the Predictor offers: 1 = the network input
# Input sides are multiples of the trunk's output stride (p5, 32): the semantic branch upsamples p3..p5 by exact
# factors of 2 to the 1/4 grid. p6 / p7 round up, as they already do at the checkpoints' 192 (192 / 128 = 1.5).
NETWORK_STRIDE = 32
MAX_BACKENDS = 4  # network input sizes kept built at once (each its own static-shape backend)


def network_input_size(image_hw: tuple[int, int], pixel_budget: int, stride: int = NETWORK_STRIDE) -> tuple[int, int]:
    """(H, W) of the network input for an image of ``image_hw``: its aspect ratio at about ``pixel_budget``
    pixels, both sides rounded to the nearest multiple of ``stride`` (at least one stride)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0 or pixel_budget <= 0:
        raise ValueError(f"need a positive image size and pixel budget, got {w}x{h} and {pixel_budget}")
    height = (pixel_budget * h / w) ** 0.5
    return (max(stride, int(round(height / stride)) * stride),
            max(stride, int(round(height * w / h / stride)) * stride))


class Predictor:
    """Runs network + panoptic head on images.

    Args:
        model: a ``PanopticNet`` (eval mode is set here).
        metadata: the checkpoint metadata (taxonomy, input size, normalisation).
        backend: a runtime backend name (``auto``, ``cpu``, ``cuda``, ``onnxruntime``, ``tensorrt``) or a
            backend object from :mod:`panoptic_ros.runtime`.
        score_threshold: detections below it are dropped before the head; ``None`` = the checkpoint's
            ``metadata['inference']['score_threshold']`` (chosen on validation data), else the paper's 0.4.
        policy: same-class overlap policy of the head.
        unknown: predict *unknown* (void) for thing pixels no detection explains.
        stuff_area_threshold: stuff segments smaller than this (pixels at the network input size) become void;
            ``None`` = the checkpoint's ``metadata['inference']`` value, else the paper's 4096 px at COCO scale
            scaled to the network input area.
        max_detections: K, the static number of detection slots.
        precision: network precision when ``backend`` is a name (see ``runtime.create_backend``).
        head_stride: run the panoptic head on a grid ``head_stride`` times coarser than the network input
            (1 = full input resolution, 4 = the logits' own 1/4 grid) and upsample its ids; cheaper, blockier.
        input_size: the network input (H, W) every image is resized to (multiples of 32); ``None`` = each
            image's own aspect ratio at the checkpoint's pixel budget (:func:`network_input_size`: 384 x 192
            stays 384 x 192, 640 x 480 runs at 320 x 224). The network is fully convolutional; each input size
            gets its own static-shape backend (built on first use, the last :data:`MAX_BACKENDS` kept; the
            ONNX / TensorRT caches are keyed by input size). ``self.input_size`` stays the checkpoint's.
        fusion: the panoptic fusion (:mod:`panoptic_ros.fusion`); ``parameter_free`` is the head above,
            the others ignore ``policy`` / ``unknown``. A checkpoint trained for a fusion runs only with it.
        fusion_state: the weights of a trainable fusion (the checkpoint's ``fusion_state_dict``).
    """

    def __init__(self, model: torch.nn.Module, metadata: dict, backend="cpu", score_threshold: float | None = None,
                 policy: str = "closest_center", unknown: bool = True, stuff_area_threshold: int | None = None,
                 max_detections: int = 100, threads: int | None = None, head_stride: int = 1,
                 input_size: Sequence[int] | None = None, fusion: str = "parameter_free",
                 fusion_state: dict | None = None, precision: str = "auto"):
        self.metadata = metadata
        self.taxonomy = Taxonomy.from_dict(metadata["taxonomy"])
        self.input_size = tuple(int(v) for v in metadata["input_size"])  # (H, W)
        norm = metadata.get("normalization", {})
        self.mean = np.asarray(norm.get("mean", (0.485, 0.456, 0.406)), dtype=np.float32) * 255.0
        self.std = np.asarray(norm.get("std", (0.229, 0.224, 0.225)), dtype=np.float32) * 255.0
        self.model = model.eval()
        tuned = metadata.get("inference", {})
        if score_threshold is None:
            score_threshold = tuned.get("score_threshold", PAPER_SCORE_THRESHOLD)
        if stuff_area_threshold is None:
            stuff_area_threshold = tuned.get("stuff_area_threshold", scale_stuff_area_threshold(*self.input_size))
        self.score_threshold = float(score_threshold)
        self.stuff_area_threshold = int(stuff_area_threshold)
        self.max_detections = int(max_detections)
        if head_stride not in HEAD_STRIDES:
            raise ValueError(f"head_stride must be 1, 2 or 4, got {head_stride}")
        self.head_stride = int(head_stride)
        if input_size is not None:
            input_size = tuple(int(v) for v in input_size)
            if len(input_size) != 2 or not all(v > 0 and v % NETWORK_STRIDE == 0 for v in input_size):
                raise ValueError(f"input_size must be (height, width), positive multiples of {NETWORK_STRIDE}, "
                                 f"got {input_size}")
        self.fixed_input_size = input_size  # None: each image's aspect ratio at the checkpoint's pixel budget
        self.policy, self.unknown, self.threads, self.precision = policy, unknown, threads, precision
        check_fusion(fusion, metadata, metadata.get("checkpoint_path", "the checkpoint"))
        self.fusion, self.fusion_state = fusion, fusion_state
        self._runtimes: OrderedDict[tuple[int, int], tuple] = OrderedDict()  # input size -> (backend, head)
        if fusion == "hps_isi" and backend == "auto":  # it needs the network in torch (a feature hook)
            backend = "cuda" if torch.cuda.is_available() else "cpu"
        self._backend_choice = backend  # 'auto' is resolved once, by the first backend built
        self._runtime(self.fixed_input_size or self.input_size)

    def _runtime(self, size: tuple[int, int]) -> tuple:
        """(backend, head) for a network input of ``size``, built on first use (static shapes per size)."""
        runtime = self._runtimes.get(size)
        if runtime is not None:
            self._runtimes.move_to_end(size)
            self.backend, self.head = runtime
            return runtime
        from .runtime.export import head_example_inputs

        choice = self._backend_choice
        if not isinstance(choice, str):  # a backend object: built for one size only
            if tuple(choice.input_size) != tuple(size):
                raise ValueError(f"the given backend was built for {tuple(choice.input_size)} inputs, not {size}; "
                                 "pass a backend name to run other sizes")
            backend = choice
        else:
            backend = self._create_backend(choice, size)
        # The threshold is in input pixels at the checkpoint's size: keep its fraction of the image.
        area = self.stuff_area_threshold * size[0] * size[1] / (self.input_size[0] * self.input_size[1])
        if self.fusion == "hps_isi" and backend.name not in ("cpu", "cuda"):
            raise ValueError(f"fusion hps_isi reads the semantic branch's features through a hook: it runs on the "
                             f"cpu or cuda backend, not {backend.name}")
        # Values are checked once, on the network outputs (_fuse), not again on their upsampled copies.
        head = build_fusion(self.fusion, self.taxonomy, stuff_area_threshold=int(round(area)) // self.head_stride ** 2,
                            policy=self.policy, unknown=self.unknown, state_dict=self.fusion_state,
                            max_instances=self.max_detections, check_values=False,
                            feature_channels=int(getattr(self.model, "config", {}).get("head_channels", 64))).eval()
        if hasattr(head, "attach"):
            head.attach(self.model)  # hps_isi reads the semantic branch's features
        if isinstance(head, PanopticHead):
            # The TensorRT backend compiles the head too (cached); every other backend returns it unchanged.
            example = head_example_inputs(head, self.taxonomy.num_classes, self.taxonomy.thing_train_ids,
                                          [v // self.head_stride for v in size], self.max_detections)
            head = backend.compile_head(head, example)
        else:
            head = head.to(backend.device)
        self._runtimes[size] = (backend, head)
        while len(self._runtimes) > MAX_BACKENDS:
            self._runtimes.popitem(last=False)
        self.backend, self.head = backend, head
        self.device = backend.device
        return backend, head

    def _create_backend(self, choice: str, size: tuple[int, int]):
        """A backend for ``size``. ``auto`` probes once; later sizes take the backend and precision it picked,
        and probe anew only where that one cannot be built (an INT8 model calibrated at another size)."""
        from .runtime import BackendUnavailable, create_backend

        def create(name, precision):
            return create_backend(name, self.model, size, metadata=self.metadata, threads=self.threads,
                                  precision=precision)

        if choice == "auto" and hasattr(self, "skipped"):
            try:
                backend = create(self._auto_pick[0], self._auto_pick[1])
                backend.skipped = self.skipped
                return backend
            except BackendUnavailable:
                pass
        backend = create(choice, self.precision)
        if choice == "auto":
            self._auto_pick = (backend.name, getattr(backend, "precision", None) or self.precision)
            self.skipped = dict(getattr(backend, "skipped", {}) or {})
        return backend

    def network_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The network input (H, W) an image of ``image_hw`` runs at (see ``input_size``)."""
        if self.fixed_input_size is not None:
            return self.fixed_input_size
        return network_input_size(image_hw, self.input_size[0] * self.input_size[1])

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, backend="auto", expected_taxonomy: Taxonomy | None = None,
                        **kwargs) -> "Predictor":
        from .model.checkpoint import load_checkpoint

        model, metadata = load_checkpoint(path, expected_taxonomy=expected_taxonomy)
        metadata = dict(metadata, checkpoint_path=str(path))
        if kwargs.get("fusion", "parameter_free") in TRAINABLE:
            from .model.checkpoint import read_checkpoint

            kwargs.setdefault("fusion_state", read_checkpoint(path).get("fusion_state_dict"))
        return cls(model, metadata, backend=backend, **kwargs)

    @classmethod
    def from_model(cls, model: torch.nn.Module, metadata: dict, **kwargs) -> "Predictor":
        kwargs.setdefault("backend", "cpu" if next(model.parameters()).device.type == "cpu" else "cuda")
        return cls(model, metadata, **kwargs)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- inference ------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Images -> a normalised (B, 3, H, W) batch at ``size`` (default: :meth:`network_size` of the first)."""
        h, w = size or self.network_size(images[0].shape[:2])
        batch = np.empty((len(images), 3, h, w), dtype=np.float32)
        for i, image in enumerate(images):
            _check_image(image)
            resized = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            # Channel planes straight into NCHW (cv2.split is a fast de-interleave): no HWC float buffer to
            # transpose afterwards (~8x cheaper). The same float32 operations per value (the (1,)-slices keep
            # numpy on its float32 loop, as with the (3,) arrays), so the same bits.
            for c, plane in enumerate(cv2.split(resized)):
                np.subtract(plane, self.mean[c:c + 1], out=batch[i, c])  # in place: no float temporaries
                np.divide(batch[i, c], self.std[c:c + 1], out=batch[i, c])
        return torch.from_numpy(batch)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[PanopticResult]:
        t0 = time.perf_counter()
        if not len(images):
            raise ValueError("no images to predict")
        for image in images:  # before choosing the network size from their shapes
            _check_image(image)
        size = self.network_size(images[0].shape[:2])
        if any(self.network_size(im.shape[:2]) != size for im in images[1:]):
            raise ValueError("a batch runs at one network input size: give images of one aspect ratio")
        self._runtime(size)
        x = self.preprocess(images, size).to(self.device)
        t1 = time.perf_counter()
        outputs = self.backend.run(x)
        t2 = time.perf_counter()
        ids, semantic, det = self._fuse(outputs)
        t3 = time.perf_counter()
        scores = det["scores"].cpu().numpy()
        if getattr(self.head, "box_free", False):  # its instances are not the detections
            scores = np.ones((scores.shape[0], max(scores.shape[1], self.max_detections)), np.float32)
        results = [self._finish(ids[i], scores[i], image.shape[:2], semantic[i]) for i, image in enumerate(images)]
        for i, (image, result) in enumerate(zip(images, results)):
            result.detections = self._detections(det, i, image.shape[:2])
        t4 = time.perf_counter()
        per_image = {"preprocess": t1 - t0, "network": t2 - t1, "head": t3 - t2, "postprocess": t4 - t3}
        for r in results:
            r.timings_ms = {k: 1000.0 * v / len(images) for k, v in per_image.items()}
        return results

    def predict(self, image: np.ndarray) -> PanopticResult:
        return self.predict_batch([image])[0]

    def fuse(self, outputs: dict) -> tuple[np.ndarray, dict]:
        """Network outputs (of the current backend's input size) -> panoptic ids (B, H/s, W/s) (s = head_stride) and the padded detections the head
        used (``boxes``, ``scores``, ``labels``, ``valid``; detection k owns instance k + 1)."""
        ids, _, det = self._fuse(outputs)
        return ids, det

    def _fuse(self, outputs: dict) -> tuple[np.ndarray, np.ndarray, dict]:
        """:meth:`fuse` plus the head's semantic train ids (B, H/s, W/s) (equal to ``semantic_from_ids(ids)``);
        the input size is the current runtime's (the semantic logits are 1/4 of it)."""
        h, w = self.backend.input_size
        if not all(_all_finite(outputs[k]) for k in ("semantic", "centers", "cls_logits")):
            raise FloatingPointError("the network produced NaN or inf; refusing to publish its output")
        det = self.model.detect(outputs, (h, w), score_threshold=self.score_threshold,
                                max_detections=self.max_detections)
        s = self.head_stride
        grid = (h // s, w // s)
        semantic = resize_bilinear(outputs["semantic"], grid)
        centers = resize_bilinear(outputs["centers"], grid)
        boxes = det["boxes"]
        if s > 1:
            centers, boxes = centers / s, boxes / s
        ids, semantic = self.head(semantic, boxes, det["labels"], det["scores"], det["valid"], centers)
        return ids.cpu().numpy(), semantic.cpu().numpy(), det

    def _detections(self, det: dict, i: int, size: tuple[int, int]) -> dict:
        """Valid detections of image ``i``, boxes scaled from the network input to the image's size."""
        valid = det["valid"][i].cpu().numpy()
        h, w = self.backend.input_size
        scale = np.array([size[1] / w, size[0] / h] * 2, dtype=np.float32)
        labels = det["labels"][i].cpu().numpy()[valid]
        return {"boxes": det["boxes"][i].cpu().numpy()[valid] * scale, "scores": det["scores"][i].cpu().numpy()[valid],
                "category_ids": self.taxonomy.ids[labels]}

    def _finish(self, ids: np.ndarray, scores: np.ndarray, size: tuple[int, int],
                semantic: np.ndarray | None = None) -> PanopticResult:
        if semantic is None:
            semantic = semantic_from_ids(ids, self.taxonomy)
        if ids.shape != tuple(size):  # nearest: the semantic of the resized ids is the resized semantic
            ids = cv2.resize(ids.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            semantic = cv2.resize(semantic, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        ids = ids.astype(np.int32, copy=False)
        return PanopticResult(ids, semantic.astype(self.taxonomy.id_to_train.dtype, copy=False),
                              segments_from_output(ids, scores, self.taxonomy))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} px is too small to segment")


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` of (B, C, H, W).

    For float32 on the CPU and a whole-number upscaling factor per axis (the network's 1/4 logits to the head
    grid) by OpenCV: the same half-pixel rule with clamped borders, and at such factors exact interpolation
    weights (multiples of 1 / 2k), so the values equal torch's to float rounding. All planes go in one call,
    stacked as one tall image (OpenCV's per-call cost made 19 plane-by-plane calls 2.5x slower); only the
    rows beyond the first and last source row centres of each plane, which the stack blends with the
    neighbouring plane instead of clamping, are redone from those source rows. ~8x faster than torch's CPU
    NCHW kernel (19 x 48 x 96 to 192 x 384 here, the largest cost of the head stage). Anything else goes to
    torch (OpenCV's weights at other factors differ by up to ~1e-4 relative)."""
    height, width = x.shape[-2:] if x.dim() == 4 else (0, 0)
    whole = height and width and size[0] % height == 0 and size[1] % width == 0
    if x.device.type != "cpu" or x.dtype != torch.float32 or not whole:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    src = x.detach().contiguous().numpy()
    planes = src.shape[0] * src.shape[1]
    out = np.empty((planes, *size), dtype=np.float32)
    cv2.resize(src.reshape(planes * height, width), (size[1], planes * size[0]),
               dst=out.reshape(planes * size[0], size[1]), interpolation=cv2.INTER_LINEAR)
    clamped = size[0] // height // 2  # output rows above the first source row's centre (below the last's)
    if clamped:
        edges = np.ascontiguousarray(src.reshape(planes, height, width)[:, [0, height - 1]])
        rows = cv2.resize(edges.reshape(2 * planes, width), (size[1], 2 * planes),
                          interpolation=cv2.INTER_LINEAR).reshape(planes, 2, size[1])
        out[:, :clamped] = rows[:, :1]
        out[:, size[0] - clamped:] = rows[:, 1:]
    return torch.from_numpy(out.reshape(*src.shape[:2], *size))


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or +-inf in ``t``: its min and max are finite (aminmax propagates NaN); one reduction pass, ~7x
    cheaper than ``isfinite(t).all()``, which writes a bool tensor first."""
    if t.numel() == 0:
        return True
    low, high = torch.aminmax(t)
    return bool(torch.isfinite(low) & torch.isfinite(high))
