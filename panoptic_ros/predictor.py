"""Predictor: an RGB image of any size in, a panoptic result at that size out.

Stages (each timed, in ``PanopticResult.timings_ms``): ``preprocess`` (resize to the network's input size,
normalise), ``network`` (backend forward), ``head`` (box decoding + NMS + parameter-free panoptic head on the
network grid), ``postprocess`` (ids back to the input size, segment table). No per-pixel Python.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .head import PanopticHead, scale_stuff_area_threshold, segments_from_output
from .panoptic import PanopticResult, semantic_from_ids
from .taxonomy import Taxonomy

PAPER_SCORE_THRESHOLD = 0.4  # Weber et al. 2020
HEAD_STRIDES = (1, 2, 4)  # the head grids the Predictor offers: 1 = the network input


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
    """

    def __init__(self, model: torch.nn.Module, metadata: dict, backend="cpu", score_threshold: float | None = None,
                 policy: str = "closest_center", unknown: bool = True, stuff_area_threshold: int | None = None,
                 max_detections: int = 100, threads: int | None = None, head_stride: int = 1,
                 precision: str = "auto"):
        from .runtime import create_backend

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
        area = self.stuff_area_threshold // self.head_stride ** 2  # the threshold is in input pixels
        # Values are checked once, on the network outputs (_fuse), not again on their upsampled copies.
        self.head = PanopticHead.from_taxonomy(self.taxonomy, policy=policy, unknown=unknown,
                                               stuff_area_threshold=area, check_values=False).eval()
        self.backend = backend if not isinstance(backend, str) else create_backend(
            backend, model, self.input_size, metadata=metadata, threads=threads, precision=precision)
        self.device = self.backend.device
        # The TensorRT backend compiles the head too (cached); every other backend returns it unchanged.
        from .runtime.export import head_example_inputs

        example = head_example_inputs(self.head, self.taxonomy.num_classes, self.taxonomy.thing_train_ids,
                                      [v // self.head_stride for v in self.input_size], self.max_detections)
        self.head = self.backend.compile_head(self.head, example)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, backend="auto", expected_taxonomy: Taxonomy | None = None,
                        **kwargs) -> "Predictor":
        from .model.checkpoint import load_checkpoint

        model, metadata = load_checkpoint(path, expected_taxonomy=expected_taxonomy)
        metadata = dict(metadata, checkpoint_path=str(path))
        return cls(model, metadata, backend=backend, **kwargs)

    @classmethod
    def from_model(cls, model: torch.nn.Module, metadata: dict, **kwargs) -> "Predictor":
        kwargs.setdefault("backend", "cpu" if next(model.parameters()).device.type == "cpu" else "cuda")
        return cls(model, metadata, **kwargs)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- inference ------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = self.input_size
        batch = np.empty((len(images), 3, h, w), dtype=np.float32)
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
            if image.shape[0] < 8 or image.shape[1] < 8:
                raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} px is too small to segment")
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
        x = self.preprocess(images).to(self.device)
        t1 = time.perf_counter()
        outputs = self.backend.run(x)
        t2 = time.perf_counter()
        ids, semantic, det = self._fuse(outputs)
        t3 = time.perf_counter()
        scores = det["scores"].cpu().numpy()
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
        """Network outputs -> panoptic ids (B, H/s, W/s) (s = head_stride) and the padded detections the head
        used (``boxes``, ``scores``, ``labels``, ``valid``; detection k owns instance k + 1)."""
        ids, _, det = self._fuse(outputs)
        return ids, det

    def _fuse(self, outputs: dict) -> tuple[np.ndarray, np.ndarray, dict]:
        """:meth:`fuse` plus the head's semantic train ids (B, H/s, W/s) (equal to ``semantic_from_ids(ids)``)."""
        h, w = self.input_size
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
        h, w = self.input_size
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
